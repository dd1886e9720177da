"""Table tests for every IPAM rule, and property tests of the allocator's invariants."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.onprem.ingress.plugins.module_utils.ipam import (
    AddressRange,
    AllocationError,
    Allocator,
    IpamError,
    LabelSelector,
    Pool,
    ServiceRequest,
    address_text,
    find_cidr_conflicts,
    find_overlaps,
    parse_address,
    pools_from_specs,
    request_from_service,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def service(
    name: str,
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"type": "LoadBalancer", "ports": ports if ports is not None else [{"port": 80}], **spec},
    }


def req(name: str, ns_labels: dict[str, str] | None = None, **kw: Any) -> ServiceRequest:
    return request_from_service(service(name, **kw), ns_labels)


def ips(alloc: Any) -> list[str]:
    return list(alloc.ips)


# -- address ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version", "first", "last", "size"),
    [
        ("192.0.2.0/24", 4, "192.0.2.0", "192.0.2.255", 256),
        ("192.0.2.10-192.0.2.20", 4, "192.0.2.10", "192.0.2.20", 11),
        (" 192.0.2.10 - 192.0.2.10 ", 4, "192.0.2.10", "192.0.2.10", 1),
        ("192.0.2.7/32", 4, "192.0.2.7", "192.0.2.7", 1),
        ("2001:db8::/64", 6, "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", 2**64),
        ("2001:db8::5-2001:db8::9", 6, "2001:db8::5", "2001:db8::9", 5),
    ],
)
def test_range_parse(text: str, version: int, first: str, last: str, size: int) -> None:
    r = AddressRange.parse(text)
    assert (r.version, address_text(r.version, r.first), address_text(r.version, r.last), r.size) == (
        version,
        first,
        last,
        size,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.5/24", "has host bits set; write 192.0.2.0/24 for the whole network or 192.0.2.5/32"),
        ("192.0.2.5", "is a single address; write 192.0.2.5/32 or 192.0.2.5-192.0.2.5"),
        ("192.0.2.20-192.0.2.10", "ends before it starts; write it as 192.0.2.10-192.0.2.20"),
        ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
        ("banana", "neither a CIDR"),
        ("192.0.2.0/33", "neither a CIDR"),
        ("", "is not a string"),
    ],
)
def test_range_parse_errors_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(IpamError) as err:
        AddressRange.parse(text)
    assert message in str(err.value)


def test_range_str_prefers_cidr() -> None:
    assert str(AddressRange.parse("192.0.2.0-192.0.2.15")) == "192.0.2.0/28"
    assert str(AddressRange.parse("192.0.2.1-192.0.2.15")) == "192.0.2.1-192.0.2.15"


@pytest.mark.parametrize(
    ("addresses", "v4_size"),
    [
        (["192.0.2.0/24"], 254),
        (["192.0.2.0/23"], 508),
        (["192.0.2.1-192.0.2.254"], 254),
        (["192.0.2.250-192.0.3.5"], 10),  # 12 addresses minus .255 and .0
        (["192.0.2.16/28"], 16),
    ],
)
def test_avoid_buggy_ips_size(addresses: list[str], v4_size: int) -> None:
    pool = Pool.from_spec("p", {"addresses": addresses, "avoidBuggyIPs": True})
    assert pool.size(4) == v4_size
    allocator = Allocator([pool])
    got = set()
    for i in range(v4_size):
        got.add(ips(allocator.allocate(req(f"s{i}")))[0])
    assert not any(a.endswith((".0", ".255")) for a in got)
    with pytest.raises(AllocationError) as err:
        allocator.allocate(req("one-too-many"))
    assert err.value.reason == "PoolExhausted"


# -- pool specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "addresses must be a non-empty list"),
        ({"addresses": "192.0.2.0/24"}, "addresses must be a non-empty list"),
        ({"addresses": ["192.0.2.0/24"], "autoassign": True}, "unknown field(s) ['autoassign']"),
        ({"addresses": ["192.0.2.0/24"], "autoAssign": "yes"}, "autoAssign must be true or false"),
        ({"addresses": ["192.0.2.0/24", "192.0.2.128/25"]}, "overlap (192.0.2.128/25)"),
        ({"addresses": ["192.0.2.0/24"], "serviceAllocation": {"priority": -1}}, "priority must be a whole number"),
        ({"addresses": ["192.0.2.0/24"], "serviceAllocation": {"namespace": ["a"]}}, "unknown field(s) ['namespace']"),
        (
            {
                "addresses": ["192.0.2.0/24"],
                "serviceAllocation": {"serviceSelectors": [{"matchExpressions": [{"key": "a", "operator": "Is"}]}]},
            },
            "operator is 'Is'",
        ),
    ],
)
def test_pool_spec_errors(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(IpamError) as err:
        Pool.from_spec("bad", spec)
    assert message in str(err.value)
    assert "pool 'bad'" in str(err.value)


def test_duplicate_pool_names_rejected() -> None:
    with pytest.raises(IpamError, match="used twice"):
        pools_from_specs([("a", {"addresses": ["192.0.2.0/28"]}), ("a", {"addresses": ["192.0.2.16/28"]})])


def test_to_spec_normalises() -> None:
    pool = Pool.from_spec(
        "p",
        {
            "addresses": ["192.0.2.0-192.0.2.15", "2001:db8::/120"],
            "serviceAllocation": {
                "priority": 5,
                "namespaces": ["b", "a"],
                "serviceSelectors": [{"matchLabels": {"x": "y"}}],
            },
        },
    )
    assert pool.to_spec() == {
        "addresses": ["192.0.2.0/28", "2001:db8::/120"],
        "autoAssign": True,
        "avoidBuggyIPs": False,
        "serviceAllocation": {
            "priority": 5,
            "namespaces": ["a", "b"],
            "serviceSelectors": [{"matchLabels": {"x": "y"}}],
        },
    }


# -- overlaps and conflicts ------------------------------------------------------------------------


def test_overlaps_between_pools() -> None:
    pools = pools_from_specs(
        [
            ("a", {"addresses": ["192.0.2.0/25"]}),
            ("b", {"addresses": ["192.0.2.100-192.0.2.140"]}),
            ("c", {"addresses": ["192.0.2.200/29", "2001:db8::/64"]}),
            ("d", {"addresses": ["2001:db8::ff-2001:db8::1:0"]}),
        ]
    )
    assert [(o.first, o.second, o.addresses) for o in find_overlaps(pools)] == [
        ("a", "b", "192.0.2.100-192.0.2.127"),
        ("c", "d", "2001:db8::ff-2001:db8::1:0"),
    ]


def test_conflicts_with_cluster_cidrs() -> None:
    pools = pools_from_specs(
        [("lb", {"addresses": ["10.96.0.0/28", "192.0.2.0/24"]}), ("ok", {"addresses": ["198.51.100.0/24"]})]
    )
    found = find_cidr_conflicts(
        pools, {"service": ["10.96.0.0/12"], "node": ["192.0.2.0/26"], "pod": ["10.244.0.0/16"]}
    )
    assert [(o.first, o.second, o.addresses) for o in found] == [
        ("lb", "node", "192.0.2.0/26"),
        ("lb", "service", "10.96.0.0/28"),
    ]
    with pytest.raises(IpamError, match="node CIDR 'nope'"):
        find_cidr_conflicts(pools, {"node": ["nope"]})


# -- selectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({}, {"anything": "x"}, True),
    ],
)
def test_label_selector(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(selector, "sel").matches(labels) is expected


# -- service requests ------------------------------------------------------------------------------


def test_request_reads_both_annotation_spellings() -> None:
    new = req(
        "a",
        annotations={
            "metallb.io/loadBalancerIPs": "192.0.2.5",
            "metallb.io/address-pool": "p",
            "metallb.io/allow-shared-ip": "k",
        },
    )
    old = req(
        "a",
        annotations={
            "metallb.universe.tf/loadBalancerIPs": "192.0.2.5",
            "metallb.universe.tf/address-pool": "p",
            "metallb.universe.tf/allow-shared-ip": "k",
        },
    )
    assert new == old
    assert new.requested == (parse_address("192.0.2.5"),) and new.pool == "p" and new.sharing_key == "k"
    assert req("b", loadBalancerIP="192.0.2.6").requested == (parse_address("192.0.2.6"),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"annotations": {"metallb.io/loadBalancerIPs": "192.0.2.5"}, "loadBalancerIP": "192.0.2.6"},
            "keep only the annotation",
        ),
        ({"annotations": {"metallb.io/loadBalancerIPs": "192.0.2.300"}}, "'192.0.2.300' is not an IP address"),
        ({"annotations": {"metallb.io/loadBalancerIPs": "192.0.2.5,192.0.2.6"}}, "at most one IPv4 and one IPv6"),
        (
            {"annotations": {"metallb.io/loadBalancerIPs": "2001:db8::5"}},
            "is IPv6 but the service's ipFamilies are IPv4",
        ),
        (
            {
                "annotations": {"metallb.io/loadBalancerIPs": "192.0.2.5"},
                "ipFamilies": ["IPv4", "IPv6"],
                "ipFamilyPolicy": "RequireDualStack",
            },
            "RequireDualStack needs one IPv4 and one IPv6",
        ),
        ({"ipFamilyPolicy": "Dual"}, "ipFamilyPolicy 'Dual'"),
    ],
)
def test_request_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(IpamError) as err:
        req("bad", **kwargs)
    assert err.value.reason == "InvalidRequest"
    assert message in str(err.value)


def test_backend_key_only_for_local() -> None:
    assert req("a", selector={"app": "x", "tier": "web"}).backend_key == ""
    assert req("a", selector={"tier": "web", "app": "x"}, externalTrafficPolicy="Local").backend_key == "app=x,tier=web"


# -- allocation rules ------------------------------------------------------------------------------


def allocator(*specs: tuple[str, dict[str, Any]]) -> Allocator:
    return Allocator(pools_from_specs(specs))


def test_lowest_free_first_and_ranges_in_order() -> None:
    a = allocator(("p", {"addresses": ["192.0.2.10-192.0.2.11", "192.0.2.1-192.0.2.2"]}))
    assert [ips(a.allocate(req(f"s{i}")))[0] for i in range(4)] == [
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.1",
        "192.0.2.2",
    ]
    a.release("default/s1")
    a.release("default/s0")
    assert ips(a.allocate(req("again")))[0] == "192.0.2.10"


def test_requested_address_honoured_and_protected() -> None:
    a = allocator(("p", {"addresses": ["192.0.2.0/28"]}))
    assert ips(a.allocate(req("pinned", annotations={"metallb.io/loadBalancerIPs": "192.0.2.7"}))) == ["192.0.2.7"]
    with pytest.raises(AllocationError) as err:
        a.allocate(req("thief", loadBalancerIP="192.0.2.7"))
    assert err.value.reason == "AddressInUse" and "default/pinned" in str(err.value)
    with pytest.raises(AllocationError) as err:
        a.allocate(req("outside", loadBalancerIP="198.51.100.1"))
    assert err.value.reason == "NotInAnyPool"
    # automatic allocation skips the requested address
    assert [ips(a.allocate(req(f"s{i}")))[0] for i in range(8)][-1] == "192.0.2.8"


def test_requested_buggy_ip_refused_in_avoid_buggy_pool() -> None:
    a = allocator(("p", {"addresses": ["192.0.2.0/24"], "avoidBuggyIPs": True}))
    with pytest.raises(AllocationError) as err:
        a.allocate(req("x", loadBalancerIP="192.0.2.255"))
    assert err.value.reason == "NotInAnyPool"


def test_requested_pool_and_auto_assign() -> None:
    a = allocator(
        ("manual", {"addresses": ["192.0.2.0/28"], "autoAssign": False}), ("auto", {"addresses": ["198.51.100.0/28"]})
    )
    assert ips(a.allocate(req("plain")))[0] == "198.51.100.0"
    assert ips(a.allocate(req("m", annotations={"metallb.io/address-pool": "manual"})))[0] == "192.0.2.0"
    with pytest.raises(AllocationError) as err:
        a.allocate(req("x", annotations={"metallb.io/address-pool": "nope"}))
    assert err.value.reason == "UnknownPool" and "known pools: auto, manual" in str(err.value)
    with pytest.raises(AllocationError) as err:
        a.allocate(req("y", annotations={"metallb.io/address-pool": "auto", "metallb.io/loadBalancerIPs": "192.0.2.3"}))
    assert "belongs to pool 'manual'" in str(err.value)


def test_only_manual_pools_leave_service_pending() -> None:
    a = allocator(("manual", {"addresses": ["192.0.2.0/28"], "autoAssign": False}))
    with pytest.raises(AllocationError) as err:
        a.allocate(req("plain"))
    assert err.value.reason == "PoolExhausted" and "no autoAssign pool admits it" in str(err.value)


def test_service_allocation_priority_namespaces_and_selectors() -> None:
    a = allocator(
        ("general", {"addresses": ["192.0.2.0/28"]}),
        ("team-low", {"addresses": ["198.51.100.0/28"], "serviceAllocation": {"namespaces": ["team"]}}),
        (
            "team-high",
            {"addresses": ["198.51.100.16/28"], "serviceAllocation": {"priority": 1, "namespaces": ["team"]}},
        ),
        (
            "team-mid",
            {
                "addresses": ["198.51.100.32/28"],
                "serviceAllocation": {"priority": 7, "namespaceSelectors": [{"matchLabels": {"tier": "gold"}}]},
            },
        ),
        (
            "web-only",
            {
                "addresses": ["203.0.113.0/28"],
                "serviceAllocation": {"serviceSelectors": [{"matchLabels": {"app": "web"}}]},
            },
        ),
    )
    assert a.allocate(req("x", namespace="team")).pool == "team-high"
    assert a.allocate(req("y", namespace="other", ns_labels={"tier": "gold"})).pool == "team-mid"
    assert a.allocate(req("z", namespace="other")).pool == "general"
    assert a.allocate(req("w", labels={"app": "web"})).pool == "web-only"
    # a pool restricted to other services never serves this one, even when asked by name
    with pytest.raises(AllocationError) as err:
        a.allocate(req("v", annotations={"metallb.io/address-pool": "web-only"}))
    assert err.value.reason == "PoolNotAllowed"
    # unset priority (team-low) comes after every pool with a priority; team-mid does not admit
    # namespace "team" (no tier=gold label), so it is never used for it
    assert {a.allocate(req(f"fill{i}", namespace="team")).pool for i in range(15)} == {"team-high"}
    assert a.allocate(req("overflow", namespace="team")).pool == "team-low"


def test_priority_ordering_exact() -> None:
    a = allocator(
        ("no-priority", {"addresses": ["192.0.2.0/32"], "serviceAllocation": {"namespaces": ["t"]}}),
        ("p2", {"addresses": ["192.0.2.2/32"], "serviceAllocation": {"priority": 2, "namespaces": ["t"]}}),
        ("p1", {"addresses": ["192.0.2.1/32"], "serviceAllocation": {"priority": 1, "namespaces": ["t"]}}),
        ("general", {"addresses": ["192.0.2.3/32"]}),
    )
    assert [a.allocate(req(f"s{i}", namespace="t")).pool for i in range(4)] == ["p1", "p2", "no-priority", "general"]


def test_dual_stack_policies() -> None:
    a = allocator(
        ("v4", {"addresses": ["192.0.2.0/30"]}), ("both", {"addresses": ["198.51.100.0/30", "2001:db8::/126"]})
    )
    dual: dict[str, Any] = {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}
    assert ips(a.allocate(req("d", **dual))) == ["198.51.100.0", "2001:db8::"]
    v6first: dict[str, Any] = {"ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "RequireDualStack"}
    assert ips(a.allocate(req("d6", **v6first))) == ["2001:db8::1", "198.51.100.1"]
    assert ips(a.allocate(req("single6", ipFamilies=["IPv6"]))) == ["2001:db8::2"]
    # only one IPv6 left: RequireDualStack takes it with an IPv4 from the same pool
    assert ips(a.allocate(req("d2", **dual))) == ["198.51.100.2", "2001:db8::3"]
    with pytest.raises(AllocationError):
        a.allocate(req("d3", **dual))  # no IPv6 left anywhere
    prefer: dict[str, Any] = {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack"}
    # no pool has both families left: the first pool (by name) with the primary family serves it
    assert ips(a.allocate(req("p", **prefer))) == ["198.51.100.3"]
    assert ips(a.allocate(req("p2", **prefer))) == ["192.0.2.0"]


def test_sharing_rules() -> None:
    a = allocator(("p", {"addresses": ["192.0.2.0/29"]}))
    share = {"metallb.io/allow-shared-ip": "k"}
    first = a.allocate(req("web", annotations=share, ports=[{"port": 80}]))
    assert ips(a.allocate(req("tls", annotations=share, ports=[{"port": 443}]))) == ips(first)
    assert ips(a.allocate(req("dns", annotations=share, ports=[{"port": 53, "protocol": "UDP"}, {"port": 53}]))) == ips(
        first
    )
    # same port/protocol clashes: next address
    assert ips(a.allocate(req("web2", annotations=share, ports=[{"port": 80}]))) == ["192.0.2.1"]
    # different key, no key: not shared
    assert ips(a.allocate(req("other", annotations={"metallb.io/allow-shared-ip": "x"}, ports=[{"port": 22}]))) == [
        "192.0.2.2"
    ]
    assert ips(a.allocate(req("none", ports=[{"port": 23}]))) == ["192.0.2.3"]
    # ETP Local with a different backend key may not join a Cluster-policy group
    local = a.allocate(
        req("local", annotations=share, ports=[{"port": 8080}], externalTrafficPolicy="Local", selector={"app": "a"})
    )
    assert ips(local) == ["192.0.2.4"]
    with pytest.raises(AllocationError) as err:
        a.allocate(
            req(
                "local2",
                annotations=share,
                ports=[{"port": 81}],
                externalTrafficPolicy="Local",
                selector={"app": "b"},
                loadBalancerIP="192.0.2.0",
            )
        )
    assert "externalTrafficPolicy" in str(err.value)
    # releasing one sharer keeps the address for the others
    a.release("default/web")
    assert a.holders(*parse_address("192.0.2.0")) == ["default/dns", "default/tls"]
    assert ips(a.allocate(req("fresh"))) == ["192.0.2.5"]


def test_allocation_is_sticky_and_follows_changed_requests() -> None:
    a = allocator(
        ("p", {"addresses": ["192.0.2.0/29"]}), ("q", {"addresses": ["198.51.100.0/29"], "autoAssign": False})
    )
    first = a.allocate(req("s"))
    assert a.allocate(req("s")) == first  # idempotent
    moved = a.allocate(req("s", loadBalancerIP="192.0.2.5"))
    assert ips(moved) == ["192.0.2.5"]
    assert ips(a.allocate(req("s", annotations={"metallb.io/address-pool": "q"}))) == ["198.51.100.0"]
    assert a.usage("p").used == {"IPv4": 0, "IPv6": 0}


def test_set_pools_keeps_what_still_fits_and_returns_the_rest() -> None:
    a = allocator(("p", {"addresses": ["192.0.2.0/29"]}))
    for i in range(6):
        a.allocate(req(f"s{i}"))
    displaced = a.set_pools(
        pools_from_specs([("p", {"addresses": ["192.0.2.0/30"]}), ("n", {"addresses": ["198.51.100.0/30"]})])
    )
    assert sorted(d.service for d in displaced) == ["default/s4", "default/s5"]
    assert ips(a.allocation("default/s1")) == ["192.0.2.1"]
    assert ips(a.allocate(req("s4"))) == ["198.51.100.0"]
    assert a.usage("p").used["IPv4"] == 4 and a.usage("n").used["IPv4"] == 1


def test_rebuild_from_status_then_allocate_never_moves() -> None:
    """A controller restart: assign what Services already hold, then new ones get the gaps."""
    a = allocator(("p", {"addresses": ["192.0.2.0/29"]}))
    held = {"a": "192.0.2.3", "b": "192.0.2.0", "c": "192.0.2.6"}
    for name, ip in held.items():
        a.assign(req(name), [parse_address(ip)])
    for name, ip in held.items():
        assert ips(a.allocate(req(name))) == [ip]
    assert [ips(a.allocate(req(f"n{i}")))[0] for i in range(5)] == [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.4",
        "192.0.2.5",
        "192.0.2.7",
    ]


def test_huge_ipv6_pool_is_not_expanded() -> None:
    a = allocator(("v6", {"addresses": ["2001:db8::/32"]}))
    assert a.usage("v6").size["IPv6"] == 2**96
    assert ips(a.allocate(req("x", ipFamilies=["IPv6"]))) == ["2001:db8::"]
    assert a.usage("v6").free["IPv6"] == 2**96 - 1


# -- properties ------------------------------------------------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["alloc", "alloc", "alloc", "release"]),
        st.integers(min_value=0, max_value=15),  # service id
        st.sampled_from([None, "k1", "k2"]),  # sharing key
        st.sampled_from([80, 443]),
    ),
    max_size=60,
)


def run_ops(sequence: list[tuple[str, int, str | None, int]]) -> tuple[Allocator, list[tuple[str, Any]]]:
    a = allocator(
        ("small", {"addresses": ["192.0.2.0/29"], "avoidBuggyIPs": True}), ("v6", {"addresses": ["2001:db8::/125"]})
    )
    log: list[tuple[str, Any]] = []
    for op, sid, key, port in sequence:
        name = f"s{sid}"
        if op == "release":
            a.release(f"default/{name}")
            log.append(("release", name))
            continue
        annotations = {"metallb.io/allow-shared-ip": key} if key else {}
        fam: dict[str, Any] = (
            {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack"} if sid % 3 == 0 else {}
        )
        try:
            log.append(("alloc", ips(a.allocate(req(name, annotations=annotations, ports=[{"port": port}], **fam)))))
        except AllocationError as exc:
            log.append(("error", exc.reason))
    return a, log


@settings(max_examples=300, deadline=None)
@given(ops)
def test_property_invariants(sequence: list[tuple[str, int, str | None, int]]) -> None:
    a, _ = run_ops(sequence)
    by_address: dict[tuple[int, int], list[Any]] = {}
    for alloc in a.allocations():
        pool = a.pools[alloc.pool]
        for version, value in alloc.addresses:
            assert pool.contains(version, value), "every address lies inside its pool (avoidBuggyIPs honoured)"
            by_address.setdefault((version, value), []).append(alloc)
    for holders in by_address.values():
        if len(holders) > 1:
            keys = {(h.sharing_key, h.backend_key) for h in holders}
            assert len(keys) == 1 and None not in {h.sharing_key for h in holders}, "sharing only with one key"
            all_ports = [p for h in holders for p in h.ports]
            assert len(all_ports) == len(set(all_ports)), "no port clash on a shared address"
    for name in ("small", "v6"):
        used = a.usage(name).used
        distinct = {addr for addr, hs in by_address.items() if hs[0].pool == name}
        assert used["IPv4"] + used["IPv6"] == len(distinct), "usage counts match allocations"


@settings(max_examples=100, deadline=None)
@given(ops)
def test_property_deterministic(sequence: list[tuple[str, int, str | None, int]]) -> None:
    assert run_ops(sequence)[1] == run_ops(sequence)[1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=29), max_size=30, unique=True))
def test_property_release_then_allocate_reuses_lowest(released: list[int]) -> None:
    a = allocator(("p", {"addresses": ["192.0.2.0/27"]}))
    for i in range(30):
        a.allocate(req(f"s{i}"))
    for i in released:
        a.release(f"default/s{i}")
    again = [ips(a.allocate(req(f"new{i}")))[0] for i in range(len(released))]
    assert again == [f"192.0.2.{i}" for i in sorted(released)]
