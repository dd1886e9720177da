# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The metallb.io objects as one validated, immutable snapshot: the one config model.

Used by the onprem-lb controller, the speaker and the Ansible modules (lb_pool_info,
lb_address), so all of them read the same cluster the same way (src/onprem_lb/config.py is this
file). Pure: objects in as dicts (what the API server returns), a ``ConfigSnapshot`` out. Nothing
here raises for bad user input: every problem is a condition on the object (type Ready) that
the controller writes to its status and reports as an Event, and the object is left out.

Rules (MetalLB's, where it has one):

* pools oldest first (creationTimestamp, then name): on overlap the older pool keeps its
  addresses and the newer one is ignored, so creating a pool never takes addresses away;
* an advertisement that names a pool that does not exist is reported, and still serves the
  pools it names that do exist;
* a BGPAdvertisement whose community alias is not defined in any Community, or whose
  aggregation length is shorter than a CIDR of a pool it selects, is ignored (announcing it
  with other attributes than written would be worse than not announcing it);
* a BGPPeer naming a BFDProfile that does not exist is ignored.

Python 3.8+ syntax (the modules run on managed hosts); standard library plus ``ipam``.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import re
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from . import ipam, metallb_kinds

READY = "Ready"
KINDS = tuple(k.kind for k in metallb_kinds.CONFIG_KINDS)


@dataclass(frozen=True)
class Condition:
    """A status condition for one object (type Ready)."""

    status: str  # "True" | "False"
    reason: str
    message: str
    warning: bool = False  # usable, but read other than written: a Warning Event says so


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str


# ---------------------------------------------------------------------------------------------
# Typed objects


@dataclass(frozen=True)
class L2Advertisement:
    """The parts of an L2Advertisement that decide where an address is announced."""

    name: str
    pools: FrozenSet[str] = frozenset()
    pool_selectors: Tuple[ipam.LabelSelector, ...] = ()
    node_selectors: Tuple[ipam.LabelSelector, ...] = ()
    interfaces: Tuple[str, ...] = ()  # empty: every interface

    def selects_pool(self, name: str, labels: Mapping[str, str]) -> bool:
        return _selects_pool(self.pools, self.pool_selectors, name, labels)

    def selects_node(self, labels: Mapping[str, str]) -> bool:
        return _selects_node(self.node_selectors, labels)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> L2Advertisement:
        """Build from an L2Advertisement dict; raises ipam.IpamError on a malformed field."""
        name, spec = _name(obj), _spec(obj)
        where = f"L2Advertisement {name}"
        interfaces = tuple(str(i) for i in _list(spec.get("interfaces")))
        for iface in interfaces:
            if not _INTERFACE.fullmatch(iface):
                raise ipam.IpamError(
                    f"{where}: interfaces lists {iface!r}, which is not an interface name "
                    "(1-15 characters, no '/', ':' or blanks)"
                )
        return cls(
            name=name,
            pools=frozenset(str(p) for p in _list(spec.get("ipAddressPools"))),
            pool_selectors=_selectors(spec, "ipAddressPoolSelectors", where),
            node_selectors=_selectors(spec, "nodeSelectors", where),
            interfaces=interfaces,
        )


@dataclass(frozen=True)
class BGPAdvertisement:
    name: str
    pools: FrozenSet[str] = frozenset()
    pool_selectors: Tuple[ipam.LabelSelector, ...] = ()
    node_selectors: Tuple[ipam.LabelSelector, ...] = ()
    peers: Tuple[str, ...] = ()  # empty: every peer
    communities: Tuple[str, ...] = ()  # resolved values (aliases replaced), sorted
    local_pref: Optional[int] = None
    aggregation_length: int = 32
    aggregation_length_v6: int = 128

    def selects_pool(self, name: str, labels: Mapping[str, str]) -> bool:
        return _selects_pool(self.pools, self.pool_selectors, name, labels)

    def selects_node(self, labels: Mapping[str, str]) -> bool:
        return _selects_node(self.node_selectors, labels)


@dataclass(frozen=True)
class BFDProfile:
    name: str
    receive_interval: int = 300  # ms
    transmit_interval: int = 300  # ms
    detect_multiplier: int = 3
    echo_interval: int = 50  # ms
    echo_mode: bool = False
    passive_mode: bool = False
    minimum_ttl: int = 254


@dataclass(frozen=True)
class BGPPeer:
    name: str
    my_asn: int
    peer_asn: Optional[int] = None  # None with dynamic_asn
    dynamic_asn: Optional[str] = None  # "internal" | "external"
    peer_address: Optional[str] = None
    interface: Optional[str] = None  # unnumbered BGP: the interface instead of an address
    source_address: Optional[str] = None
    peer_port: int = 179
    hold_time: Optional[int] = None  # seconds
    keepalive_time: Optional[int] = None  # seconds
    connect_time: Optional[int] = None  # seconds
    router_id: Optional[str] = None
    ebgp_multihop: bool = False
    node_selectors: Tuple[ipam.LabelSelector, ...] = ()
    # the password itself never enters the snapshot (it would end up in logs and reprs): only
    # where it is, inline on the object or in a Secret (namespace, name)
    has_password: bool = False
    password_secret: Optional[Tuple[str, str]] = None
    bfd_profile: Optional[str] = None
    enable_graceful_restart: bool = False
    vrf: str = ""

    def selects_node(self, labels: Mapping[str, str]) -> bool:
        return _selects_node(self.node_selectors, labels)


@dataclass(frozen=True)
class ConfigSnapshot:
    pools: Tuple[ipam.Pool, ...] = ()
    pool_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    l2_advertisements: Tuple[L2Advertisement, ...] = ()
    bgp_advertisements: Tuple[BGPAdvertisement, ...] = ()
    peers: Tuple[BGPPeer, ...] = ()
    communities: Mapping[str, str] = field(default_factory=dict)  # alias -> value
    bfd_profiles: Mapping[str, BFDProfile] = field(default_factory=dict)
    conditions: Mapping[ObjectRef, Condition] = field(default_factory=dict)

    def problems(self) -> Dict[ObjectRef, Condition]:
        return {ref: cond for ref, cond in self.conditions.items() if cond.status != "True"}

    def ignored_pools(self) -> Dict[str, str]:
        """Pools that exist but give no addresses: name -> why."""
        return {
            ref.name: cond.message
            for ref, cond in self.conditions.items()
            if ref.kind == "IPAddressPool" and cond.status != "True"
        }

    def pool_of(self, ip: str) -> Optional[str]:
        """The usable pool that holds ``ip`` (None for an address outside every pool)."""
        try:
            version, value = ipam.parse_address(ip)
        except ipam.IpamError:
            return None
        return next((p.name for p in self.pools if p.contains(version, value)), None)


# ---------------------------------------------------------------------------------------------
# Reading the objects

_INTERFACE = re.compile(r"[^/:\s]{1,15}")
_STANDARD = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_LARGE = re.compile(r"large:([0-9]{1,10}):([0-9]{1,10}):([0-9]{1,10})")
_EXTENDED = re.compile(r"ext:[a-z-]+:.+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
MAX_ASN = 2**32 - 1


class _Bad(Exception):
    """One object is invalid: (reason, message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _ref(kind: str, obj: Mapping[str, Any]) -> ObjectRef:
    meta = _meta(obj)
    return ObjectRef(kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _list(value: object) -> List[Any]:
    return list(value) if isinstance(value, list) else []


def age_key(obj: Mapping[str, Any]) -> Tuple[str, str]:
    """Oldest first, by creationTimestamp, then name (the API gives second resolution)."""
    meta = _meta(obj)
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def _selectors(spec: Mapping[str, Any], key: str, where: str) -> Tuple[ipam.LabelSelector, ...]:
    return tuple(ipam.LabelSelector.parse(s, f"{where} {key}") for s in _list(spec.get(key)))


def _selects_pool(
    pools: FrozenSet[str], selectors: Sequence[ipam.LabelSelector], name: str, labels: Mapping[str, str]
) -> bool:
    if not pools and not selectors:
        return True  # neither given: every pool (MetalLB's rule)
    return name in pools or any(s.matches(labels) for s in selectors)


def _selects_node(selectors: Sequence[ipam.LabelSelector], labels: Mapping[str, str]) -> bool:
    return not selectors or any(s.matches(labels) for s in selectors)


def _int(spec: Mapping[str, Any], key: str, low: int, high: int, where: str) -> Optional[int]:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Bad("InvalidField", f"{where}: {key} is {value!r}; it must be a whole number from {low} to {high}")
    return value


def _bool(spec: Mapping[str, Any], key: str, where: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise _Bad("InvalidField", f"{where}: {key} is {value!r}; it must be true or false")
    return value


def parse_duration(text: object) -> Optional[float]:
    """Seconds in a Kubernetes duration ("90s", "1m30s", "500ms"), None if it is not one."""
    if not isinstance(text, str) or not text:
        return None
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def _seconds(spec: Mapping[str, Any], key: str, where: str) -> Optional[int]:
    if spec.get(key) is None:
        return None
    value = parse_duration(spec.get(key))
    if value is None:
        raise _Bad("InvalidField", f"{where}: {key} is {spec.get(key)!r}; write a duration such as 90s or 1m30s")
    return int(value)


def community_problem(value: str) -> Optional[str]:
    """Why ``value`` is not a BGP community (AA:NN, large:AA:BB:CC, ext:type:value), or None."""
    std = _STANDARD.fullmatch(value)
    if std:
        if all(int(part) <= 65535 for part in std.groups()):
            return None
        return f"{value!r}: both halves of a standard community are at most 65535"
    large = _LARGE.fullmatch(value)
    if large:
        if all(int(part) <= MAX_ASN for part in large.groups()):
            return None
        return f"{value!r}: each part of a large community is at most {MAX_ASN}"
    if _EXTENDED.fullmatch(value):
        return None
    return f"{value!r} is not a community: write AA:NN (65000:100), large:AA:BB:CC, or the name of a Community alias"


def _pool(obj: Mapping[str, Any]) -> ipam.Pool:
    try:
        return ipam.Pool.from_spec(_name(obj), _spec(obj))
    except ipam.IpamError as exc:
        raise _Bad("InvalidAddresses", f"{exc}; the pool is ignored until fixed") from None


def _community_aliases(obj: Mapping[str, Any]) -> Dict[str, str]:
    where = f"Community {_name(obj)}"
    out: Dict[str, str] = {}
    for i, entry in enumerate(_list(_spec(obj).get("communities"))):
        alias = entry.get("name") if isinstance(entry, Mapping) else None
        value = entry.get("value") if isinstance(entry, Mapping) else None
        if not isinstance(alias, str) or not alias or not isinstance(value, str):
            raise _Bad("InvalidField", f"{where}: communities[{i}] needs a name and a value")
        problem = community_problem(value)
        if problem:
            raise _Bad("InvalidCommunity", f"{where}: communities[{i}] ({alias}): {problem}")
        if alias in out:
            raise _Bad("DuplicateAlias", f"{where}: the alias {alias!r} is defined twice")
        out[alias] = value
    return out


def _bfd_profile(obj: Mapping[str, Any]) -> BFDProfile:
    name, spec = _name(obj), _spec(obj)
    where = f"BFDProfile {name}"
    defaults = BFDProfile(name)
    return BFDProfile(
        name=name,
        receive_interval=_int(spec, "receiveInterval", 10, 60000, where) or defaults.receive_interval,
        transmit_interval=_int(spec, "transmitInterval", 10, 60000, where) or defaults.transmit_interval,
        detect_multiplier=_int(spec, "detectMultiplier", 2, 255, where) or defaults.detect_multiplier,
        echo_interval=_int(spec, "echoInterval", 10, 60000, where) or defaults.echo_interval,
        echo_mode=_bool(spec, "echoMode", where),
        passive_mode=_bool(spec, "passiveMode", where),
        minimum_ttl=_int(spec, "minimumTtl", 1, 254, where) or defaults.minimum_ttl,
    )


def _address(spec: Mapping[str, Any], key: str, where: str, family: Optional[int] = None) -> Optional[str]:
    value = spec.get(key)
    if value is None:
        return None
    try:
        version, number = ipam.parse_address(str(value))
    except ipam.IpamError:
        raise _Bad("InvalidField", f"{where}: {key} is {value!r}, which is not an IP address") from None
    if family is not None and version != family:
        raise _Bad("InvalidField", f"{where}: {key} must be an IPv{family} address, got {value!r}")
    return ipam.address_text(version, number)


def _peer(obj: Mapping[str, Any], bfd_profiles: Mapping[str, BFDProfile]) -> BGPPeer:
    name, spec = _name(obj), _spec(obj)
    where = f"BGPPeer {name}"
    my_asn = _int(spec, "myASN", 0, MAX_ASN, where)
    if my_asn is None:
        raise _Bad("InvalidField", f"{where}: myASN is required (the nodes' AS number)")
    peer_asn = _int(spec, "peerASN", 0, MAX_ASN, where)
    dynamic = spec.get("dynamicASN")
    if (peer_asn is None) == (dynamic is None):
        raise _Bad("InvalidField", f"{where}: set exactly one of peerASN and dynamicASN")
    if dynamic is not None and dynamic not in ("internal", "external"):
        raise _Bad("InvalidField", f"{where}: dynamicASN is {dynamic!r}; use internal or external")
    address = _address(spec, "peerAddress", where)
    interface = spec.get("interface")
    if (address is None) == (interface is None):
        raise _Bad("InvalidField", f"{where}: set exactly one of peerAddress and interface")
    if spec.get("password") and spec.get("passwordSecret"):
        raise _Bad("InvalidField", f"{where}: set password or passwordSecret, not both (prefer passwordSecret)")
    secret = spec.get("passwordSecret")
    secret_ref = None
    if secret is not None:
        secret_name = secret.get("name") if isinstance(secret, Mapping) else None
        if not isinstance(secret_name, str) or not secret_name:
            raise _Bad("InvalidField", f"{where}: passwordSecret needs the name of a Secret")
        secret_ref = (str(secret.get("namespace") or _meta(obj).get("namespace") or ""), secret_name)
    hold = _seconds(spec, "holdTime", where)
    keepalive = _seconds(spec, "keepaliveTime", where)
    if hold is not None and hold != 0 and hold < 3:
        raise _Bad("InvalidField", f"{where}: holdTime must be 0 or at least 3s (RFC 4271)")
    if hold and keepalive is not None and keepalive >= hold:
        raise _Bad("InvalidField", f"{where}: keepaliveTime ({keepalive}s) must be shorter than holdTime ({hold}s)")
    profile = spec.get("bfdProfile") or None
    if profile is not None and profile not in bfd_profiles:
        known = ", ".join(sorted(bfd_profiles)) or "none"
        raise _Bad(
            "UnknownBFDProfile",
            f"{where}: bfdProfile {profile!r} does not exist (BFD profiles: {known}); "
            "the peer is ignored until it does",
        )
    return BGPPeer(
        name=name,
        my_asn=my_asn,
        peer_asn=peer_asn,
        dynamic_asn=dynamic,
        peer_address=address,
        interface=str(interface) if interface is not None else None,
        source_address=_address(spec, "sourceAddress", where),
        peer_port=_int(spec, "peerPort", 1, 65535, where) or 179,
        hold_time=hold,
        keepalive_time=keepalive,
        connect_time=_seconds(spec, "connectTime", where),
        router_id=_address(spec, "routerID", where, family=4),
        ebgp_multihop=_bool(spec, "ebgpMultiHop", where),
        node_selectors=_selectors(spec, "nodeSelectors", where),
        has_password=bool(spec.get("password")) or secret_ref is not None,
        password_secret=secret_ref,
        bfd_profile=profile,
        enable_graceful_restart=_bool(spec, "enableGracefulRestart", where),
        vrf=str(spec.get("vrf") or ""),
    )


def _bgp_advertisement(
    obj: Mapping[str, Any], aliases: Mapping[str, str], pools: Sequence[ipam.Pool], labels: Mapping[str, Any]
) -> BGPAdvertisement:
    name, spec = _name(obj), _spec(obj)
    where = f"BGPAdvertisement {name}"
    communities = []
    for value in _list(spec.get("communities")):
        text = str(value)
        if text in aliases:
            communities.append(aliases[text])
            continue
        problem = community_problem(text)
        if problem:
            if ":" not in text:
                problem = f"{text!r} is neither a community nor an alias defined in a Community object"
            raise _Bad("UnknownCommunity", f"{where}: communities: {problem}; the advertisement is ignored until fixed")
        communities.append(text)
    ad = BGPAdvertisement(
        name=name,
        pools=frozenset(str(p) for p in _list(spec.get("ipAddressPools"))),
        pool_selectors=_selectors(spec, "ipAddressPoolSelectors", where),
        node_selectors=_selectors(spec, "nodeSelectors", where),
        peers=tuple(str(p) for p in _list(spec.get("peers"))),
        communities=tuple(sorted(set(communities))),
        local_pref=_int(spec, "localPref", 0, MAX_ASN, where),
        aggregation_length=_opt(_int(spec, "aggregationLength", 0, 32, where), 32),
        aggregation_length_v6=_opt(_int(spec, "aggregationLengthV6", 0, 128, where), 128),
    )
    for pool in pools:
        if not ad.selects_pool(pool.name, labels.get(pool.name) or {}):
            continue
        for rng in pool.ranges:
            length = ad.aggregation_length if rng.version == 4 else ad.aggregation_length_v6
            widest = _widest_prefix(rng)
            if length < widest:
                raise _Bad(
                    "InvalidAggregation",
                    f"{where}: aggregationLength{'' if rng.version == 4 else 'V6'} {length} is shorter than the "
                    f"prefix /{widest} of {rng} in pool {pool.name!r}: addresses outside the pool would be announced; "
                    f"use {widest} or more",
                )
    return ad


def _opt(value: Optional[int], default: int) -> int:
    return default if value is None else value


def _widest_prefix(rng: ipam.AddressRange) -> int:
    """The shortest prefix among the CIDR blocks that exactly cover ``rng``."""
    bits = 32 if rng.version == 4 else 128
    first, last, widest = rng.first, rng.last, bits
    while first <= last:
        size = (first & -first).bit_length() - 1 if first else bits
        while size > 0 and first + (1 << size) - 1 > last:
            size -= 1
        widest = min(widest, bits - size)
        first += 1 << size
    return widest


def _missing_pools(obj: Mapping[str, Any], names: FrozenSet[str]) -> Optional[Condition]:
    wanted = [str(n) for n in _list(_spec(obj).get("ipAddressPools"))]
    missing = [n for n in wanted if n not in names]
    if not missing:
        return None
    return Condition(
        "False",
        "UnknownPool",
        f"ipAddressPools names {', '.join(repr(n) for n in missing)}, which do not exist; "
        f"existing pools: {', '.join(sorted(names)) or 'none'}",
    )


def _size_text(pool: ipam.Pool) -> str:
    parts = []
    for version in (4, 6):
        if pool.ranges_of(version):
            parts.append(f"{ipam.count_text(pool.size(version))} {ipam.FAMILY_NAMES[version]}")
    return " and ".join(parts) + " addresses"


def _first_overlap(pool: ipam.Pool, accepted: Sequence[ipam.Pool]) -> Optional[Tuple[str, str]]:
    for other in accepted:
        for mine in pool.ranges:
            for theirs in other.ranges:
                part = mine.overlap(theirs)
                if part is not None:
                    return other.name, str(part)
    return None


def _read_pools(
    objs: Sequence[Mapping[str, Any]], conditions: Dict[ObjectRef, Condition]
) -> Tuple[List[ipam.Pool], Dict[str, Mapping[str, str]]]:
    accepted: List[ipam.Pool] = []
    labels: Dict[str, Mapping[str, str]] = {}
    for obj in sorted(objs, key=age_key):
        ref = _ref("IPAddressPool", obj)
        raw_labels = _meta(obj).get("labels")
        labels[ref.name] = {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
        try:
            pool = _pool(obj)
        except _Bad as bad:
            conditions[ref] = Condition("False", bad.reason, bad.message)
            continue
        clash = _first_overlap(pool, accepted)
        if clash is not None:
            other, part = clash
            conditions[ref] = Condition(
                "False",
                "Overlap",
                f"addresses {part} are also in the older pool {other!r}, which keeps them; remove the overlap "
                "from one of the two pools (this pool is ignored until then)",
            )
            continue
        accepted.append(pool)
        # the pool's size; what is free now is status.available* (the condition never changes with use)
        valid = f"a pool of {_size_text(pool)}, in use for allocation"
        if pool.notes:
            conditions[ref] = Condition("True", "HostBitsIgnored", "; ".join(pool.notes) + f" ({valid})", warning=True)
        else:
            conditions[ref] = Condition("True", "Valid", valid)
    return accepted, labels


def slim_object(plain: Mapping[str, Any]) -> Dict[str, Any]:
    """What the model (and the status writers) read of a metallb.io object: name, namespace, uid,
    labels, age, generation and spec. A cache of these changes only when the object's meaning
    does, not on each status write or resourceVersion bump."""
    meta = plain.get("metadata") or {}
    slim = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "creationTimestamp": str(meta.get("creationTimestamp") or ""),
        "labels": meta.get("labels") or {},
        "generation": meta.get("generation"),
    }
    return {"metadata": slim, "spec": plain.get("spec") or {}}


def build_config(
    pools: Sequence[Mapping[str, Any]] = (),
    *,
    l2_advertisements: Sequence[Mapping[str, Any]] = (),
    bgp_advertisements: Sequence[Mapping[str, Any]] = (),
    peers: Sequence[Mapping[str, Any]] = (),
    communities: Sequence[Mapping[str, Any]] = (),
    bfd_profiles: Sequence[Mapping[str, Any]] = (),
) -> ConfigSnapshot:
    """One snapshot of every metallb.io object (dicts as the API returns them)."""
    conditions: Dict[ObjectRef, Condition] = {}
    accepted, pool_labels = _read_pools(pools, conditions)
    names = frozenset(pool_labels)

    profiles: Dict[str, BFDProfile] = {}
    for obj in sorted(bfd_profiles, key=age_key):
        ref = _ref("BFDProfile", obj)
        try:
            profiles[ref.name] = _bfd_profile(obj)
            conditions[ref] = Condition("True", "Valid", "usable by BGPPeers")
        except _Bad as bad:
            conditions[ref] = Condition("False", bad.reason, bad.message)

    aliases: Dict[str, str] = {}
    for obj in sorted(communities, key=age_key):
        ref = _ref("Community", obj)
        try:
            mine = _community_aliases(obj)
        except _Bad as bad:
            conditions[ref] = Condition("False", bad.reason, bad.message)
            continue
        taken = sorted(set(mine) & set(aliases))
        if taken:
            conditions[ref] = Condition(
                "False",
                "DuplicateAlias",
                f"alias(es) {', '.join(taken)} are already defined by an older Community; rename them here",
            )
            continue
        aliases.update(mine)
        conditions[ref] = Condition("True", "Valid", f"{len(mine)} community alias(es)")

    l2: List[L2Advertisement] = []
    for obj in sorted(l2_advertisements, key=age_key):
        ref = _ref("L2Advertisement", obj)
        try:
            l2.append(L2Advertisement.from_object(obj))
        except ipam.IpamError as exc:
            conditions[ref] = Condition("False", "InvalidField", f"{exc}; the advertisement is ignored until fixed")
            continue
        conditions[ref] = _missing_pools(obj, names) or Condition("True", "Valid", "all referenced pools exist")

    peer_list: List[BGPPeer] = []
    for obj in sorted(peers, key=age_key):
        ref = _ref("BGPPeer", obj)
        try:
            peer_list.append(_peer(obj, profiles))
        except (_Bad, ipam.IpamError) as exc:
            reason = exc.reason if isinstance(exc, _Bad) else "InvalidField"
            conditions[ref] = Condition("False", reason, str(exc))
            continue
        conditions[ref] = Condition("True", "Valid", "usable")
    peer_names = frozenset(p.name for p in peer_list)

    bgp: List[BGPAdvertisement] = []
    for obj in sorted(bgp_advertisements, key=age_key):
        ref = _ref("BGPAdvertisement", obj)
        try:
            ad = _bgp_advertisement(obj, aliases, accepted, pool_labels)
        except (_Bad, ipam.IpamError) as exc:
            reason = exc.reason if isinstance(exc, _Bad) else "InvalidField"
            conditions[ref] = Condition("False", reason, str(exc))
            continue
        bgp.append(ad)
        unknown_peers = [p for p in ad.peers if p not in peer_names]
        condition = _missing_pools(obj, names)
        if condition is None and unknown_peers:
            condition = Condition(
                "False",
                "UnknownPeer",
                f"peers names {', '.join(repr(p) for p in unknown_peers)}, which do not exist or are ignored; "
                f"usable peers: {', '.join(sorted(peer_names)) or 'none'}",
            )
        conditions[ref] = condition or Condition("True", "Valid", "all referenced pools exist")

    return ConfigSnapshot(
        pools=tuple(accepted),
        pool_labels=pool_labels,
        l2_advertisements=tuple(l2),
        bgp_advertisements=tuple(bgp),
        peers=tuple(peer_list),
        communities=aliases,
        bfd_profiles=profiles,
        conditions=conditions,
    )


_ARGUMENT_OF_KIND = {k.kind: k.config for k in metallb_kinds.CONFIG_KINDS}


def config_from_objects(objects: Sequence[Mapping[str, Any]]) -> ConfigSnapshot:
    """build_config for a mixed list of metallb.io objects (by ``kind``; other kinds are skipped)."""
    grouped: Dict[str, List[Mapping[str, Any]]] = {arg: [] for arg in _ARGUMENT_OF_KIND.values()}
    for obj in objects:
        arg = _ARGUMENT_OF_KIND.get(str(obj.get("kind")))
        if arg is not None:
            grouped[arg].append(obj)
    pools = grouped.pop("pools")
    return build_config(pools, **grouped)
