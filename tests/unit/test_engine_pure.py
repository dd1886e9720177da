"""The engine's pure parts: legacy ConfigMap conversion, the config snapshot, the CLI's errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from onprem_lb import legacy
from onprem_lb.config import ObjectRef, build_config
from onprem_lb.controller.loop import slim_service

SRC = Path(__file__).resolve().parents[2] / "src"
SEED000 = Path(__file__).resolve().parents[1] / "integration" / "seeds" / "seed000-config-pool.yaml"

FULL_LEGACY = """
peers:
- peer-address: 192.0.2.1
  peer-asn: 64501
  my-asn: 64500
  hold-time: 90s
  node-selectors:
  - match-labels: {rack: a}
bgp-communities:
  no-advertise: 65535:65282
bfd-profiles:
- name: fast
  receive-interval: 100
  transmit-interval: 100
address-pools:
- name: l2
  protocol: layer2
  addresses: [198.51.100.0/28]
  avoid-buggy-ips: true
- name: routed
  protocol: bgp
  auto-assign: false
  addresses: [203.0.113.0/28, 2001:db8::/124]
  bgp-advertisements:
  - aggregation-length: 32
    localpref: 100
    communities: [no-advertise]
"""


def _by_kind(resources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        out.setdefault(r["kind"], []).append(r)
    return out


def test_legacy_seed_configmap_converts() -> None:
    text = SEED000.read_text().replace("{ip-start}-{ip-stop}", "192.0.2.240-192.0.2.250")
    resources = legacy.convert(legacy.config_text_from_manifest(text))
    assert resources == [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "default", "namespace": "metallb-system"},
            "spec": {"addresses": ["192.0.2.240-192.0.2.250"]},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "default", "namespace": "metallb-system"},
            "spec": {"ipAddressPools": ["default"]},
        },
    ]


def test_legacy_every_section_converts() -> None:
    kinds = _by_kind(legacy.convert(FULL_LEGACY, namespace="lb"))
    assert kinds["Community"][0]["spec"] == {"communities": [{"name": "no-advertise", "value": "65535:65282"}]}
    assert kinds["BFDProfile"][0]["spec"] == {"receiveInterval": 100, "transmitInterval": 100}
    assert kinds["IPAddressPool"][0]["spec"] == {"addresses": ["198.51.100.0/28"], "avoidBuggyIPs": True}
    assert kinds["IPAddressPool"][1]["spec"]["autoAssign"] is False
    assert kinds["BGPAdvertisement"][0]["spec"] == {
        "ipAddressPools": ["routed"],
        "aggregationLength": 32,
        "localPref": 100,
        "communities": ["no-advertise"],
    }
    peer = kinds["BGPPeer"][0]
    assert peer["apiVersion"] == "metallb.io/v1beta2"
    assert peer["spec"] == {
        "peerAddress": "192.0.2.1",
        "peerASN": 64501,
        "myASN": 64500,
        "holdTime": "90s",
        "nodeSelectors": [{"matchLabels": {"rack": "a"}}],
    }
    assert {r["metadata"]["namespace"] for k in kinds.values() for r in k} == {"lb"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("address-pools:\n- name: a\n  protocol: l3\n  addresses: [192.0.2.0/28]", "protocol must be layer2 or bgp"),
        ("address-pools:\n- name: a\n  protocl: layer2", "unknown key(s) protocl"),
        ("adress-pools: []", "config: unknown key(s) adress-pools"),
        ("peers:\n- peer-address: 192.0.2.1\n  my-asn: 1", "peers[0] needs peer-asn"),
        ("address-pools: [a, b", "not valid YAML"),
        (
            "address-pools:\n- {name: a, protocol: layer2, addresses: [192.0.2.0/28]}\n"
            "- {name: a, protocol: layer2, addresses: [192.0.2.16/28]}",
            "pool name 'a' is used twice",
        ),
    ],
)
def test_legacy_errors_name_the_key(config: str, message: str) -> None:
    with pytest.raises(
        legacy.ConversionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        legacy.convert(config)


def _pool(name: str, addresses: list[str], created: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": {"addresses": addresses},
    }


def test_config_snapshot_older_pool_wins_an_overlap_and_bad_pools_are_reported() -> None:
    snap = build_config(
        [
            _pool("newer", ["192.0.2.8/29"], "2026-01-02T00:00:00Z"),
            _pool("older", ["192.0.2.0/28"], "2026-01-01T00:00:00Z"),
            _pool("broken", ["192.0.2.40-192.0.2.30"], "2026-01-03T00:00:00Z"),
            _pool("fine", ["2001:db8::/64"], "2026-01-04T00:00:00Z"),
        ],
        l2_advertisements=[{"metadata": {"name": "l2", "namespace": "ns"}, "spec": {"ipAddressPools": ["x"]}}],
        bgp_advertisements=[{"metadata": {"name": "bgp", "namespace": "ns"}, "spec": {}}],
    )
    assert [p.name for p in snap.pools] == ["older", "fine"]
    newer = snap.conditions[ObjectRef("IPAddressPool", "ns", "newer")]
    assert (newer.status, newer.reason) == ("False", "Overlap")
    assert "192.0.2.8/29 are also in the older pool 'older'" in newer.message
    assert snap.conditions[ObjectRef("IPAddressPool", "ns", "broken")].reason == "InvalidAddresses"
    assert (
        snap.conditions[ObjectRef("IPAddressPool", "ns", "fine")].message
        == "a pool of more than 9223372036854775807 IPv6 addresses, in use for allocation"
    )
    l2 = snap.conditions[ObjectRef("L2Advertisement", "ns", "l2")]
    assert l2.reason == "UnknownPool" and "'x'" in l2.message and "broken, fine, newer, older" in l2.message
    assert snap.conditions[ObjectRef("BGPAdvertisement", "ns", "bgp")].status == "True"
    assert set(snap.problems()) == {
        ObjectRef("IPAddressPool", "ns", "newer"),
        ObjectRef("IPAddressPool", "ns", "broken"),
        ObjectRef("L2Advertisement", "ns", "l2"),
    }


def test_slim_service_keeps_what_allocation_reads_only() -> None:
    full = {
        "metadata": {
            "name": "web",
            "namespace": "apps",
            "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {
                "metallb.io/address-pool": "p",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": 80, "nodePort": 30080, "targetPort": 8080}],
            "selector": {"app": "web"},
            "externalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}},
    }
    slim = slim_service(full)
    assert slim["metadata"]["annotations"] == {"metallb.io/address-pool": "p"}
    assert "managedFields" not in slim["metadata"]
    assert slim["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert slim["spec"]["selector"] == {}  # only ETP=Local Services need it (backend key)
    assert slim["status"] == {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onprem_lb", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    missing = _cli("controller", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode == 2
    expected = (
        f"kubeconfig {tmp_path / 'nope'} (--kubeconfig): no such file; point it at the cluster's admin kubeconfig"
        " (kubeadm: /etc/kubernetes/admin.conf)"
    )
    assert missing.stderr.strip() == f"onprem-lb controller: {expected}"
    legacy_config = "address-pools:\n- {name: a, protocol: l3, addresses: [192.0.2.0/28]}\n"
    bad = _cli("convert-configmap", "-", stdin=legacy_config)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "address-pools[0]: protocol must be layer2 or bgp, got 'l3'" in bad.stderr
    garbage = tmp_path / "kc"
    garbage.write_text("this is not a kubeconfig")
    broken = _cli("controller", "--kubeconfig", str(garbage))
    assert broken.returncode == 2 and "Traceback" not in broken.stderr and "it is a YAML scalar" in broken.stderr


def test_speaker_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    no_node = _cli("speaker", "--heartbeat-address", "192.0.2.11:7946", "--kubeconfig", str(tmp_path / "kc"))
    assert no_node.returncode == 2
    assert (
        no_node.stderr.strip()
        == "onprem-lb speaker: no node name: pass --node-name or set NODE_NAME (the Node object's name)"
    )
    bad_addr = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11")
    assert bad_addr.returncode == 2 and "argument --heartbeat-address: '192.0.2.11' is not HOST:PORT" in bad_addr.stderr
    empty = tmp_path / "secret"
    empty.write_text("\n")
    no_secret = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11:7946",
                     "--secret-file", str(empty))  # fmt: skip
    assert no_secret.returncode == 2 and f"secret file {empty} is empty" in no_secret.stderr
    missing = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11:7946",
                   "--kubeconfig", str(tmp_path / "nope"))  # fmt: skip
    assert missing.returncode == 2 and "(--kubeconfig): no such file" in missing.stderr
    for result in (no_node, bad_addr, no_secret, missing):
        assert "Traceback" not in result.stderr
