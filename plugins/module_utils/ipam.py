# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address management for LoadBalancer Services: the one implementation.

Used by the Ansible modules (lb_pool, lb_address, lb_pool_info) and by the onprem-lb
controller. The checks of pools against the inventory's networks, which only lb_pool makes,
are in pool_checks.py. Pure Python plus netaddr; no I/O, no Ansible imports.

Semantics follow MetalLB's API (IPAddressPool and the Service annotations), so configurations
written for MetalLB allocate the same addresses:

* a pool is a list of CIDRs and ``first-last`` ranges, IPv4 and IPv6 mixed;
* an address is the lowest free one of the first range (in pool order) that has one;
* ``avoidBuggyIPs`` skips IPv4 addresses ending in .0 and .255;
* pools whose ``serviceAllocation`` admits a Service are tried first, by ``priority``
  (1 is the highest; unset is the lowest), then ``autoAssign`` pools without
  ``serviceAllocation``, by name; a pool whose ``serviceAllocation`` does not admit a
  Service never gives it an address;
* Services share an address only with the same sharing key, the same backend key (the
  selector when externalTrafficPolicy is Local) and no clashing port/protocol.

Where MetalLB is undefined we are deterministic: it walks fallback pools in Go map order,
we walk them by name.

Addresses are kept as integers. The free-address search per range uses a high-water mark
plus a min-heap of released addresses, so the cost of an allocation grows with what is
allocated, never with the size of the pool: a /64 is never expanded.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import heapq
import traceback
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

try:
    import netaddr
except ImportError:  # pragma: no cover - reported by the modules with missing_required_lib
    HAS_NETADDR = False
    NETADDR_IMPORT_ERROR: Optional[str] = traceback.format_exc()
else:
    HAS_NETADDR = True
    NETADDR_IMPORT_ERROR = None


ANNOTATION_PREFIXES = ("metallb.io/", "metallb.universe.tf/")
POOL_ANNOTATION = "address-pool"
IPS_ANNOTATION = "loadBalancerIPs"
SHARING_ANNOTATION = "allow-shared-ip"
ALLOCATED_FROM_ANNOTATION = "metallb.io/ip-allocated-from-pool"

FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
FAMILY_NUMBERS = {"IPv4": 4, "IPv6": 6}
POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")


class IpamError(Exception):
    """Bad input: a pool definition, a selector or a Service request that cannot be used.

    ``reason`` is a short CamelCase code (usable as an Event reason); the message says what is
    wrong and what to change.
    """

    def __init__(self, message: str, reason: str = "InvalidConfiguration") -> None:
        super().__init__(message)
        self.reason = reason


class AllocationError(IpamError):
    """A valid request that cannot be satisfied now (exhausted pool, address taken, ...)."""


def require_netaddr() -> None:
    if not HAS_NETADDR:
        raise IpamError("the Python library netaddr is required (pip install netaddr)", "MissingLibrary")


# ---------------------------------------------------------------------------------------------
# Address ranges


def _is_buggy(version: int, value: int) -> bool:
    """IPv4 addresses ending in .0 or .255 confuse some CPE firmwares (MetalLB avoidBuggyIPs)."""
    return version == 4 and (value & 0xFF) in (0, 0xFF)


def _count_congruent(first: int, last: int, residue: int) -> int:
    """How many x in [first, last] have x % 256 == residue."""
    if last < first:
        return 0
    return (last - residue) // 256 - (first - 1 - residue) // 256


@dataclass(frozen=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one family, as integers."""

    version: int
    first: int
    last: int

    @classmethod
    def parse(cls, text: str, strict: bool = False) -> AddressRange:
        """Parse ``192.0.2.0/24``, ``192.0.2.10-192.0.2.20`` or the IPv6 equivalents.

        A CIDR with host bits set (``192.0.2.5/24``) is read as its network, as MetalLB reads it
        (:func:`host_bits_note` says so); ``strict`` refuses it instead."""
        require_netaddr()
        if not isinstance(text, str) or not text.strip():
            raise IpamError(f"pool address {text!r} is not a string; write a CIDR or a first-last range")
        raw = text.strip()
        try:
            if "-" in raw:
                start_text, _dash, end_text = raw.partition("-")
                start = netaddr.IPAddress(start_text.strip())
                end = netaddr.IPAddress(end_text.strip())
                if start.version != end.version:
                    raise IpamError(f"range {raw!r} mixes IPv4 and IPv6; write one range per family")
                if int(start) > int(end):
                    raise IpamError(f"range {raw!r} ends before it starts; write it as {end}-{start}")
                return cls(start.version, int(start), int(end))
            if "/" not in raw:
                addr = netaddr.IPAddress(raw)
                suffix = 32 if addr.version == 4 else 128
                raise IpamError(f"pool address {raw!r} is a single address; write {raw}/{suffix} or {raw}-{raw}")
            net = netaddr.IPNetwork(raw)
        except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
            raise IpamError(
                f"pool address {raw!r} is neither a CIDR (192.0.2.0/24) nor a range (192.0.2.10-192.0.2.20): {exc}"
            ) from None
        if net.ip != net.network and strict:
            suffix = 32 if net.version == 4 else 128
            raise IpamError(
                f"pool address {raw!r} has host bits set; write {net.cidr} for the whole network "
                f"or {net.ip}/{suffix} for the one address"
            )
        return cls(net.version, int(net.first), int(net.last))

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def buggy_count(self) -> int:
        if self.version != 4:
            return 0
        return _count_congruent(self.first, self.last, 0) + _count_congruent(self.first, self.last, 0xFF)

    def contains(self, value: int) -> bool:
        return self.first <= value <= self.last

    def overlap(self, other: AddressRange) -> Optional[AddressRange]:
        if self.version != other.version:
            return None
        first, last = max(self.first, other.first), min(self.last, other.last)
        return AddressRange(self.version, first, last) if first <= last else None

    def __str__(self) -> str:
        require_netaddr()
        first = netaddr.IPAddress(self.first, self.version)
        last = netaddr.IPAddress(self.last, self.version)
        cidrs = netaddr.iprange_to_cidrs(first, last)
        if len(cidrs) == 1:
            return str(cidrs[0])
        return f"{first}-{last}"


def address_text(version: int, value: int) -> str:
    require_netaddr()
    return str(netaddr.IPAddress(value, version))


def parse_address(text: str) -> Tuple[int, int]:
    """``(version, value)`` of an IP address, or IpamError."""
    require_netaddr()
    try:
        if not isinstance(text, str) or "/" in text:
            raise ValueError("not a plain address")
        addr = netaddr.IPAddress(text.strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise IpamError(f"{text!r} is not an IP address", "InvalidAddress") from None
    return addr.version, int(addr)


# ---------------------------------------------------------------------------------------------
# Label selectors (metav1.LabelSelector semantics)

_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class LabelSelector:
    match_labels: Tuple[Tuple[str, str], ...] = ()
    match_expressions: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, spec: object, where: str) -> LabelSelector:
        if not isinstance(spec, Mapping):
            raise IpamError(f"{where} must be a label selector (matchLabels / matchExpressions)")
        unknown = set(spec) - {"matchLabels", "matchExpressions"}
        if unknown:
            raise IpamError(f"{where} has unknown field(s) {sorted(unknown)}; use matchLabels or matchExpressions")
        labels = spec.get("matchLabels") or {}
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise IpamError(f"{where}.matchLabels must map label names to string values")
        expressions = []
        for i, expr in enumerate(spec.get("matchExpressions") or []):
            at = f"{where}.matchExpressions[{i}]"
            if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
                raise IpamError(f"{at} needs a key")
            op = expr.get("operator")
            if op not in _SELECTOR_OPERATORS:
                raise IpamError(f"{at}.operator is {op!r}; use one of {', '.join(_SELECTOR_OPERATORS)}")
            values = expr.get("values") or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise IpamError(f"{at}.values must be a list of strings")
            if op in ("In", "NotIn") and not values:
                raise IpamError(f"{at}: operator {op} needs at least one value")
            if op in ("Exists", "DoesNotExist") and values:
                raise IpamError(f"{at}: operator {op} takes no values")
            expressions.append((expr["key"], op, tuple(values)))
        return cls(tuple(sorted(labels.items())), tuple(expressions))

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


# ---------------------------------------------------------------------------------------------
# Pools


@dataclass(frozen=True)
class ServiceAllocation:
    """IPAddressPool.spec.serviceAllocation: which Services a pool serves, and how eagerly."""

    priority: int = 0  # 0 = unset = lowest
    namespaces: FrozenSet[str] = frozenset()
    namespace_selectors: Tuple[LabelSelector, ...] = ()
    service_selectors: Tuple[LabelSelector, ...] = ()

    def admits(self, namespace: str, namespace_labels: Mapping[str, str], labels: Mapping[str, str]) -> bool:
        if self.namespaces or self.namespace_selectors:
            in_namespace = namespace in self.namespaces or any(
                s.matches(namespace_labels) for s in self.namespace_selectors
            )
            if not in_namespace:
                return False
        return not self.service_selectors or any(s.matches(labels) for s in self.service_selectors)


_POOL_FIELDS = {"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"}
_ALLOCATION_FIELDS = {"priority", "namespaces", "namespaceSelectors", "serviceSelectors"}


def host_bits_note(text: object) -> Optional[str]:
    """For a CIDR with host bits set, what it is read as (None for anything else)."""
    if not HAS_NETADDR or not isinstance(text, str) or "/" not in text or "-" in text:
        return None
    try:
        net = netaddr.IPNetwork(text.strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    if net.ip == net.network:
        return None
    return (
        f"{text.strip()} has host bits set and is read as its network {net.cidr}, as MetalLB reads it; write {net.cidr}"
    )


@dataclass(frozen=True)
class Pool:
    name: str
    ranges: Tuple[AddressRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    service_allocation: Optional[ServiceAllocation] = None
    notes: Tuple[str, ...] = field(default=(), compare=False)  # what was read other than written

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, object], strict: bool = False) -> Pool:
        """Build a pool from an IPAddressPool ``spec`` (MetalLB field names); ``strict`` refuses
        a CIDR with host bits set instead of reading it as its network."""
        if not isinstance(name, str) or not name:
            raise IpamError("every pool needs a name")
        where = f"pool {name!r}"
        if not isinstance(spec, Mapping):
            raise IpamError(f"{where}: spec must be a mapping with addresses")
        unknown = set(spec) - _POOL_FIELDS
        if unknown:
            raise IpamError(f"{where}: unknown field(s) {sorted(unknown)}; known fields are {sorted(_POOL_FIELDS)}")
        addresses = spec.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            raise IpamError(f"{where}: addresses must be a non-empty list of CIDRs or first-last ranges")
        ranges = []
        for text in addresses:
            try:
                ranges.append(AddressRange.parse(text, strict=strict))
            except IpamError as exc:
                raise IpamError(f"{where}: {exc}") from None
        notes = tuple(n for n in (host_bits_note(text) for text in addresses) if n)
        for i, a in enumerate(ranges):
            for b in ranges[i + 1 :]:
                both = a.overlap(b)
                if both is not None:
                    raise IpamError(f"{where}: addresses {a} and {b} overlap ({both}); list each address once")
        auto_assign = spec.get("autoAssign", True)
        avoid_buggy = spec.get("avoidBuggyIPs", False)
        for field_name, value in (("autoAssign", auto_assign), ("avoidBuggyIPs", avoid_buggy)):
            if not isinstance(value, bool):
                raise IpamError(f"{where}: {field_name} must be true or false, not {value!r}")
        allocation = None
        raw_alloc = spec.get("serviceAllocation")
        if raw_alloc is not None:
            allocation = _parse_service_allocation(raw_alloc, f"{where}: serviceAllocation")
        return cls(name, tuple(ranges), bool(auto_assign), bool(avoid_buggy), allocation, notes)

    def ranges_of(self, version: int) -> List[AddressRange]:
        return [r for r in self.ranges if r.version == version]

    def size(self, version: int) -> int:
        total = 0
        for r in self.ranges_of(version):
            total += r.size - (r.buggy_count() if self.avoid_buggy_ips else 0)
        return total

    def contains(self, version: int, value: int) -> bool:
        if self.avoid_buggy_ips and _is_buggy(version, value):
            return False
        return any(r.version == version and r.contains(value) for r in self.ranges)

    def admits(self, namespace: str, namespace_labels: Mapping[str, str], labels: Mapping[str, str]) -> bool:
        return self.service_allocation is None or self.service_allocation.admits(namespace, namespace_labels, labels)

    def to_spec(self) -> Dict[str, object]:
        """The normalised IPAddressPool spec (what lb_pool returns)."""
        spec: Dict[str, object] = {
            "addresses": [str(r) for r in self.ranges],
            "autoAssign": self.auto_assign,
            "avoidBuggyIPs": self.avoid_buggy_ips,
        }
        sa = self.service_allocation
        if sa is not None:
            out: Dict[str, object] = {}
            if sa.priority:
                out["priority"] = sa.priority
            if sa.namespaces:
                out["namespaces"] = sorted(sa.namespaces)
            if sa.namespace_selectors:
                out["namespaceSelectors"] = [_selector_spec(s) for s in sa.namespace_selectors]
            if sa.service_selectors:
                out["serviceSelectors"] = [_selector_spec(s) for s in sa.service_selectors]
            spec["serviceAllocation"] = out
        return spec


def _selector_spec(selector: LabelSelector) -> Dict[str, object]:
    out: Dict[str, object] = {}
    if selector.match_labels:
        out["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        out["matchExpressions"] = [
            dict({"key": k, "operator": op}, **({"values": list(v)} if v else {}))
            for k, op, v in selector.match_expressions
        ]
    return out


def _parse_service_allocation(raw: object, where: str) -> ServiceAllocation:
    if not isinstance(raw, Mapping):
        raise IpamError(f"{where} must be a mapping")
    unknown = set(raw) - _ALLOCATION_FIELDS
    if unknown:
        raise IpamError(f"{where}: unknown field(s) {sorted(unknown)}; known fields are {sorted(_ALLOCATION_FIELDS)}")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise IpamError(f"{where}.priority must be a whole number >= 0 (1 is the highest), not {priority!r}")
    namespaces = raw.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces):
        raise IpamError(f"{where}.namespaces must be a list of namespace names")
    ns_selectors = raw.get("namespaceSelectors") or []
    svc_selectors = raw.get("serviceSelectors") or []
    for name, value in (("namespaceSelectors", ns_selectors), ("serviceSelectors", svc_selectors)):
        if not isinstance(value, list):
            raise IpamError(f"{where}.{name} must be a list of label selectors")
    return ServiceAllocation(
        priority=priority,
        namespaces=frozenset(namespaces),
        namespace_selectors=tuple(
            LabelSelector.parse(s, f"{where}.namespaceSelectors[{i}]") for i, s in enumerate(ns_selectors)
        ),
        service_selectors=tuple(
            LabelSelector.parse(s, f"{where}.serviceSelectors[{i}]") for i, s in enumerate(svc_selectors)
        ),
    )


def pools_from_specs(specs: Iterable[Tuple[str, Mapping[str, object]]], strict: bool = False) -> List[Pool]:
    """Build pools, rejecting duplicate names (``strict``: see Pool.from_spec)."""
    pools: List[Pool] = []
    seen: Set[str] = set()
    for name, spec in specs:
        if name in seen:
            raise IpamError(f"pool name {name!r} is used twice; pool names must be unique")
        seen.add(name)
        pools.append(Pool.from_spec(name, spec, strict=strict))
    return pools


# ---------------------------------------------------------------------------------------------
# Overlaps and conflicts: a sweep over sorted ranges, O(n log n) in the number of ranges.


@dataclass(frozen=True)
class Overlap:
    first: str  # pool or CIDR set name
    second: str
    addresses: str  # the shared part, e.g. "192.0.2.16/28"


def sweep_overlaps(items: Sequence[Tuple[str, AddressRange]]) -> List[Overlap]:
    """Every pair of differently named items whose ranges share addresses (with the first shared
    part), sorted by the pair's names."""
    found: Dict[Tuple[str, str], AddressRange] = {}
    ordered = sorted(items, key=lambda item: (item[1].version, item[1].first, item[1].last))
    active: List[Tuple[str, AddressRange]] = []
    for name, rng in ordered:
        active = [(n, r) for n, r in active if r.version == rng.version and r.last >= rng.first]
        for other_name, other in active:
            if other_name == name:
                continue
            shared = other.overlap(rng)
            if shared is not None:
                key = (other_name, name) if other_name < name else (name, other_name)
                found.setdefault(key, shared)
        active.append((name, rng))
    return [Overlap(a, b, str(r)) for (a, b), r in sorted(found.items())]


def find_overlaps(pools: Sequence[Pool]) -> List[Overlap]:
    """Pairs of pools that share addresses (an address must belong to one pool)."""
    return sweep_overlaps([(p.name, r) for p in pools for r in p.ranges])


# ---------------------------------------------------------------------------------------------
# What a Service asks for


Port = Tuple[str, int]  # (protocol, port)


@dataclass(frozen=True)
class ServiceRequest:
    """Everything allocation needs to know about one Service."""

    key: str  # "namespace/name"
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    families: Tuple[int, ...] = (4,)  # primary family first
    policy: str = "SingleStack"
    requested: Tuple[Tuple[int, int], ...] = ()  # (version, value)
    pool: Optional[str] = None
    sharing_key: Optional[str] = None
    backend_key: str = ""
    ports: FrozenSet[Port] = frozenset()

    @property
    def wants_dual_stack(self) -> bool:
        return len(self.families) == 2


def _annotation_key(annotations: Mapping[str, str], name: str) -> Optional[str]:
    """The key a Service carries for annotation ``name``: MetalLB's, else the legacy one."""
    for prefix in ANNOTATION_PREFIXES:
        if prefix + name in annotations:
            return prefix + name
    return None


def _annotation(annotations: Mapping[str, str], name: str) -> Optional[str]:
    key = _annotation_key(annotations, name)
    return None if key is None else annotations[key]


def request_from_service(
    service: Mapping[str, object], namespace_labels: Optional[Mapping[str, str]] = None
) -> ServiceRequest:
    """Read a Service manifest (as returned by the API server) into a ServiceRequest.

    Raises IpamError (reason InvalidRequest) for annotations or fields that contradict
    themselves, with a message that says which one to change.
    """
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        raise IpamError("service manifest needs metadata and spec mappings", "InvalidRequest")
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    key = f"{namespace}/{name}"
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}

    families_raw = spec.get("ipFamilies") or []
    families = tuple(FAMILY_NUMBERS[f] for f in families_raw if f in FAMILY_NUMBERS)
    if not families:
        families = (4,)
    policy = spec.get("ipFamilyPolicy") or "SingleStack"
    if policy not in POLICIES:
        raise IpamError(
            f"service {key}: ipFamilyPolicy {policy!r} is not one of {', '.join(POLICIES)}", "InvalidRequest"
        )

    requested: List[Tuple[int, int]] = []
    # messages name the key the Service carries (metallb.io/ or the legacy metallb.universe.tf/)
    ips_key = _annotation_key(annotations, IPS_ANNOTATION)
    ips_text = _annotation(annotations, IPS_ANNOTATION)
    lb_ip = spec.get("loadBalancerIP") or ""
    if ips_text and lb_ip:
        raise IpamError(
            f"service {key}: both spec.loadBalancerIP and the {ips_key} annotation are set; keep only the annotation",
            "InvalidRequest",
        )
    source = ips_key if ips_text else "spec.loadBalancerIP"
    for text in [t.strip() for t in (ips_text or str(lb_ip)).split(",") if t.strip()]:
        try:
            requested.append(parse_address(text))
        except IpamError:
            raise IpamError(
                f"service {key}: {source} holds {text!r}, which is not an IP address", "InvalidRequest"
            ) from None
    if len(requested) > 2 or (len(requested) == 2 and requested[0][0] == requested[1][0]):
        raise IpamError(
            f"service {key}: {source} holds at most one IPv4 and one IPv6 address, got "
            + ", ".join(address_text(*a) for a in requested),
            "InvalidRequest",
        )
    for version, value in requested:
        if version not in families:
            raise IpamError(
                f"service {key}: requested {address_text(version, value)} is {FAMILY_NAMES[version]} but the service's "
                f"ipFamilies are {', '.join(FAMILY_NAMES[f] for f in families)}",
                "InvalidRequest",
            )
    if requested and policy == "RequireDualStack" and len(requested) != 2:
        raise IpamError(
            f"service {key}: RequireDualStack needs one IPv4 and one IPv6 address in {source}",
            "InvalidRequest",
        )

    backend_key = ""
    if spec.get("externalTrafficPolicy") == "Local":
        selector = spec.get("selector") or {}
        backend_key = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    ports = frozenset(
        (str(p.get("protocol") or "TCP"), int(p["port"]))
        for p in (spec.get("ports") or [])
        if isinstance(p, Mapping) and "port" in p
    )
    sharing = _annotation(annotations, SHARING_ANNOTATION)
    return ServiceRequest(
        key=key,
        namespace=str(namespace),
        labels=dict(labels),
        namespace_labels=dict(namespace_labels or {}),
        families=families,
        policy=str(policy),
        requested=tuple(requested),
        pool=_annotation(annotations, POOL_ANNOTATION) or None,
        sharing_key=sharing or None,
        backend_key=backend_key,
        ports=ports,
    )


# ---------------------------------------------------------------------------------------------
# The allocator


@dataclass(frozen=True)
class Allocation:
    service: str
    pool: str
    addresses: Tuple[Tuple[int, int], ...]  # (version, value), primary family first
    ports: FrozenSet[Port] = frozenset()
    sharing_key: Optional[str] = None
    backend_key: str = ""

    @property
    def ips(self) -> List[str]:
        return [address_text(v, a) for v, a in self.addresses]


# The largest count Kubernetes stores (int64): a /64 holds 2^64 addresses. Every count shown to a
# user (pool status, its condition, lb_pool_info) goes through count_shown, so they all agree.
MAX_SHOWN_COUNT = 2**63 - 1


def count_shown(count: int) -> int:
    return min(count, MAX_SHOWN_COUNT)


def count_text(count: int) -> str:
    """A count for a message: exact, or "more than 2^63-1" past what Kubernetes stores."""
    return str(count) if count <= MAX_SHOWN_COUNT else "more than %d" % MAX_SHOWN_COUNT


@dataclass(frozen=True)
class PoolUsage:
    name: str
    size: Dict[str, int]  # family name -> addresses in the pool (avoidBuggyIPs honoured)
    used: Dict[str, int]  # family name -> distinct addresses in use

    @property
    def free(self) -> Dict[str, int]:
        return {f: self.size[f] - self.used[f] for f in self.size}

    def shown(self) -> Dict[str, Dict[str, int]]:
        """size, used and free per family as shown to users (count_shown)."""
        return {
            "size": {f: count_shown(n) for f, n in self.size.items()},
            "used": {f: count_shown(n) for f, n in self.used.items()},
            "free": {f: count_shown(n) for f, n in self.free.items()},
        }


class _FreeIndex:
    """Lowest free address of one range without expanding it.

    Everything at or above ``mark`` that is free is found by walking the mark forward over used
    addresses; addresses freed below the mark go into a min-heap. Used addresses are looked up in
    the allocator's shared table, so a heap entry that got reused is dropped lazily.
    """

    __slots__ = ("avoid_buggy", "holes", "last", "mark", "rng", "used")

    def __init__(self, rng: AddressRange, avoid_buggy: bool, used: Mapping[int, object]) -> None:
        self.rng = rng
        self.last = rng.last
        self.mark = rng.first
        self.holes: List[int] = []
        self.avoid_buggy = avoid_buggy and rng.version == 4
        self.used = used

    def lowest_free(self) -> Optional[int]:
        holes, used = self.holes, self.used
        while holes:
            if holes[0] in used:
                heapq.heappop(holes)
            else:
                return holes[0]
        mark, last, buggy = self.mark, self.last, self.avoid_buggy
        while mark <= last and (mark in used or (buggy and (mark & 0xFF) in (0, 0xFF))):
            mark += 1
        self.mark = mark
        return mark if mark <= last else None

    def freed(self, value: int) -> None:
        if self.rng.first <= value < self.mark:
            heapq.heappush(self.holes, value)


class Allocator:
    """Tracks pools and which Service holds which addresses; decides new allocations.

    Deterministic: the same pools and the same sequence of calls give the same addresses.
    """

    def __init__(self, pools: Iterable[Pool] = ()) -> None:
        self._pools: Dict[str, Pool] = {}
        self._allocs: Dict[str, Allocation] = {}
        # version -> address -> services holding it
        self._users: Dict[int, Dict[int, Set[str]]] = {4: {}, 6: {}}
        # (sharing key, backend key) -> addresses held under that key
        self._shared: Dict[Tuple[str, str], Set[Tuple[int, int]]] = {}
        self._index: Dict[str, List[_FreeIndex]] = {}
        self._used_count: Dict[str, Dict[int, int]] = {}
        # pools that exist but are not used (overlap, bad addresses): name -> why
        self.ignored: Dict[str, str] = {}
        self.set_pools(pools)

    # -- configuration -------------------------------------------------------------------------

    @property
    def pools(self) -> Mapping[str, Pool]:
        return self._pools

    def set_pools(self, pools: Iterable[Pool]) -> List[Allocation]:
        """Replace the pool set. Allocations that no pool contains any more are released and
        returned (the caller re-allocates those Services); the others stay where they are."""
        new = {}
        for p in pools:
            if p.name in new:
                raise IpamError(f"pool name {p.name!r} is used twice; pool names must be unique")
            new[p.name] = p
        self._pools = new
        displaced = []
        for key, alloc in sorted(self._allocs.items()):
            pool = self._pool_for(alloc.addresses, prefer=alloc.pool)
            if pool is None:
                displaced.append(alloc)
            elif pool.name != alloc.pool:
                self._allocs[key] = Allocation(
                    alloc.service, pool.name, alloc.addresses, alloc.ports, alloc.sharing_key, alloc.backend_key
                )
        for alloc in displaced:
            self._forget(alloc)
        self._rebuild_indexes()
        return displaced

    def _rebuild_indexes(self) -> None:
        self._index = {
            p.name: [_FreeIndex(r, p.avoid_buggy_ips, self._users[r.version]) for r in p.ranges]
            for p in self._pools.values()
        }
        self._used_count = {name: {4: 0, 6: 0} for name in self._pools}
        seen: Set[Tuple[int, int]] = set()
        for alloc in self._allocs.values():
            for addr in alloc.addresses:
                if addr not in seen:
                    seen.add(addr)
                    self._used_count[alloc.pool][addr[0]] += 1

    def _pool_for(self, addresses: Sequence[Tuple[int, int]], prefer: Optional[str] = None) -> Optional[Pool]:
        candidates = ([self._pools[prefer]] if prefer in self._pools else []) + [
            self._pools[n] for n in sorted(self._pools)
        ]
        for pool in candidates:
            if all(pool.contains(v, a) for v, a in addresses):
                return pool
        return None

    # -- queries ---------------------------------------------------------------------------------

    def allocation(self, service: str) -> Optional[Allocation]:
        return self._allocs.get(service)

    def allocations(self) -> List[Allocation]:
        return [self._allocs[k] for k in sorted(self._allocs)]

    def holders(self, version: int, value: int) -> List[str]:
        return sorted(self._users[version].get(value, ()))

    def usage(self, pool: str) -> PoolUsage:
        p = self._pools[pool]
        counts = self._used_count[pool]
        return PoolUsage(
            pool,
            size={FAMILY_NAMES[v]: p.size(v) for v in (4, 6)},
            used={FAMILY_NAMES[v]: counts[v] for v in (4, 6)},
        )

    # -- changes ---------------------------------------------------------------------------------

    def release(self, service: str) -> Optional[Allocation]:
        alloc = self._allocs.get(service)
        if alloc is not None:
            self._forget(alloc)
        return alloc

    def _forget(self, alloc: Allocation) -> None:
        del self._allocs[alloc.service]
        for version, value in alloc.addresses:
            users = self._users[version]
            holders = users.get(value)
            if holders is None:
                continue
            holders.discard(alloc.service)
            if holders:
                continue
            del users[value]
            if alloc.sharing_key is not None:
                shared = self._shared.get((alloc.sharing_key, alloc.backend_key))
                if shared is not None:
                    shared.discard((version, value))
                    if not shared:
                        del self._shared[(alloc.sharing_key, alloc.backend_key)]
            counts = self._used_count.get(alloc.pool)
            if counts is not None:
                counts[version] -= 1
            for indexes in self._index.values():
                for index in indexes:
                    if index.rng.version == version:
                        index.freed(value)

    def _record(self, alloc: Allocation) -> Allocation:
        self._allocs[alloc.service] = alloc
        for version, value in alloc.addresses:
            holders = self._users[version].setdefault(value, set())
            if not holders:
                self._used_count[alloc.pool][version] += 1
                if alloc.sharing_key is not None:
                    self._shared.setdefault((alloc.sharing_key, alloc.backend_key), set()).add((version, value))
            holders.add(alloc.service)
        return alloc

    def _sharing_problem(self, req: ServiceRequest, version: int, value: int) -> Optional[str]:
        """Why req may not use this address now, or None if it may."""
        holders = self._users[version].get(value)
        if not holders:
            return None
        others = [self._allocs[s] for s in sorted(holders) if s != req.key]
        if not others:
            return None
        names = ", ".join(o.service for o in others)
        first = others[0]
        if req.sharing_key is None or first.sharing_key is None:
            return f"it is in use by {names} and both services need the same metallb.io/allow-shared-ip key to share it"
        if first.sharing_key != req.sharing_key:
            return f"it is in use by {names} with sharing key {first.sharing_key!r}, not {req.sharing_key!r}"
        if first.backend_key != req.backend_key:
            return (
                f"it is shared by {names}, whose externalTrafficPolicy/selector differ; services sharing an address "
                "need the same externalTrafficPolicy and, for Local, the same selector"
            )
        for other in others:
            clash = sorted(req.ports & other.ports)
            if clash:
                ports = ", ".join(f"{p}/{proto}" for proto, p in clash)
                return f"port(s) {ports} are already used on it by {other.service}"
        return None

    def _candidate(self, req: ServiceRequest, pool: Pool, version: int) -> Optional[int]:
        """Lowest usable address of one family in a pool for req (free, or shareable)."""
        shared: Tuple[int, ...] = ()
        if req.sharing_key is not None:
            shared = tuple(
                value
                for v, value in self._shared.get((req.sharing_key, req.backend_key), ())
                if v == version and pool.contains(v, value) and self._sharing_problem(req, v, value) is None
            )
        for index in self._index[pool.name]:
            if index.rng.version != version:
                continue
            best = index.lowest_free()
            in_range = [value for value in shared if index.rng.contains(value)]
            if in_range:
                lowest_shared = min(in_range)
                best = lowest_shared if best is None else min(best, lowest_shared)
            if best is not None:
                return best
        return None

    def _families_to_take(self, req: ServiceRequest, found: Dict[int, int]) -> Optional[Tuple[int, ...]]:
        """Which of the found families this pool should give req, or None if it cannot serve it."""
        if not req.wants_dual_stack:
            return req.families if req.families[0] in found else None
        if all(f in found for f in req.families):
            return req.families
        return None

    def allocate(self, req: ServiceRequest) -> Allocation:
        """Give req its addresses: keep what it has if still valid, else choose new ones."""
        current = self._allocs.get(req.key)
        if current is not None:
            if self._still_valid(current, req):
                if current.ports != req.ports or current.sharing_key != req.sharing_key:
                    self._forget(current)
                    return self._record(
                        Allocation(
                            req.key, current.pool, current.addresses, req.ports, req.sharing_key, req.backend_key
                        )
                    )
                return current
            self._forget(current)
        if req.requested:
            return self.assign(req, req.requested)
        if req.pool is not None:
            pool = self._pools.get(req.pool)
            if pool is None and req.pool in self.ignored:
                raise AllocationError(
                    f"service {req.key} asks for pool {req.pool!r}, which exists but is ignored: "
                    f"{self.ignored[req.pool]}",
                    "PoolIgnored",
                )
            if pool is None:
                raise AllocationError(
                    f"service {req.key} asks for pool {req.pool!r}, which does not exist; known pools: "
                    f"{', '.join(sorted(self._pools)) or 'none'}",
                    "UnknownPool",
                )
            if not pool.admits(req.namespace, req.namespace_labels, req.labels):
                raise AllocationError(
                    f"service {req.key} asks for pool {pool.name!r}, whose serviceAllocation does not admit it "
                    "(namespace or service labels)",
                    "PoolNotAllowed",
                )
            result = self._from_pools(req, [pool])
            if result is None:
                raise AllocationError(self._exhausted_message(req, [pool]), "PoolExhausted")
            return result
        pinned = [
            p
            for p in self._pools.values()
            if p.auto_assign
            and p.service_allocation is not None
            and p.service_allocation.admits(req.namespace, req.namespace_labels, req.labels)
        ]
        pinned.sort(key=lambda p: (p.service_allocation.priority == 0, p.service_allocation.priority, p.name))  # type: ignore[union-attr]
        result = self._from_pools(req, pinned)
        if result is not None:
            return result
        general = [
            self._pools[n]
            for n in sorted(self._pools)
            if self._pools[n].auto_assign and self._pools[n].service_allocation is None
        ]
        result = self._from_pools(req, general)
        if result is not None:
            return result
        raise AllocationError(self._exhausted_message(req, pinned + general), "PoolExhausted")

    def _exhausted_message(self, req: ServiceRequest, pools: Sequence[Pool]) -> str:
        fams = "+".join(FAMILY_NAMES[f] for f in req.families)
        if not pools:
            return (
                f"no pool can give service {req.key} an address: no autoAssign pool admits it; add an IPAddressPool "
                "or name one with the metallb.io/address-pool annotation"
            )
        names = ", ".join(p.name for p in pools)
        return f"no free {fams} address for service {req.key} in pool(s) {names}; add addresses or free some"

    def _from_pools(self, req: ServiceRequest, pools: Sequence[Pool]) -> Optional[Allocation]:
        primary_only: Optional[Tuple[Pool, Dict[int, int]]] = None
        secondary_only: Optional[Tuple[Pool, Dict[int, int]]] = None
        for pool in pools:
            found = {}
            for version in req.families:
                value = self._candidate(req, pool, version)
                if value is not None:
                    found[version] = value
            take = self._families_to_take(req, found)
            if take is not None:
                return self._record(self._make(req, pool, [(v, found[v]) for v in take]))
            if req.wants_dual_stack and req.policy == "PreferDualStack":
                if primary_only is None and req.families[0] in found:
                    primary_only = (pool, found)
                if secondary_only is None and req.families[1] in found:
                    secondary_only = (pool, found)
        for choice, version in ((primary_only, req.families[0]), (secondary_only, req.families[-1])):
            if choice is not None:
                pool, found = choice
                return self._record(self._make(req, pool, [(version, found[version])]))
        return None

    def _make(self, req: ServiceRequest, pool: Pool, addresses: Sequence[Tuple[int, int]]) -> Allocation:
        return Allocation(req.key, pool.name, tuple(addresses), req.ports, req.sharing_key, req.backend_key)

    def _still_valid(self, current: Allocation, req: ServiceRequest) -> bool:
        pool = self._pools.get(current.pool)
        if pool is None or not all(pool.contains(v, a) for v, a in current.addresses):
            return False
        if req.requested and tuple(sorted(req.requested)) != tuple(sorted(current.addresses)):
            return False
        if req.pool is not None and req.pool != current.pool:
            return False
        have = tuple(version for version, _value in current.addresses)
        if not req.requested:
            if req.policy == "RequireDualStack" and len(have) != 2:
                return False
            if any(v not in req.families for v in have):
                return False
        if not pool.admits(req.namespace, req.namespace_labels, req.labels):
            return False
        return all(self._sharing_problem(req, v, a) is None for v, a in current.addresses)

    def assign(self, req: ServiceRequest, addresses: Sequence[Tuple[int, int]], held: bool = False) -> Allocation:
        """Give req exactly these addresses: ones it requests, or (``held``) ones its status says
        it holds, read back after a restart. The messages say which."""
        current = self._allocs.get(req.key)
        pool = self._pool_for(addresses, prefer=req.pool)
        shown = ", ".join(address_text(v, a) for v, a in addresses)
        verb = "holds" if held else "requests"
        if pool is None:
            fix = (
                "add it to an IPAddressPool, or it is given another address"
                if held
                else "add it to an IPAddressPool or request another address"
            )
            raise AllocationError(
                f"service {req.key} {verb} {shown}, which is in no pool (or is a .0/.255 address in an "
                f"avoidBuggyIPs pool); {fix}",
                "NotInAnyPool",
            )
        if req.pool is not None and pool.name != req.pool:
            raise AllocationError(
                f"service {req.key} {verb} {shown} from pool {req.pool!r}, "
                f"but that address belongs to pool {pool.name!r}",
                "InvalidRequest",
            )
        if not pool.admits(req.namespace, req.namespace_labels, req.labels):
            raise AllocationError(
                f"service {req.key} {verb} {shown} from pool {pool.name!r}, whose serviceAllocation does not admit it",
                "PoolNotAllowed",
            )
        for version, value in addresses:
            problem = self._sharing_problem(req, version, value)
            if problem is not None:
                raise AllocationError(
                    f"service {req.key} cannot have {address_text(version, value)}: {problem}", "AddressInUse"
                )
        if current is not None:
            self._forget(current)
        return self._record(self._make(req, pool, list(addresses)))


# ---------------------------------------------------------------------------------------------
# Rebuilding state from what the cluster already shows


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def held_addresses(service: Mapping[str, object]) -> List[Tuple[int, int]]:
    """Addresses a Service holds now, from status.loadBalancer.ingress[].ip (bad entries skipped)."""
    status = _mapping(service.get("status"))
    lb = _mapping(status.get("loadBalancer"))
    entries = lb.get("ingress") or []
    held = []
    for entry in entries if isinstance(entries, list) else []:
        ip = entry.get("ip") if isinstance(entry, Mapping) else None
        if ip:
            try:
                held.append(parse_address(ip))
            except IpamError:
                continue
    return held


def handles(service: Mapping[str, object], lb_class: Optional[str] = None) -> bool:
    """Whether the load balancer of class ``lb_class`` (None: the default one) serves ``service``:
    a LoadBalancer Service whose spec.loadBalancerClass is that class (unset for the default)."""
    spec = _mapping(service.get("spec"))
    return spec.get("type") == "LoadBalancer" and (spec.get("loadBalancerClass") or None) == (lb_class or None)


def restore_held(
    allocator: Allocator,
    services: Iterable[Mapping[str, object]],
    namespace_labels: Optional[Mapping[str, Mapping[str, str]]] = None,
    lb_class: Optional[str] = None,
) -> Tuple[int, List[str]]:
    """Take into ``allocator`` what the Services of ``lb_class`` already hold, oldest first (when
    two claim one address, the one that had it first keeps it). Returns how many were kept and
    one warning per Service whose address could not be (outside every pool, or clashing)."""
    ns_labels = namespace_labels or {}
    kept, warnings = 0, []
    ordered = sorted(services, key=lambda s: str(_mapping(s.get("metadata")).get("creationTimestamp") or ""))
    for svc in ordered:
        if not handles(svc, lb_class):
            continue
        held = held_addresses(svc)
        if not held:
            continue
        try:
            namespace = str(_mapping(svc.get("metadata")).get("namespace") or "default")
            allocator.assign(request_from_service(svc, ns_labels.get(namespace)), held, held=True)
            kept += 1
        except IpamError as exc:
            warnings.append(str(exc))
    return kept, warnings


def restore_allocator(
    pools: Iterable[Pool],
    services: Iterable[Mapping[str, object]],
    namespace_labels: Optional[Mapping[str, Mapping[str, str]]] = None,
    lb_class: Optional[str] = None,
    ignored: Optional[Mapping[str, str]] = None,
) -> Tuple[Allocator, List[str]]:
    """An Allocator holding what the LoadBalancer Services of ``lb_class`` already have, before
    anything new is chosen, and the warnings of :func:`restore_held`. ``ignored`` names pools
    that exist but are not usable (pool name -> why), so a Service asking for one is told why."""
    allocator = Allocator(pools)
    allocator.ignored = dict(ignored or {})
    _kept, warnings = restore_held(allocator, services, namespace_labels, lb_class)
    return allocator, warnings
