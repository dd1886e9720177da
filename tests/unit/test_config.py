"""The config model (plugins/module_utils/config_model.py, src/onprem_lb/config.py): every kind read
into one snapshot, each problem a condition on its object, never an exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onprem_lb.config import (
    BGPPeer,
    ConfigSnapshot,
    ObjectRef,
    build_config,
    community_problem,
    config_from_objects,
    parse_duration,
)

NS = "metallb-system"


def obj(kind: str, name: str, spec: dict[str, Any], created: str = "2026-01-01T00:00:00Z", **meta: Any) -> Any:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created, **meta},
        "spec": spec,
    }


POOL = obj("IPAddressPool", "p", {"addresses": ["1.2.3.0/28", "2001:db8::/120"]}, labels={"zone": "a"})
PROFILE = obj("BFDProfile", "fast", {"receiveInterval": 100, "detectMultiplier": 5})
ALIASES = obj("Community", "aliases", {"communities": [{"name": "no-export", "value": "65535:65281"}]})
PEER = {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1"}


def cond(snap: ConfigSnapshot, kind: str, name: str) -> tuple[str, str, str]:
    c = snap.conditions[ObjectRef(kind, NS, name)]
    return c.status, c.reason, c.message


def snapshot(*objects: dict[str, Any]) -> ConfigSnapshot:
    return config_from_objects([POOL, PROFILE, ALIASES, *objects])


# -- BGPAdvertisement -----------------------------------------------------------------------------

AD_CASES = [
    # (spec, reason or None for valid, a part of the message)
    ({"aggregationLength": 28, "aggregationLengthV6": 120}, None, ""),
    # MetalLB's own example: a /28 with aggregation length 26 would announce addresses outside the pool
    ({"aggregationLength": 26}, "InvalidAggregation", "prefix /28 of 1.2.3.0/28"),
    ({"aggregationLengthV6": 119}, "InvalidAggregation", "aggregationLengthV6 119"),
    ({"aggregationLength": 33}, "InvalidField", "from 0 to 32"),
    ({"communities": ["no-export", "64512:100", "large:1:2:3"]}, None, ""),
    ({"communities": ["no-such-alias"]}, "UnknownCommunity", "neither a community nor an alias"),
    ({"communities": ["65536:1"]}, "UnknownCommunity", "at most 65535"),
    ({"localPref": -1}, "InvalidField", "localPref"),
    ({"peers": ["nobody"]}, "UnknownPeer", "'nobody'"),
    ({"ipAddressPools": ["gone"]}, "UnknownPool", "'gone'"),
    ({"ipAddressPoolSelectors": [{"matchLabels": {"zone": "b"}}], "aggregationLength": 0}, None, ""),
    ({"nodeSelectors": [{"matchExpressions": [{"key": "k", "operator": "Maybe"}]}]}, "InvalidField", "Maybe"),
]


@pytest.mark.parametrize(("spec", "reason", "text"), AD_CASES, ids=[str(c[0]) for c in AD_CASES])
def test_bgp_advertisements(spec: dict[str, Any], reason: str | None, text: str) -> None:
    snap = snapshot(obj("BGPAdvertisement", "ad", spec))
    status, got_reason, message = cond(snap, "BGPAdvertisement", "ad")
    if reason is None:
        assert status == "True", message
    else:
        assert (status, got_reason) == ("False", reason) and text in message
    # refused for its attributes: not announced at all; refused for a reference: still serves the rest
    kept = [a.name for a in snap.bgp_advertisements]
    assert kept == ([] if reason in ("InvalidAggregation", "InvalidField", "UnknownCommunity") else ["ad"])


def test_community_aliases_resolve_to_their_values() -> None:
    snap = snapshot(obj("BGPAdvertisement", "ad", {"communities": ["no-export", "64512:100", "no-export"]}))
    assert snap.bgp_advertisements[0].communities == ("64512:100", "65535:65281")


def test_a_second_community_defining_an_alias_again_is_refused() -> None:
    again = obj("Community", "again", {"communities": [{"name": "no-export", "value": "1:1"}]}, "2026-02-01T00:00:00Z")
    snap = snapshot(again)
    assert cond(snap, "Community", "again")[:2] == ("False", "DuplicateAlias")
    assert snap.communities == {"no-export": "65535:65281"}  # the older one keeps the alias


# -- BGPPeer --------------------------------------------------------------------------------------

PEER_CASES = [
    ({}, None, ""),
    ({"holdTime": "90s", "keepaliveTime": "30s", "connectTime": "1m"}, None, ""),
    ({"holdTime": "2s"}, "InvalidField", "0 or at least 3s"),
    ({"holdTime": "30s", "keepaliveTime": "30s"}, "InvalidField", "shorter than holdTime"),
    ({"holdTime": "ninety"}, "InvalidField", "duration"),
    ({"bfdProfile": "fast"}, None, ""),
    ({"bfdProfile": "slow"}, "UnknownBFDProfile", "'slow' does not exist (BFD profiles: fast)"),
    ({"dynamicASN": "external"}, "InvalidField", "exactly one of peerASN and dynamicASN"),
    ({"peerAddress": "192.0.2.300"}, "InvalidField", "not an IP address"),
    ({"routerID": "2001:db8::1"}, "InvalidField", "IPv4"),
    ({"password": "x", "passwordSecret": {"name": "s"}}, "InvalidField", "not both"),
    ({"myASN": 2**32}, "InvalidField", "myASN"),
    ({"ebgpMultiHop": "yes"}, "InvalidField", "true or false"),
]


@pytest.mark.parametrize(("extra", "reason", "text"), PEER_CASES, ids=[str(c[0]) for c in PEER_CASES])
def test_bgp_peers(extra: dict[str, Any], reason: str | None, text: str) -> None:
    snap = snapshot(obj("BGPPeer", "r", {**PEER, **extra}))
    status, got_reason, message = cond(snap, "BGPPeer", "r")
    if reason is None:
        assert status == "True", message
        assert [p.name for p in snap.peers] == ["r"]
    else:
        assert (status, got_reason) == ("False", reason) and text in message, message
        assert snap.peers == ()


def test_a_peer_password_never_enters_the_snapshot() -> None:
    inline = snapshot(obj("BGPPeer", "r", {**PEER, "password": "hunter2-secret"}))
    secret = snapshot(obj("BGPPeer", "r", {**PEER, "passwordSecret": {"name": "bgp-auth"}}))
    assert inline.peers[0].has_password and "hunter2" not in repr(inline)
    assert secret.peers[0].password_secret == (NS, "bgp-auth")
    assert BGPPeer.__dataclass_fields__.keys().isdisjoint({"password"})


def test_bfd_profile_fields_and_ranges() -> None:
    snap = snapshot(obj("BFDProfile", "bad", {"detectMultiplier": 1}))
    assert snap.bfd_profiles["fast"].receive_interval == 100
    assert snap.bfd_profiles["fast"].detect_multiplier == 5
    assert snap.bfd_profiles["fast"].transmit_interval == 300  # the default
    assert cond(snap, "BFDProfile", "bad")[:2] == ("False", "InvalidField")


# -- L2Advertisement and pools ---------------------------------------------------------------------


@pytest.mark.parametrize("iface", ["", "a/b", "eth 0", "x" * 16, "eth0:1"])
def test_l2_advertisement_interfaces_must_be_interface_names(iface: str) -> None:
    snap = snapshot(obj("L2Advertisement", "l2", {"interfaces": [iface]}))
    assert cond(snap, "L2Advertisement", "l2")[:2] == ("False", "InvalidField")
    assert snap.l2_advertisements == ()


def test_pool_of_and_ignored_pools_agree_with_the_conditions() -> None:
    newer = obj("IPAddressPool", "newer", {"addresses": ["1.2.3.8/29"]}, "2026-03-01T00:00:00Z")
    snap = snapshot(newer)
    assert snap.pool_of("1.2.3.9") == "p"
    assert snap.pool_of("2001:db8::ff") == "p"
    assert snap.pool_of("1.2.3.99") is None and snap.pool_of("not an address") is None
    assert set(snap.ignored_pools()) == {"newer"}
    assert snap.pool_labels["p"] == {"zone": "a"}


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("", None), ("5", None)]
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0:0", True),
        ("65535:65535", True),
        ("65536:0", False),
        ("large:4294967295:0:1", True),
        ("large:4294967296:0:1", False),
        ("ext:rt:65000:1", True),
        ("65000", False),
        ("a:b", False),
    ],
)
def test_community_values(value: str, ok: bool) -> None:
    assert (community_problem(value) is None) is ok


# -- the class: whatever the objects hold, a snapshot and conditions, never an exception -----------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "addresses",
        "communities",
        "aggregationLength",
        "aggregationLengthV6",
        "localPref",
        "peers",
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "interfaces",
        "myASN",
        "peerASN",
        "dynamicASN",
        "peerAddress",
        "holdTime",
        "keepaliveTime",
        "bfdProfile",
        "passwordSecret",
        "password",
        "routerID",
        "receiveInterval",
        "echoMode",
    ]
)
KIND = st.sampled_from(["IPAddressPool", "L2Advertisement", "BGPAdvertisement", "BGPPeer", "Community", "BFDProfile"])
OBJECT = st.builds(
    lambda kind, name, spec: {"kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec},
    KIND,
    st.text(max_size=6),
    st.dictionaries(FIELDS, JSON, max_size=4) | JSON,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(OBJECT, max_size=6))
def test_any_objects_give_a_snapshot_with_a_condition_for_each(objects: list[dict[str, Any]]) -> None:
    snap = config_from_objects([POOL, *objects])
    named = {ObjectRef(o["kind"], NS, o["metadata"]["name"]) for o in objects}
    assert named <= set(snap.conditions)
    for ref, c in snap.conditions.items():
        assert c.status in ("True", "False") and c.reason and c.message, ref


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
