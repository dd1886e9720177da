"""speaker/bgp/announce.py: which prefixes this node sends to which peer, and why not."""

from __future__ import annotations

from typing import Any

import pytest

from onprem_lb.config import BGPAdvertisement, BGPPeer
from onprem_lb.ipam import LabelSelector
from onprem_lb.speaker.bgp import announce
from onprem_lb.speaker.bgp.announce import Attributes
from onprem_lb.speaker.view import EXCLUDE_LABEL, Endpoints, NodeState, ServiceState

ZONE_A = (LabelSelector.parse({"matchLabels": {"zone": "a"}}, "t"),)
ZONE_Z = (LabelSelector.parse({"matchLabels": {"zone": "z"}}, "t"),)
N1 = NodeState("n1", {"zone": "a"})
UP = Endpoints(serving=True, ready_nodes=frozenset({"n2"}))
R1 = BGPPeer("r1", my_asn=64512, peer_asn=64512, peer_address="198.51.100.1")
R2 = BGPPeer("r2", my_asn=64512, peer_asn=64500, peer_address="198.51.100.2")
WEB = ServiceState("apps/web", ("192.0.2.10",))


def pool_of(ip: str) -> str | None:
    return "v6" if ":" in ip else ("lab" if ip.startswith("192.0.2.") else None)


def run(services: list[ServiceState], **kw: Any) -> announce.Desired:
    args: dict[str, Any] = {
        "node": N1,
        "may_announce": True,
        "endpoints": {s.key: UP for s in services},
        "ads": [BGPAdvertisement("all")],
        "peers": [R1, R2],
        "pool_of": pool_of,
        "pool_labels": {"lab": {"tier": "gold"}},
    }
    args.update(kw)
    return announce.desired(services, **args)


def test_every_eligible_node_announces_to_every_peer_of_the_family() -> None:
    r6 = BGPPeer("r6", my_asn=64512, peer_asn=64500, peer_address="2001:db8:1::1")
    unnumbered = BGPPeer("u", my_asn=64512, dynamic_asn="external", interface="eth1")
    got = run([WEB, ServiceState("apps/v6", ("2001:db8:a::10",))], peers=[R1, R2, r6, unnumbered])
    assert got.routes == {
        "r1": {"192.0.2.10/32": Attributes()},
        "r2": {"192.0.2.10/32": Attributes()},
        "r6": {"2001:db8:a::10/128": Attributes()},
        "u": {"192.0.2.10/32": Attributes(), "2001:db8:a::10/128": Attributes()},
    }
    assert got.states == {"192.0.2.10": "announcing", "2001:db8:a::10": "announcing"}
    assert got.services == {"apps/web": {"r1", "r2", "u"}, "apps/v6": {"r6", "u"}}


CASES: list[tuple[str, dict[str, Any], ServiceState, str]] = [
    ("outside every pool", {}, ServiceState("a/x", ("203.0.113.5",)), "notInAnyPool"),
    ("no serving endpoint", {"endpoints": {}}, WEB, "noServingEndpoints"),
    ("fenced", {"may_announce": False}, WEB, "fenced"),
    ("node unknown", {"node": None}, WEB, "nodeUnknown"),
    ("node excluded", {"node": NodeState("n1", {EXCLUDE_LABEL: ""})}, WEB, "nodeExcluded"),
    ("unavailable", {"node": NodeState("n1", {"zone": "a"}, network_unavailable=True)}, WEB, "nodeExcluded"),
    ("local, no endpoint here", {}, ServiceState("apps/web", ("192.0.2.10",), local=True), "noLocalEndpoint"),
    ("no ad for the pool", {"ads": [BGPAdvertisement("other", pools=frozenset({"v6"}))]}, WEB,
     "noMatchingAdvertisement"),
    ("ad for other nodes", {"ads": [BGPAdvertisement("b", node_selectors=(
        LabelSelector.parse({"matchLabels": {"zone": "b"}}, "t"),))]}, WEB, "nodeNotSelected"),
    ("no peer for this node", {"peers": [BGPPeer("r9", my_asn=1, peer_asn=2, peer_address="198.51.100.9",
                                                 node_selectors=ZONE_Z)]}, WEB, "noPeerForThisNode"),
    ("ad names a peer we lack", {"ads": [BGPAdvertisement("x", peers=("r9",))]}, WEB, "noPeerForThisNode"),
]  # fmt: skip


@pytest.mark.parametrize(("why", "overrides", "svc", "reason"), CASES, ids=[c[0] for c in CASES])
def test_why_an_address_is_not_announced(why: str, overrides: dict[str, Any], svc: ServiceState, reason: str) -> None:
    got = run([svc], **overrides)
    assert not got.prefixes()
    assert got.states == {svc.ips[0]: reason}, why


def test_local_policy_with_a_ready_endpoint_here_announces() -> None:
    here = Endpoints(serving=True, ready_nodes=frozenset({"n1"}))
    svc = ServiceState("apps/web", ("192.0.2.10",), local=True)
    assert run([svc], endpoints={svc.key: here}).states == {"192.0.2.10": "announcing"}


def test_peers_selection_node_selectors_aggregation_and_attributes() -> None:
    ads = [
        BGPAdvertisement("to-r1", peers=("r1",), communities=("65000:1",), local_pref=100),
        BGPAdvertisement("agg", pool_selectors=(LabelSelector.parse({"matchLabels": {"tier": "gold"}}, "t"),),
                         aggregation_length=24, communities=("large:1:2:3",), node_selectors=ZONE_A),
        BGPAdvertisement("to-r1-too", peers=("r1",), communities=("65000:2", "65000:1"), local_pref=300),
    ]  # fmt: skip
    got = run([WEB], ads=ads)
    assert got.routes == {
        "r1": {
            "192.0.2.10/32": Attributes(("65000:1", "65000:2"), 300),  # merged: union, highest localPref
            "192.0.2.0/24": Attributes(("large:1:2:3",), None),
        },
        "r2": {"192.0.2.0/24": Attributes(("large:1:2:3",), None)},
    }


def test_a_peer_selects_its_nodes() -> None:
    only_a = BGPPeer("ra", my_asn=1, peer_asn=2, peer_address="198.51.100.3", node_selectors=ZONE_A)
    assert set(run([WEB], peers=[only_a, R2]).routes) == {"ra", "r2"}
    assert set(run([WEB], peers=[only_a, R2], node=NodeState("n1", {"zone": "b"})).routes) == {"r2"}


def test_an_address_shared_by_services_is_announced_if_any_service_allows() -> None:
    ip = "192.0.2.50"
    local = ServiceState("a/local", (ip,), local=True)
    cluster = ServiceState("a/cluster", (ip,))
    for order in ([local, cluster], [cluster, local]):
        got = run(order)
        assert got.states == {ip: "announcing"} and got.services == {"a/cluster": {"r1", "r2"}}


def test_v6_aggregation_masks_the_address() -> None:
    svc = ServiceState("apps/v6", ("2001:db8:a::1234",))
    r6 = BGPPeer("r6", my_asn=64512, peer_asn=64500, peer_address="2001:db8:1::1")
    got = run([svc], ads=[BGPAdvertisement("agg", aggregation_length_v6=120)], peers=[R1, r6])
    assert got.routes == {"r6": {"2001:db8:a::1200/120": Attributes()}}
