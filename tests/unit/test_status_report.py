"""`onprem-lb status` from the objects as the API gives them, and the states speakers publish on
their Leases (address_states). The lab test (extensions/molecule/site/tests/test_status.py) runs
the command against the real lab."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from onprem_lb import address_states, cli, status_report
from onprem_lb.speaker.bgp import announce
from onprem_lb.speaker.layer2 import election, handover, quorum

NOW = dt.datetime(2026, 12, 7, 4, 0, 0, tzinfo=dt.UTC)
STATES = sorted(address_states.MEANINGS)
ipv4s = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


def test_the_meanings_are_those_of_the_states_the_speakers_report() -> None:
    reported = {
        value
        for module in (election, handover, quorum, announce)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z][A-Za-z]+", value)
    }
    assert reported == set(address_states.MEANINGS)


@settings(max_examples=200)
@given(st.dictionaries(ipv4s, st.sampled_from(STATES), max_size=50))
def test_published_states_read_back_as_written_less_not_owner(states: dict[str, str]) -> None:
    decoded = address_states.decode(address_states.encode(states))
    assert decoded == ({ip: s for ip, s in states.items() if s != address_states.NOT_OWNER}, 0)


def test_a_long_listing_is_capped_keeps_what_is_announced_and_says_how_many_were_left_out() -> None:
    states = {str(ipaddress.IPv4Address(0x0A000000 + i)): "noLocalEndpoint" for i in range(address_states.MAX_LISTED)}
    states |= {"192.0.2.1": "announcing", "192.0.2.2": "notOwner"}
    decoded = address_states.decode(address_states.encode(states))
    assert decoded is not None
    shown, left_out = decoded
    assert shown["192.0.2.1"] == "announcing" and "192.0.2.2" not in shown
    assert len(shown) == address_states.MAX_LISTED and left_out == 1


@given(st.text(max_size=40))
def test_an_unreadable_annotation_reads_as_none_or_states(text: str) -> None:
    decoded = address_states.decode(text)
    assert decoded is None or isinstance(decoded[0], dict)


def lease(node: str, age: float, l2: dict[str, str] | None = None, bgp: dict[str, str] | None = None) -> dict[str, Any]:
    annotations = {}
    if l2 is not None:
        annotations[address_states.ANNOTATIONS["layer2"]] = address_states.encode(l2)
    if bgp is not None:
        annotations[address_states.ANNOTATIONS["bgp"]] = address_states.encode(bgp)
    renew = (NOW - dt.timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"name": f"speaker-{node}", "annotations": annotations},
        "spec": {"holderIdentity": node, "renewTime": renew, "leaseDurationSeconds": 10},
    }


def service(ns: str, name: str, ip: str | None, pool: str = "lab", lb_class: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "annotations": {"metallb.io/ip-allocated-from-pool": pool}},
        "spec": {"type": "LoadBalancer", **({"loadBalancerClass": lb_class} if lb_class else {})},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}] if ip else []}},
    }


def l2_status(ns: str, name: str, node: str) -> dict[str, Any]:
    labels = {"metallb.io/node": node, "metallb.io/service-name": name, "metallb.io/service-namespace": ns}
    return {"metadata": {"labels": labels}, "status": {"node": node, "interfaces": [{"name": "eth0"}]}}


def warning(ns: str, name: str, reason: str, message: str, at: str) -> dict[str, Any]:
    obj = {"kind": "Service", "namespace": ns, "name": name}
    return {"type": "Warning", "involvedObject": obj, "reason": reason, "message": message, "lastTimestamp": at}


def test_the_report_names_the_owner_every_nodes_state_stale_speakers_and_pending_services() -> None:
    report = status_report.build(
        services=[
            service("web", "a", "192.0.2.10"),
            service("web", "b", None),
            service("other", "c", "192.0.2.11", lb_class="someone-else"),  # not ours: left out
        ],
        leases=[
            lease("n1", 1.0, {"192.0.2.10": "announcing"}),
            lease("n2", 1.5, {"192.0.2.10": "notOwner"}),
            lease("n3", 42.0, {"192.0.2.10": "noLocalEndpoint"}),
        ],
        l2_statuses=[l2_status("web", "a", "n1")],
        bgp_statuses=[],
        events=[
            warning("web", "b", "AllocationFailed", "old", "2026-12-07T03:00:00Z"),
            warning("web", "b", "AllocationFailed", 'pool "x" does not exist', "2026-12-07T03:59:00Z"),
        ],
        now=NOW,
    )
    (entry,) = report["addresses"]
    assert entry["address"] == "192.0.2.10" and entry["pool"] == "lab" and entry["layer2"] == {"n1": ["eth0"]}
    assert entry["nodes"] == {
        "n1": {"layer2": "announcing"},
        "n2": {"layer2": "notOwner"},
        "n3": {"layer2": "noLocalEndpoint"},
    }
    (pending,) = report["pending"]
    assert pending == {"service": "web/b", "reason": "AllocationFailed", "message": 'pool "x" does not exist'}
    assert [n for n, s in report["speakers"].items() if not s["renewing"]] == ["n3"]
    text = status_report.render(report)
    assert "announced: layer2 from n1 (eth0)" in text
    assert "n3 layer2: noLocalEndpoint: externalTrafficPolicy Local" in text
    assert "(Lease not renewed: as of then)" in text
    assert "n3: last renewed 42 s ago (Lease 10 s)" in text
    assert 'web/b: AllocationFailed: pool "x" does not exist' in text


def test_an_address_nobody_announces_says_so() -> None:
    report = status_report.build(
        services=[service("web", "a", "2001:db8::1")],
        leases=[lease("n1", 1.0, {"2001:db8::1": "noServingEndpoints"}, bgp={})],
        l2_statuses=[],
        bgp_statuses=[],
        events=[],
        now=NOW,
    )
    assert report["addresses"][0]["nodes"] == {"n1": {"layer2": "noServingEndpoints", "bgp": "notOwner"}}
    assert "announced: BY NOBODY" in status_report.render(report)


def test_status_without_a_usable_kubeconfig_says_which_and_exits_2(tmp_path: Any, capsys: Any) -> None:
    missing = tmp_path / "nope"
    assert cli.main(["status", "--kubeconfig", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "--kubeconfig" in err and "Traceback" not in err


def test_the_lease_carries_the_states_as_last_replaced() -> None:
    publisher = address_states.Publisher("bgp")
    states = {"192.0.2.1": "announcing"}
    first = publisher.annotations(states)
    assert first == {"onprem-lb.io/bgp-states": '{"announcing":["192.0.2.1"]}'}
    assert publisher.annotations(states) is not first and publisher.annotations(states) == first
    assert publisher.annotations({"192.0.2.1": "fenced"}) == {"onprem-lb.io/bgp-states": '{"fenced":["192.0.2.1"]}'}
