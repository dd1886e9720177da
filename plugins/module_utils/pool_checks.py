# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pools checked against the site's networks, from the inventory: the cluster's Service and Pod
CIDRs (a pool must not overlap them) and, for layer 2, the nodes' subnets and addresses (a pool
belongs inside a node subnet, since the nodes answer ARP and NDP for it there, but must not hold
an address a node already has, nor an IPv4 subnet's network or broadcast address).

Only the lb_pool module makes these checks: the engine knows neither the inventory's CIDRs nor the
node subnets, so this is not part of ipam.py (the one implementation of address management, which
the engine ships). Pure Python plus netaddr; no I/O, no Ansible imports.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import bisect
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence, Set, Tuple

from ansible_collections.onprem.ingress.plugins.module_utils.ipam import (
    AddressRange,
    IpamError,
    Overlap,
    Pool,
    address_text,
    parse_address,
    require_netaddr,
    sweep_overlaps,
)

try:
    import netaddr
except ImportError:  # pragma: no cover - ipam.HAS_NETADDR says so, and the modules report it
    netaddr = None


def find_cidr_conflicts(pools: Sequence[Pool], cidrs: Mapping[str, Sequence[str]]) -> List[Overlap]:
    """Pools that overlap named cluster CIDR sets, e.g. {"service": [...], "pod": [...]}.

    Not for node subnets: a layer 2 pool belongs inside one (see find_node_conflicts).

    Each Overlap has the pool first and the CIDR set second.
    """
    require_netaddr()
    items: List[Tuple[str, AddressRange]] = []
    marker = "\x00cidr:"
    for set_name, values in cidrs.items():
        for text in values:
            try:
                net = netaddr.IPNetwork(text)
            except (netaddr.AddrFormatError, ValueError, TypeError):
                raise IpamError(f"{set_name} CIDR {text!r} is not a CIDR (e.g. 10.96.0.0/12)") from None
            items.append((marker + set_name, AddressRange(net.version, int(net.first), int(net.last))))
    items.extend((p.name, r) for p in pools for r in p.ranges)
    conflicts = []
    for o in sweep_overlaps(items):
        a_is_cidr, b_is_cidr = o.first.startswith(marker), o.second.startswith(marker)
        if a_is_cidr == b_is_cidr:
            continue  # pool/pool or cidr/cidr: not what this function reports
        pool, cidr = (o.second, o.first) if a_is_cidr else (o.first, o.second)
        conflicts.append(Overlap(pool, cidr[len(marker) :], o.addresses))
    return conflicts


# ---------------------------------------------------------------------------------------------
# Pools and the node network: in layer 2 a pool belongs inside a node subnet (the nodes answer ARP
# and NDP for it there) but must not hold an address a node already has, nor an IPv4 subnet's
# network or broadcast address.

_SHOWN_ADDRESSES = 5  # node addresses listed per pool in a message before "and N more"
_SHOWN_PIECES = 8  # longest replacement address list a message suggests


@dataclass(frozen=True)
class NodeSubnet:
    cidr: str  # normalised, e.g. "192.168.120.0/24"
    rng: AddressRange

    def reserved(self) -> List[Tuple[int, str]]:
        """(address, what) for the IPv4 network and broadcast address; none for /31, /32 and IPv6."""
        if self.rng.version != 4 or self.rng.size <= 2:
            return []
        return [
            (self.rng.first, f"the network address of node subnet {self.cidr}"),
            (self.rng.last, f"the broadcast address of node subnet {self.cidr}"),
        ]


def parse_node_subnets(texts: Sequence[str], option: str = "node_cidrs") -> List[NodeSubnet]:
    """The subnets the nodes sit on. Interface notation (192.168.120.11/24) means its subnet."""
    require_netaddr()
    subnets = []
    for text in texts:
        try:
            if not isinstance(text, str):
                raise TypeError(text)
            net = netaddr.IPNetwork(text.strip())
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise IpamError(
                f"{option} entry {text!r} is not a CIDR; list the subnets the nodes sit on, e.g. 192.168.120.0/24"
            ) from None
        subnets.append(NodeSubnet(str(net.cidr), AddressRange(net.version, int(net.first), int(net.last))))
    return subnets


def parse_node_addresses(texts: Sequence[str], option: str = "node_addresses") -> List[Tuple[int, int]]:
    """``(version, value)`` of every address the nodes hold, deduplicated and sorted."""
    found: Set[Tuple[int, int]] = set()
    for text in texts:
        try:
            found.add(parse_address(text))
        except IpamError:
            fix = "write each address a node holds, e.g. 192.168.120.11"
            if isinstance(text, str) and "/" in text:
                fix = f"write it without the prefix length ({text.split('/', 1)[0].strip()})"
            raise IpamError(
                f"{option} entry {text!r} is not an IP address; {fix} (subnets belong in node_cidrs)"
            ) from None
    return sorted(found)


def subtract_ranges(rng: AddressRange, holes: Iterable[AddressRange]) -> List[AddressRange]:
    """The parts of rng in none of holes (holes of another family are ignored)."""
    pieces: List[AddressRange] = []
    start = rng.first
    for hole in sorted(h for h in holes if h.version == rng.version and h.last >= rng.first and h.first <= rng.last):
        if hole.first > start:
            pieces.append(AddressRange(rng.version, start, hole.first - 1))
        start = max(start, hole.last + 1)
        if start > rng.last:
            return pieces
    if start <= rng.last:
        pieces.append(AddressRange(rng.version, start, rng.last))
    return pieces


@dataclass(frozen=True)
class NodeConflict:
    """A pool that holds addresses it must not hand out: node addresses, subnet network/broadcast."""

    pool: str
    addresses: Tuple[Tuple[str, str], ...]  # (address, what it is), in address order
    suggestion: Tuple[str, ...]  # the pool's addresses without them; empty when too long to show

    def message(self) -> str:
        shown = [f"{address} ({what})" for address, what in self.addresses[:_SHOWN_ADDRESSES]]
        more = len(self.addresses) - len(shown)
        listed = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        change = "leave them out of the pool"
        if self.suggestion:
            change += f", e.g. addresses: [{', '.join(self.suggestion)}]"
        node_held = any(what == "node address" for _address, what in self.addresses)
        tail = "; or drop an address from node_addresses if no node holds it any more" if node_held else ""
        return (
            f"pool {self.pool!r} contains {listed}, which no Service may get (a Service holding one would "
            f"fight the node or the subnet over ARP/NDP); {change}{tail}"
        )


def find_node_conflicts(
    pools: Sequence[Pool], node_subnets: Sequence[NodeSubnet], node_addresses: Sequence[Tuple[int, int]]
) -> List[NodeConflict]:
    """Pools that contain a node address, or the network/broadcast address of an IPv4 node subnet.

    A pool inside a node subnet is otherwise fine (layer 2 needs exactly that). Addresses an
    avoidBuggyIPs pool never hands out (.0, .255) do not count.
    """
    bad: Dict[Tuple[int, int], str] = {}
    for subnet in node_subnets:
        for value, what in subnet.reserved():
            bad.setdefault((4, value), what)
    for key in node_addresses:
        bad[key] = "node address"  # the stronger reason wins
    ordered = sorted(bad)
    conflicts = []
    for pool in pools:
        hits: List[Tuple[int, int]] = []
        for rng in pool.ranges:
            i = bisect.bisect_left(ordered, (rng.version, rng.first))
            while i < len(ordered) and ordered[i] <= (rng.version, rng.last):
                if pool.contains(*ordered[i]):
                    hits.append(ordered[i])
                i += 1
        if not hits:
            continue
        hits.sort()
        holes = [AddressRange(v, a, a) for v, a in hits]
        pieces = [p for rng in pool.ranges for p in subtract_ranges(rng, holes)]
        suggestion = tuple(str(p) for p in pieces) if 0 < len(pieces) <= _SHOWN_PIECES else ()
        conflicts.append(NodeConflict(pool.name, tuple((address_text(v, a), bad[(v, a)]) for v, a in hits), suggestion))
    return conflicts


@dataclass(frozen=True)
class OutsideNodeSubnets:
    """A layer 2 pool with addresses in no node subnet: no node can answer ARP/NDP for them."""

    pool: str
    addresses: Tuple[str, ...]  # the parts outside every node subnet

    def message(self) -> str:
        v6 = [":" in a for a in self.addresses]
        protocol = "NDP" if all(v6) else "ARP/NDP" if any(v6) else "ARP"
        verb, it = ("is", "it") if len(self.addresses) == 1 else ("are", "them")
        return (
            f"pool {self.pool!r} is announced in layer 2, but {', '.join(self.addresses)} {verb} outside every "
            f"node subnet (node_cidrs): no host on the segment can reach {it} by {protocol}. Move the pool into a "
            "node subnet, add the subnet to node_cidrs if the nodes do sit on it, or announce the pool by BGP "
            "and leave it out of l2_pools"
        )


def find_outside_node_subnets(pools: Sequence[Pool], node_subnets: Sequence[NodeSubnet]) -> List[OutsideNodeSubnets]:
    """Pools with addresses in no node subnet (parts an avoidBuggyIPs pool never hands out ignored)."""
    holes = [s.rng for s in node_subnets]
    found = []
    for pool in pools:
        outside = [p for rng in pool.ranges for p in subtract_ranges(rng, holes)]
        if pool.avoid_buggy_ips:
            outside = [p for p in outside if p.size > p.buggy_count()]
        if outside:
            found.append(OutsideNodeSubnets(pool.name, tuple(str(p) for p in outside)))
    return found
