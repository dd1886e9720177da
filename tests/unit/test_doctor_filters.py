"""playbooks/doctor.yml's filters (plugins/filter/doctor.py): table tests, and one run through Ansible."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.ingress.plugins.filter import doctor

from tests.support.ansible import run_local_playbook

NOW = "2026-01-01T00:00:10Z"
Lease = dict[str, Any]


def lease(holder: str | None = "n1", renew: str | None = "2026-01-01T00:00:05.5Z", duration: int = 10) -> Lease:
    return {"spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration}}


@pytest.mark.parametrize(
    ("value", "fresh", "age"),
    [
        (lease(), True, 4.5),
        (lease(renew="2026-01-01T00:00:00Z"), False, 10.0),  # exactly one duration old: run out
        (lease(renew="2026-01-01T00:00:00.001Z"), True, 10.0),  # rounded for show, judged exactly
        (lease(renew="2025-12-31T23:59:00.123456Z"), False, 69.9),
        (lease(renew="2026-01-01T00:00:09.123456789Z"), True, 0.9),  # nanoseconds, as other clients write
        (lease(renew="2026-01-01T00:00:12+00:00"), True, -2.0),  # a clock ahead of ours
        (lease(renew="2026-01-01T01:00:08+01:00"), True, 2.0),  # another zone
        (lease(holder=None), False, 4.5),  # released on a clean stop
        (lease(holder=""), False, 4.5),
        (lease(renew=None), False, None),
        (None, False, None),
        ({}, False, None),
    ],
)
def test_lease_state_fresh_while_held_and_renewed_within_its_duration(value: Any, fresh: bool, age: float) -> None:
    state = doctor.lease_state(value, now=NOW)
    assert state["fresh"] is fresh
    assert state["age"] == age
    assert state["exists"] is bool(value)


def test_lease_state_reports_holder_and_falls_back_to_acquire_time() -> None:
    value = {"spec": {"holderIdentity": "n2", "acquireTime": "2026-01-01T00:00:08Z", "leaseDurationSeconds": 15}}
    assert doctor.lease_state(value, now=NOW) == {
        "exists": True,
        "holder": "n2",
        "renewed": "2026-01-01T00:00:08Z",
        "age": 2.0,
        "duration": 15,
        "fresh": True,
    }


def test_lease_state_takes_datetimes_and_defaults_to_the_current_time() -> None:
    now = datetime.datetime.now(datetime.UTC)
    recent = lease(renew=(now - datetime.timedelta(seconds=1)).isoformat())
    assert doctor.lease_state(recent)["fresh"] is True
    assert doctor.lease_state(recent, now=now + datetime.timedelta(seconds=30))["fresh"] is False
    # a naive datetime is UTC
    assert doctor.lease_state(lease(), now=datetime.datetime(2026, 1, 1, 0, 0, 10))["age"] == 4.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: doctor.lease_state("speaker-n1"), "expected a Lease object"),
        (lambda: doctor.lease_state(lease(renew="yesterday"), now=NOW), "'yesterday' is not an RFC 3339 time"),
        (lambda: doctor.arp_sysctl_problems([], "eth0"), "interfaces must be a list"),
        (lambda: doctor.kube_proxy_mode("kube-proxy"), "expected a ConfigMap object"),
        (lambda: doctor.pending_service_events({"name": "web"}, []), "expected a list of Services"),
    ],
)
def test_bad_input_is_a_clear_filter_error(call: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        call()


def proc(values: dict[str, int]) -> list[str]:
    """`grep -H` lines for {"all.arp_ignore": 1, "eth0.100.arp_announce": 2, ...}."""
    lines = []
    for name, value in values.items():
        iface, key = name.rsplit(".", 1)
        lines.append(f"/proc/sys/net/ipv4/conf/{iface}/{key}:{value}")
    return lines


GOOD = {"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.arp_ignore": 1, "eth0.arp_announce": 2}


@pytest.mark.parametrize(
    ("values", "interfaces", "expected"),
    [
        (GOOD, ["eth0"], []),
        (GOOD, [], []),
        # the larger of all and the interface's value is in force
        ({**GOOD, "eth0.arp_ignore": 0, "eth0.arp_announce": 0}, ["eth0"], []),
        ({**GOOD, "all.arp_ignore": 2}, ["eth0"], []),  # stricter is fine
        (
            {**GOOD, "all.arp_ignore": 0},
            ["eth0"],
            ["net.ipv4.conf.all.arp_ignore is 0, wanted at least 1"],
        ),
        (
            {**GOOD, "all.arp_ignore": 0, "eth0.arp_ignore": 0},
            ["eth0"],
            [
                "net.ipv4.conf.all.arp_ignore is 0, wanted at least 1",
                "net.ipv4.conf.eth0.arp_ignore (in force: the larger of it and all's) is 0, wanted at least 1",
            ],
        ),
        (
            {**GOOD, "all.arp_announce": 0, "eth0.arp_announce": 1},
            ["eth0"],
            [
                "net.ipv4.conf.all.arp_announce is 0, wanted 2",
                "net.ipv4.conf.eth0.arp_announce (in force: the larger of it and all's) is 1, wanted 2",
            ],
        ),
        # a VLAN interface keeps its dot in /proc/sys; a missing interface is said so
        ({**GOOD, "eth0.100.arp_ignore": 1, "eth0.100.arp_announce": 2}, ["eth0.100", "all"], []),
        (GOOD, ["eth0", "bond0"], ["interface bond0 does not exist"]),
        ({}, [], ["net.ipv4.conf.all cannot be read"]),
    ],
)
def test_arp_sysctl_problems_judge_the_effective_values(
    values: dict[str, int], interfaces: list[str], expected: list[str]
) -> None:
    assert doctor.arp_sysctl_problems(proc(values), interfaces) == expected


def test_arp_sysctl_problems_take_a_string_and_skip_unmanaged_settings() -> None:
    text = "\n".join(proc({"all.arp_ignore": 0, "all.arp_announce": 0})) + "\ngrep: /proc/sys/...: No such file\n"
    assert doctor.arp_sysctl_problems(text) == [
        "net.ipv4.conf.all.arp_ignore is 0, wanted at least 1",
        "net.ipv4.conf.all.arp_announce is 0, wanted 2",
    ]
    assert doctor.arp_sysctl_problems(text, arp_ignore=None) == ["net.ipv4.conf.all.arp_announce is 0, wanted 2"]
    assert doctor.arp_sysctl_problems(text, arp_ignore=None, arp_announce=None) == []


SS = """\
UNCONN 0      0      203.0.113.164:7946 0.0.0.0:*
UNCONN 0      0          127.0.0.53%lo:53 0.0.0.0:*
UNCONN 0      0      [2001:db8::164]:7946 [::]:*
UNCONN 0      0      [fe80::1%eth0]:7000 [::]:*
UNCONN 0      0                  *:9999 *:*
UNCONN 0      0            0.0.0.0:8888 0.0.0.0:*
"""


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("203.0.113.164", 7946, True),
        ("203.0.113.164", "7946", True),
        ("203.0.113.165", 7946, False),
        ("203.0.113.164", 7947, False),
        ("127.0.0.53", 53, True),  # a socket bound to a device
        ("2001:db8::164", 7946, True),
        ("[2001:db8::164]", 7946, True),
        ("fe80::1", 7000, True),
        ("203.0.113.164", 9999, True),  # wildcards
        ("2001:db8::1", 9999, True),
        ("203.0.113.164", 8888, True),
        ("2001:db8::1", 8888, False),  # an IPv4 wildcard takes no IPv6
    ],
)
def test_udp_listening(address: str, port: Any, expected: bool) -> None:
    assert doctor.udp_listening(SS, address, port) is expected
    assert doctor.udp_listening(SS.splitlines(), address, port) is expected


def test_udp_listening_ignores_the_header_and_empty_output() -> None:
    header = "State Recv-Q Send-Q Local Address:Port Peer Address:Port"
    assert doctor.udp_listening(header, "203.0.113.164", 7946) is False
    assert doctor.udp_listening("", "203.0.113.164", 7946) is False
    assert doctor.udp_listening(None, "203.0.113.164", 7946) is False


def configmap(text: str) -> dict[str, Any]:
    return {"data": {"config.conf": text}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {"mode": "none", "strict_arp": False, "error": ""}),
        (
            configmap("kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n"),
            {"mode": "ipvs", "strict_arp": False, "error": ""},
        ),
        (
            configmap("kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true\n"),
            {"mode": "ipvs", "strict_arp": True, "error": ""},
        ),
        (configmap("kind: KubeProxyConfiguration\nmode: ''\n"), {"mode": "iptables", "strict_arp": False, "error": ""}),
        (
            configmap("kind: KubeProxyConfiguration\nmode: nftables\nipvs: null\n"),
            {"mode": "nftables", "strict_arp": False, "error": ""},
        ),
        (
            {"data": {"kubeconfig.conf": "x"}},
            {"mode": "unknown", "strict_arp": False, "error": "it has no key config.conf (keys: kubeconfig.conf)"},
        ),
        ({"data": None}, {"mode": "unknown", "strict_arp": False, "error": "it has no key config.conf (keys: none)"}),
        (
            configmap("mode: [ipvs"),
            {
                "mode": "unknown",
                "strict_arp": False,
                "error": "config.conf is not valid YAML (while parsing a flow sequence)",
            },
        ),
        (
            configmap("kind: KubeletConfiguration\n"),
            {"mode": "unknown", "strict_arp": False, "error": "config.conf is not a KubeProxyConfiguration"},
        ),
    ],
)
def test_kube_proxy_mode(value: Any, expected: dict[str, Any]) -> None:
    assert doctor.kube_proxy_mode(value) == expected


def event(name: str, reason: str, when: str, uid: str | None = "u1", **extra: Any) -> dict[str, Any]:
    return {
        "involvedObject": {"kind": "Service", "namespace": "default", "name": name, "uid": uid},
        "reason": reason,
        "message": f"{reason} message",
        "lastTimestamp": when,
        **extra,
    }


def test_pending_service_events_pick_the_newest_event_of_that_service() -> None:
    services = [
        {"namespace": "default", "name": "web", "uid": "u1"},
        {"namespace": "default", "name": "db", "uid": "u2"},
        {"namespace": "other", "name": "web"},
    ]
    events = [
        event("web", "AllocationFailed", "2026-01-01T00:00:05Z"),
        event("web", "Newer", "2026-01-01T00:00:09Z"),
        event("web", "Older", "2026-01-01T00:00:01Z"),
        event("web", "OtherUid", "2026-01-01T00:00:30Z", uid="u0"),  # an earlier Service of that name
        event("db", "NoUid", "2026-01-01T00:00:01Z", uid=None),
        {"involvedObject": {"kind": "Pod", "namespace": "default", "name": "db"}, "reason": "Pod"},
    ]
    assert doctor.pending_service_events(services, events) == [
        {"namespace": "default", "name": "web", "uid": "u1", "event": "Newer: Newer message"},
        {"namespace": "default", "name": "db", "uid": "u2", "event": "NoUid: NoUid message"},
        {"namespace": "other", "name": "web", "event": ""},
    ]


def test_pending_service_events_read_events_k8s_io_and_series() -> None:
    services = [{"namespace": "default", "name": "web", "uid": "u1"}]
    new_style = {
        "regarding": {"kind": "Service", "namespace": "default", "name": "web", "uid": "u1"},
        "reason": "AllocationFailed",
        "note": "PoolExhausted: no address left",
        "eventTime": "2026-01-01T00:00:05.000001Z",
    }
    repeated = event(
        "web", "Repeated", "2026-01-01T00:00:01Z", series={"lastObservedTime": "2026-01-01T00:00:06.5Z", "count": 3}
    )
    assert doctor.pending_service_events(services, [new_style])[0]["event"] == (
        "AllocationFailed: PoolExhausted: no address left"
    )
    assert doctor.pending_service_events(services, [new_style, repeated])[0]["event"] == "Repeated: Repeated message"
    assert doctor.pending_service_events(services, None) == [dict(services[0], event="")]


def test_filters_through_ansible(tmp_path: Path) -> None:
    """The filters resolve by FQCN in a real playbook and give the same answers."""
    playbook = tmp_path / "doctor_filters.yml"
    playbook.write_text(
        """
- name: Exercise the onprem.ingress doctor filters
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Compute
      ansible.builtin.set_fact:
        answers:
          lease: "{{ {'spec': {'holderIdentity': 'n1', 'leaseDurationSeconds': 10,
                     'renewTime': '2026-01-01T00:00:05Z'}} | onprem.ingress.lease_state(now='2026-01-01T00:00:10Z') }}"
          arp: "{{ ['/proc/sys/net/ipv4/conf/all/arp_ignore:0', '/proc/sys/net/ipv4/conf/all/arp_announce:2']
                   | onprem.ingress.arp_sysctl_problems }}"
          udp: "{{ 'UNCONN 0 0 192.0.2.10:7946 0.0.0.0:*' | onprem.ingress.udp_listening('192.0.2.10', 7946) }}"
          kube_proxy: "{{ none | onprem.ingress.kube_proxy_mode }}"
          pending: "{{ [{'namespace': 'a', 'name': 'b'}] | onprem.ingress.pending_service_events([]) }}"
"""
    )
    task = run_local_playbook(playbook)["plays"][0]["tasks"][0]
    assert task["hosts"]["localhost"]["ansible_facts"]["answers"] == {
        "lease": {
            "exists": True,
            "holder": "n1",
            "renewed": "2026-01-01T00:00:05Z",
            "age": 5.0,
            "duration": 10,
            "fresh": True,
        },
        "arp": ["net.ipv4.conf.all.arp_ignore is 0, wanted at least 1"],
        "udp": True,
        "kube_proxy": {"mode": "none", "strict_arp": False, "error": ""},
        "pending": [{"namespace": "a", "name": "b", "event": ""}],
    }
