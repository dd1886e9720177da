"""Table tests for the layer 2 election (who announces which address)."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onprem_lb.ipam import IpamError, LabelSelector
from onprem_lb.speaker import view
from onprem_lb.speaker.layer2 import election
from onprem_lb.speaker.layer2.election import Endpoints, L2Ad, NodeState, ServiceState

NODES = {n: NodeState(n, {"kubernetes.io/hostname": n, "zone": z}) for n, z in [("n1", "a"), ("n2", "a"), ("n3", "b")]}
ALL = ("n1", "n2", "n3")
UP = Endpoints(serving=True, ready_nodes=frozenset({"n2", "n3"}))


def pool_of(ip: str) -> str | None:
    return "v6" if ":" in ip else ("lab" if ip.startswith("192.0.2.") else None)


def metallb_first(nodes: tuple[str, ...], ip: str) -> str:
    """MetalLB's rule written independently: smallest sha256(node#ip)."""
    return min(nodes, key=lambda n: hashlib.sha256((n + "#" + ip).encode()).hexdigest())


def run(services: list[ServiceState], **kw: Any) -> dict[str, election.Announcement]:
    args: dict[str, Any] = {
        "endpoints": {s.key: UP for s in services},
        "nodes": NODES,
        "live": ALL,
        "ads": [L2Ad("all")],
        "pool_of": pool_of,
    }
    args.update(kw)
    return election.elect(services, **args)


@pytest.mark.parametrize("ip", ["192.0.2.10", "192.0.2.11", "192.0.2.200", "2001:db8::7"])
def test_default_order_is_metallbs(ip: str) -> None:
    got = run([ServiceState("ns/a", (ip,))])
    assert got[ip].node == metallb_first(ALL, ip)
    assert got[ip].interfaces == () and got[ip].services == ("ns/a",)


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    # (why, overrides, nodes that may win) — the winner must be the MetalLB-first of that set
    ("all live", {}, {"n1", "n2", "n3"}),
    ("n1 not live", {"live": ("n2", "n3")}, {"n2", "n3"}),
    ("no live speaker", {"live": ()}, set()),
    (
        "excluded by label",
        {"nodes": {**NODES, "n1": NodeState("n1", {election.EXCLUDE_LABEL: ""})}},
        {"n2", "n3"},
    ),
    ("network unavailable", {"nodes": {**NODES, "n2": NodeState("n2", {}, network_unavailable=True)}}, {"n1", "n3"}),
    ("node object gone", {"nodes": {"n3": NODES["n3"]}}, {"n3"}),
    ("no serving endpoint", {"endpoints": {"ns/a": Endpoints(serving=False)}}, set()),
    ("no endpoints at all", {"endpoints": {}}, set()),
    ("no advertisement", {"ads": []}, set()),
    ("advertisement for another pool", {"ads": [L2Ad("x", pools=frozenset({"other"}))]}, set()),
    ("advertisement names the pool", {"ads": [L2Ad("x", pools=frozenset({"lab"}))]}, {"n1", "n2", "n3"}),
    (
        "pool selector matches",
        {"ads": [L2Ad("x", pool_selectors=(LabelSelector.parse({"matchLabels": {"t": "1"}}, "t"),))],
         "pool_labels": {"lab": {"t": "1"}}},
        {"n1", "n2", "n3"},
    ),
    (
        "pool selector does not match",
        {"ads": [L2Ad("x", pool_selectors=(LabelSelector.parse({"matchLabels": {"t": "1"}}, "t"),))],
         "pool_labels": {"lab": {"t": "2"}}},
        set(),
    ),
    (
        "nodeSelectors zone a",
        {"ads": [L2Ad("x", node_selectors=(LabelSelector.parse({"matchLabels": {"zone": "a"}}, "t"),))]},
        {"n1", "n2"},
    ),
    (
        "two ads: union of their nodes",
        {"ads": [
            L2Ad("x", node_selectors=(LabelSelector.parse({"matchLabels": {"zone": "b"}}, "t"),)),
            L2Ad("y", node_selectors=(LabelSelector.parse(
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}, "t"),)),
        ]},
        {"n1", "n3"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("why", "overrides", "allowed"), CASES, ids=[c[0] for c in CASES])
def test_eligibility(why: str, overrides: dict[str, Any], allowed: set[str]) -> None:
    for ip in ("192.0.2.10", "192.0.2.33", "192.0.2.99"):
        got = run([ServiceState("ns/a", (ip,))], **overrides)
        if not allowed:
            assert ip not in got, why
        else:
            assert got[ip].node == metallb_first(tuple(sorted(allowed)), ip), why


def test_address_outside_every_pool_is_not_announced() -> None:
    assert run([ServiceState("ns/a", ("198.51.100.9",))]) == {}


def test_pool_annotation_wins_over_containment() -> None:
    ads = [L2Ad("x", pools=frozenset({"special"}))]
    assert run([ServiceState("ns/a", ("192.0.2.10",))], ads=ads) == {}
    assert run([ServiceState("ns/a", ("192.0.2.10",), pool="special")], ads=ads)["192.0.2.10"]


def test_local_traffic_policy_follows_ready_endpoints() -> None:
    ip = "192.0.2.10"
    for ready in ({"n1"}, {"n2", "n3"}, {"n1", "n3"}):
        eps = {"ns/a": Endpoints(serving=True, ready_nodes=frozenset(ready))}
        got = run([ServiceState("ns/a", (ip,), local=True)], endpoints=eps)
        assert got[ip].node == metallb_first(tuple(sorted(ready)), ip)
    eps = {"ns/a": Endpoints(serving=True, ready_nodes=frozenset({"n9"}))}  # endpoint on a node without a speaker
    assert run([ServiceState("ns/a", (ip,), local=True)], endpoints=eps) == {}


def test_dual_stack_service_announces_each_family() -> None:
    got = run([ServiceState("ns/a", ("192.0.2.10", "2001:db8::10"))])
    assert set(got) == {"192.0.2.10", "2001:db8::10"}
    assert got["2001:db8::10"].node == metallb_first(ALL, "2001:db8::10")


def test_shared_address_elects_one_node_serving_most() -> None:
    ip = "192.0.2.50"
    a = ServiceState("ns/a", (ip,), local=True)
    b = ServiceState("ns/b", (ip,), local=True)
    eps = {
        "ns/a": Endpoints(serving=True, ready_nodes=frozenset({"n1", "n2"})),
        "ns/b": Endpoints(serving=True, ready_nodes=frozenset({"n2", "n3"})),
    }
    got = run([a, b], endpoints=eps)
    assert got[ip].node == "n2"  # the only node eligible for both
    assert got[ip].services == ("ns/a", "ns/b")
    # Cluster policy: all equally eligible -> plain MetalLB order, one node for both Services
    got = run([ServiceState("ns/a", (ip,)), ServiceState("ns/b", (ip,))])
    assert got[ip].node == metallb_first(ALL, ip)


def test_interfaces_union_and_all() -> None:
    ip = "192.0.2.10"
    ads = [L2Ad("x", interfaces=("eth1",)), L2Ad("y", interfaces=("eth2", "eth1"))]
    assert run([ServiceState("ns/a", (ip,))], ads=ads)[ip].interfaces == ("eth1", "eth2")
    ads.append(L2Ad("z"))  # one advertisement without interfaces: every interface
    assert run([ServiceState("ns/a", (ip,))], ads=ads)[ip].interfaces == ()
    only_b = L2Ad(
        "b",
        interfaces=("eth9",),
        node_selectors=(LabelSelector.parse({"matchLabels": {"zone": "b"}}, "t"),),
    )
    got = run([ServiceState("ns/a", (ip,))], ads=[L2Ad("x", interfaces=("eth1",)), only_b])[ip]
    assert got.interfaces == (("eth1", "eth9") if got.node == "n3" else ("eth1",))


def test_deterministic_whatever_the_input_order() -> None:
    svcs = [ServiceState(f"ns/s{i}", (f"192.0.2.{i}",)) for i in range(1, 60)]
    first = run(svcs)
    assert run(list(reversed(svcs)), live=("n3", "n1", "n2")) == first


def test_spread_is_even_and_hash_order_is_not() -> None:
    svcs = [ServiceState(f"ns/s{i}", (f"192.0.2.{i}",)) for i in range(1, 31)]
    plain = Counter(a.node for a in run(svcs).values())
    spread = Counter(a.node for a in run(svcs, spread=True).values())
    assert sorted(spread.values()) == [10, 10, 10]
    assert max(plain.values()) - min(plain.values()) > 0  # hash order is lumpy for these 30
    # spread still only uses eligible nodes
    spread_local = run(
        [ServiceState(s.key, s.ips, local=True) for s in svcs],
        spread=True,
        endpoints={s.key: Endpoints(serving=True, ready_nodes=frozenset({"n1"})) for s in svcs},
    )
    assert {a.node for a in spread_local.values()} == {"n1"}


def test_spread_moves_few_addresses_when_a_node_leaves() -> None:
    svcs = [ServiceState(f"ns/s{i}", (f"192.0.2.{i}",)) for i in range(1, 31)]
    before = run(svcs, spread=True)
    after = run(svcs, spread=True, live=("n1", "n2"))
    moved = [ip for ip in before if before[ip].node != "n3" and after[ip].node != before[ip].node]
    assert all(a.node in ("n1", "n2") for a in after.values())
    assert len(moved) <= 5  # mostly only n3's addresses move


def test_endpoints_from_slices() -> None:
    slices = [
        {"endpoints": [
            {"addresses": ["10.0.0.1"], "nodeName": "n1", "conditions": {"ready": True, "serving": True}},
            {"addresses": ["10.0.0.2"], "nodeName": "n2", "conditions": {"ready": False, "serving": False}},
        ]},
        {"endpoints": [{"addresses": ["10.0.0.3"], "nodeName": "n3", "conditions": {}}]},  # nil ready = ready
    ]  # fmt: skip
    eps = view.endpoints_from_slices(slices)
    assert eps == Endpoints(serving=True, ready_nodes=frozenset({"n1", "n3"}))
    terminating = [{"endpoints": [{"nodeName": "n1", "conditions": {"ready": False, "serving": True}}]}]
    assert view.endpoints_from_slices(terminating) == Endpoints(serving=True, ready_nodes=frozenset())
    assert view.endpoints_from_slices([{"endpoints": None}]) == Endpoints()


def test_node_state_and_advertisement_parsing() -> None:
    node = view.node_state(
        {"metadata": {"name": "n1", "labels": {"a": "b"}},
         "status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}]}}
    )  # fmt: skip
    assert node.excluded and node.labels == {"a": "b"}
    ad = L2Ad.from_object(
        {"metadata": {"name": "x"},
         "spec": {"ipAddressPools": ["p"], "interfaces": ["eth0"],
                  "nodeSelectors": [{"matchLabels": {"zone": "a"}}]}}
    )  # fmt: skip
    assert ad.pools == {"p"} and ad.interfaces == ("eth0",) and ad.selects_node({"zone": "a"})
    assert not ad.selects_node({"zone": "b"})
    with pytest.raises(IpamError):
        L2Ad.from_object({"metadata": {"name": "bad"}, "spec": {"nodeSelectors": [{"matchExpressions": "x"}]}})


ZONE_B = (LabelSelector.parse({"matchLabels": {"zone": "b"}}, "t"),)
WHY_CASES: list[tuple[str, dict[str, Any], ServiceState, str | None]] = [
    # (case, overrides, service, why n1 may not announce its address; None: it may)
    ("eligible", {}, ServiceState("ns/a", ("192.0.2.10",)), None),
    ("outside every pool", {}, ServiceState("ns/a", ("198.51.100.1",)), election.NOT_IN_ANY_POOL),
    ("no serving endpoint", {"endpoints": {}}, ServiceState("ns/a", ("192.0.2.10",)), election.NO_SERVING_ENDPOINTS),
    ("our speaker not live", {"live": ("n2",)}, ServiceState("ns/a", ("192.0.2.10",)), election.SPEAKER_NOT_LIVE),
    ("node object gone", {"nodes": {}}, ServiceState("ns/a", ("192.0.2.10",)), election.NODE_UNKNOWN),
    (
        "node excluded",
        {"nodes": {"n1": NodeState("n1", {election.EXCLUDE_LABEL: ""})}},
        ServiceState("ns/a", ("192.0.2.10",)),
        election.NODE_EXCLUDED,
    ),
    (
        "no advertisement for the pool",
        {"ads": [L2Ad("x", pools=frozenset({"v6"}))]},
        ServiceState("ns/a", ("192.0.2.10",)),
        election.NO_MATCHING_ADVERTISEMENT,
    ),
    (
        "advertised from other nodes",
        {"ads": [L2Ad("x", node_selectors=ZONE_B)]},
        ServiceState("ns/a", ("192.0.2.10",)),
        election.NODE_NOT_SELECTED,
    ),
    (
        "ETP Local, endpoints elsewhere",
        {},
        ServiceState("ns/a", ("192.0.2.10",), local=True),
        election.NO_LOCAL_ENDPOINT,
    ),
]


@pytest.mark.parametrize(("overrides", "svc", "reason"), [c[1:] for c in WHY_CASES], ids=[c[0] for c in WHY_CASES])
def test_why_a_node_may_not_announce(overrides: dict[str, Any], svc: ServiceState, reason: str | None) -> None:
    args: dict[str, Any] = {
        "endpoints": {svc.key: UP},
        "nodes": NODES,
        "live": ALL,
        "ads": [L2Ad("all")],
        "pool_of": pool_of,
    }
    args.update(overrides)
    why = election.why_not_eligible([svc], "n1", **args)
    assert why == ({} if reason is None else {svc.ips[0]: reason})
    # the election agrees: n1 wins nothing it is said to be ineligible for
    won = election.elect([svc], **args)
    assert reason is None or won.get(svc.ips[0]) is None or won[svc.ips[0]].node != "n1"


def test_an_address_shared_by_services_is_eligible_if_any_service_makes_it_so() -> None:
    local = ServiceState("ns/local", ("192.0.2.10",), local=True)
    cluster = ServiceState("ns/cluster", ("192.0.2.10",))
    eps = {"ns/local": UP, "ns/cluster": UP}
    args: dict[str, Any] = {"endpoints": eps, "nodes": NODES, "live": ALL, "ads": [L2Ad("all")], "pool_of": pool_of}
    assert election.why_not_eligible([local], "n1", **args) == {"192.0.2.10": election.NO_LOCAL_ENDPOINT}
    assert election.why_not_eligible([local, cluster], "n1", **args) == {}


# -- successors: the membership watches rest on them ------------------------------------------------

NAMES = tuple(f"n{i}" for i in range(1, 7))
MANY = {n: NodeState(n, {"kubernetes.io/hostname": n, "zone": "ab"[i % 2]}) for i, n in enumerate(NAMES)}


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Any]:
    """Services (some sharing an address, some Local), endpoints, live nodes and advertisements."""
    ips = [f"192.0.2.{i}" for i in range(1, draw(st.integers(1, 8)) + 1)]
    services, endpoints = [], {}
    for i in range(draw(st.integers(1, 10))):
        svc = ServiceState(f"ns/s{i}", (draw(st.sampled_from(ips)),), local=draw(st.booleans()))
        services.append(svc)
        ready = draw(st.frozensets(st.sampled_from(NAMES)))
        endpoints[svc.key] = Endpoints(serving=draw(st.booleans()) or bool(ready), ready_nodes=ready)
    zone_b = L2Ad("b", node_selectors=(LabelSelector.parse({"matchLabels": {"zone": "b"}}, "t"),))
    return {
        "services": services,
        "endpoints": endpoints,
        "nodes": MANY,
        "live": draw(st.frozensets(st.sampled_from(NAMES), min_size=1)),
        "ads": draw(st.sampled_from([[L2Ad("all")], [zone_b], [zone_b, L2Ad("a", interfaces=("eth1",))]])),
        "pool_of": pool_of,
    }


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_the_successor_is_who_wins_without_the_winner_and_nobody_else_matters(cluster: dict[str, Any]) -> None:
    services = cluster.pop("services")
    winners, successors = election.elect_with_successors(services, **cluster)
    assert winners == election.elect(services, **cluster)
    live = cluster.pop("live")
    for ip, ann in winners.items():
        without_winner = election.elect(services, live=live - {ann.node}, **cluster)
        assert successors.get(ip) == (without_winner[ip].node if ip in without_winner else None)
        for other in live - {ann.node}:  # a node that does not win may die: no winner changes
            assert election.elect(services, live=live - {other}, **cluster)[ip].node == ann.node
    assert set(successors) <= set(winners)
    assert election.elect_with_successors(services, live=live, spread=True, **cluster)[1] == {}
