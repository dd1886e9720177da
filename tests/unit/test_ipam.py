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
    find_overlaps,
    parse_address,
    pools_from_specs,
    request_from_service,
)
from ansible_collections.onprem.ingress.plugins.module_utils.pool_checks import (
    NodeConflict,
    OutsideNodeSubnets,
    find_cidr_conflicts,
    find_node_conflicts,
    find_outside_node_subnets,
    parse_node_addresses,
    parse_node_subnets,
    subtract_ranges,
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
        AddressRange.parse(text, strict=True)
    assert message in str(err.value)


def test_host_bits_are_read_as_the_network_as_metallb_does_unless_strict() -> None:
    assert str(AddressRange.parse("192.0.2.5/24")) == "192.0.2.0/24"
    assert str(AddressRange.parse("2001:db8::5/64")) == "2001:db8::/64"
    pool = Pool.from_spec("p", {"addresses": ["192.0.2.5/24", "198.51.100.0/28"]})
    assert pool.notes == (
        "192.0.2.5/24 has host bits set and is read as its network 192.0.2.0/24, as MetalLB reads it;"
        " write 192.0.2.0/24",
    )
    assert Pool.from_spec("p", {"addresses": ["192.0.2.0/24"]}).notes == ()
    with pytest.raises(IpamError, match="has host bits set"):
        Pool.from_spec("p", {"addresses": ["192.0.2.5/24"]}, strict=True)


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


# -- pools and the node network ---------------------------------------------------------------------


def node_check(
    pool_specs: list[tuple[str, dict[str, Any]]], subnets: list[str], addresses: list[str]
) -> tuple[list[NodeConflict], list[OutsideNodeSubnets]]:
    pools = pools_from_specs(pool_specs)
    parsed = parse_node_subnets(subnets)
    return find_node_conflicts(pools, parsed, parse_node_addresses(addresses)), find_outside_node_subnets(pools, parsed)


def test_seed000_pool_inside_the_node_subnet_is_fine() -> None:
    """MetalLB: "the allocated addresses must be part of the host network"."""
    conflicts, outside = node_check(
        [("default", {"addresses": ["192.168.120.200-192.168.120.250"]})],
        ["192.168.120.0/24"],
        ["192.168.120.11", "192.168.120.12", "192.168.120.1"],
    )
    assert conflicts == [] and outside == []


def test_pool_holding_a_node_address_conflicts_and_says_what_to_write() -> None:
    conflicts, _ = node_check(
        [
            ("default", {"addresses": ["192.168.120.0/24"]}),
            ("clean", {"addresses": ["192.168.121.1-192.168.121.254"]}),
            ("v6", {"addresses": ["2001:db8::/120"]}),
        ],
        ["192.168.120.0/24", "192.168.121.0/24", "2001:db8::/64"],
        ["192.168.120.11", "2001:db8::5", "192.168.120.11"],
    )
    assert [(c.pool, c.addresses, c.suggestion) for c in conflicts] == [
        (
            "default",
            (
                ("192.168.120.0", "the network address of node subnet 192.168.120.0/24"),
                ("192.168.120.11", "node address"),
                ("192.168.120.255", "the broadcast address of node subnet 192.168.120.0/24"),
            ),
            ("192.168.120.1-192.168.120.10", "192.168.120.12-192.168.120.254"),
        ),
        ("v6", (("2001:db8::5", "node address"),), ("2001:db8::-2001:db8::4", "2001:db8::6-2001:db8::ff")),
    ]
    message = conflicts[0].message()
    assert "pool 'default' contains 192.168.120.0 (the network address" in message
    assert "192.168.120.11 (node address)" in message
    assert "addresses: [192.168.120.1-192.168.120.10, 192.168.120.12-192.168.120.254]" in message
    assert "node_addresses" in message
    assert "node_addresses" not in conflicts[1].message().split(";")[0]


@pytest.mark.parametrize(
    ("pool", "subnet", "conflicts"),
    [
        ("192.168.120.0/31", "192.168.120.0/31", []),  # point-to-point: both addresses usable
        ("192.168.120.0/32", "192.168.120.0/32", []),
        ("192.168.120.0/30", "192.168.120.0/30", ["192.168.120.0", "192.168.120.3"]),
        ("192.168.120.0/24", "192.168.120.0/24", []),  # with avoidBuggyIPs below: .0/.255 never handed out
        ("2001:db8::/64", "2001:db8::/64", []),  # IPv6 has no broadcast address
    ],
)
def test_network_and_broadcast_address(pool: str, subnet: str, conflicts: list[str]) -> None:
    found, _ = node_check([("p", {"addresses": [pool], "avoidBuggyIPs": pool.endswith("/24")})], [subnet], [])
    assert [a for c in found for a, _what in c.addresses] == conflicts


def test_many_node_addresses_are_summarised() -> None:
    nodes = [f"192.168.120.{i}" for i in range(10, 50, 2)]
    (conflict,), _ = node_check([("big", {"addresses": ["192.168.120.0/24"]})], ["192.168.120.0/24"], nodes)
    assert len(conflict.addresses) == 22 and conflict.suggestion == ()  # 21 pieces: too many to suggest
    assert "and 17 more" in conflict.message() and "leave them out of the pool" in conflict.message()
    nodes = [f"192.168.120.{i}" for i in range(10, 50)]
    (conflict,), _ = node_check([("big", {"addresses": ["192.168.120.0/24"]})], ["192.168.120.0/24"], nodes)
    assert conflict.suggestion == ("192.168.120.1-192.168.120.9", "192.168.120.50-192.168.120.254")


def test_pools_outside_every_node_subnet() -> None:
    _, outside = node_check(
        [
            ("inside", {"addresses": ["192.168.120.200/29"]}),
            ("straddles", {"addresses": ["192.168.120.250-192.168.121.5"]}),
            ("elsewhere", {"addresses": ["10.0.0.0/24", "2001:db8:1::/64"]}),
            ("two_subnets", {"addresses": ["192.168.122.0/23"]}),
            ("buggy_edge", {"addresses": ["192.168.119.255-192.168.120.10"], "avoidBuggyIPs": True}),
        ],
        ["192.168.120.0/24", "192.168.122.0/24", "192.168.123.0/24"],
        [],
    )
    assert [(o.pool, o.addresses) for o in outside] == [
        ("straddles", ("192.168.121.0-192.168.121.5",)),
        ("elsewhere", ("10.0.0.0/24", "2001:db8:1::/64")),
    ]
    assert outside[0].message() == (
        "pool 'straddles' is announced in layer 2, but 192.168.121.0-192.168.121.5 is outside every node subnet "
        "(node_cidrs): no host on the segment can reach it by ARP. Move the pool into a node subnet, add the subnet "
        "to node_cidrs if the nodes do sit on it, or announce the pool by BGP and leave it out of l2_pools"
    )
    assert "ARP/NDP" in outside[1].message()


@pytest.mark.parametrize(
    ("subnets", "addresses", "message"),
    [
        (["nope"], [], "node_cidrs entry 'nope' is not a CIDR; list the subnets the nodes sit on"),
        (["192.168.120.0/33"], [], "node_cidrs entry '192.168.120.0/33' is not a CIDR"),
        ([], ["not-an-ip"], "node_addresses entry 'not-an-ip' is not an IP address; write each address a node holds"),
        ([], ["192.168.120.11/24"], "write it without the prefix length (192.168.120.11)"),
        ([], [""], "node_addresses entry '' is not an IP address"),
    ],
)
def test_node_input_errors_say_what_to_write(subnets: list[str], addresses: list[str], message: str) -> None:
    with pytest.raises(IpamError) as exc:
        node_check([("p", {"addresses": ["192.0.2.0/28"]})], subnets, addresses)
    assert message in str(exc.value)


def test_interface_notation_in_node_cidrs_means_the_subnet() -> None:
    assert [s.cidr for s in parse_node_subnets(["192.168.120.11/24", "2001:db8::1/64"])] == [
        "192.168.120.0/24",
        "2001:db8::/64",
    ]


@pytest.mark.parametrize(
    ("rng", "holes", "expected"),
    [
        ("192.0.2.0/24", [], ["192.0.2.0/24"]),
        ("192.0.2.0/24", ["192.0.2.0/24"], []),
        ("192.0.2.0/24", ["192.0.0.0/16"], []),
        ("192.0.2.0/24", ["192.0.2.0/25", "2001:db8::/32"], ["192.0.2.128/25"]),
        (
            "192.0.2.0/24",
            ["192.0.2.10/31", "192.0.2.11/32", "192.0.2.200-192.0.3.5"],
            ["192.0.2.0-192.0.2.9", "192.0.2.12-192.0.2.199"],
        ),
        ("192.0.2.0/24", ["192.0.1.0/24", "192.0.3.0/24"], ["192.0.2.0/24"]),
    ],
)
def test_subtract_ranges(rng: str, holes: list[str], expected: list[str]) -> None:
    pieces = subtract_ranges(AddressRange.parse(rng), [AddressRange.parse(h) for h in holes])
    assert [str(p) for p in pieces] == expected


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
        ({"annotations": {"metallb.io/loadBalancerIPs": "192.0.2.300"}}, "'192.0.2.300', which is not an IP address"),
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


# -- properties: pools against node subnets and node addresses ------------------------------------


@st.composite
def subnet_pool_nodes(draw: st.DrawFn) -> tuple[int, str, list[str], list[str], bool]:
    """A node subnet, a pool (1-3 disjoint ranges) inside it, and node addresses in and around it."""
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(min_value=bits - 12, max_value=bits))
    base = draw(st.integers(min_value=0, max_value=2**bits - 1)) >> (bits - prefix) << (bits - prefix)
    last = base + 2 ** (bits - prefix) - 1
    cuts = sorted(draw(st.lists(st.integers(min_value=base, max_value=last), min_size=1, max_size=6, unique=True)))
    if len(cuts) % 2:
        cuts.append(cuts[-1])  # the last range is one address
    ranges = [
        f"{address_text(version, a)}-{address_text(version, b)}" for a, b in zip(cuts[::2], cuts[1::2], strict=True)
    ]
    near = st.integers(min_value=max(0, base - 4), max_value=min(2**bits - 1, last + 4))
    nodes = [address_text(version, v) for v in draw(st.lists(near, max_size=6))]
    cidr = f"{address_text(version, base)}/{prefix}"
    return version, cidr, ranges, nodes, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(subnet_pool_nodes())
def test_property_pool_inside_subnet_conflicts_only_on_held_addresses(
    case: tuple[int, str, list[str], list[str], bool],
) -> None:
    version, cidr, ranges, nodes, avoid_buggy = case
    (pool,) = pools_from_specs([("p", {"addresses": ranges, "avoidBuggyIPs": avoid_buggy})])
    (subnet,) = parse_node_subnets([cidr])
    node_values = parse_node_addresses(nodes)
    assert find_outside_node_subnets([pool], [subnet]) == [], "a pool inside a node subnet is never outside it"

    forbidden = {value for _v, value in node_values} | {value for value, _what in subnet.reserved()}
    expected = sorted(a for a in forbidden if pool.contains(version, a))
    conflicts = find_node_conflicts([pool], [subnet], node_values)
    found = [parse_address(a)[1] for c in conflicts for a, _what in c.addresses]
    assert found == expected, "conflicts are exactly the node/network/broadcast addresses the pool hands out"
    if not nodes:
        assert all(what != "node address" for c in conflicts for _a, what in c.addresses)
    for c in conflicts:
        if c.suggestion:
            fixed = pools_from_specs([("p", {"addresses": list(c.suggestion), "avoidBuggyIPs": avoid_buggy})])
            assert find_node_conflicts(fixed, [subnet], node_values) == [], "the suggested addresses are clean"
            assert fixed[0].size(version) == pool.size(version) - len(expected), "and lose nothing else"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1)), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 12)), max_size=4),
)
def test_property_outside_parts_are_exactly_what_no_subnet_covers(
    pool_ranges: list[tuple[int, int]], subnets: list[tuple[int, int]]
) -> None:
    base = int(parse_address("10.0.0.0")[1])
    ranges = sorted({(base + min(a, b), base + max(a, b)) for a, b in pool_ranges})
    disjoint: list[tuple[int, int]] = []
    for first, last in ranges:  # a pool's ranges must not overlap: keep a disjoint subset
        if not disjoint or first > disjoint[-1][1]:
            disjoint.append((first, last))
    texts = [f"{address_text(4, a)}-{address_text(4, b)}" for a, b in disjoint]
    cidrs = [f"{address_text(4, (base + start) >> size << size)}/{32 - size}" for start, size in subnets]
    (pool,) = pools_from_specs([("p", {"addresses": texts})])
    parsed = parse_node_subnets(cidrs)
    outside = find_outside_node_subnets([pool], parsed)
    pieces = [AddressRange.parse(t) for o in outside for t in o.addresses]

    def covered(value: int) -> bool:
        return any(s.rng.contains(value) for s in parsed)

    for piece in pieces:
        assert not any(piece.overlap(s.rng) for s in parsed), "reported parts lie in no subnet"
    probes = {v for a, b in disjoint for v in (a, b, (a + b) // 2)} | {s.rng.first - 1 for s in parsed}
    probes |= {s.rng.last + 1 for s in parsed}
    for value in probes:
        in_pool = pool.contains(4, value)
        assert any(p.contains(value) for p in pieces) == (in_pool and not covered(value))
