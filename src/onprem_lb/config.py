"""The controller's view of the metallb.io objects: one validated, immutable snapshot.

Pure: takes the objects as dicts, returns which pools are usable and what is wrong with the
others. Nothing here raises for bad user input; every problem becomes a condition that the
controller writes to the object's status and reports as an Event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onprem_lb import ipam

READY = "Ready"


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


@dataclass(frozen=True)
class ConfigSnapshot:
    pools: tuple[ipam.Pool, ...] = ()
    conditions: Mapping[ObjectRef, Condition] = field(default_factory=dict)

    def problems(self) -> dict[ObjectRef, Condition]:
        return {ref: cond for ref, cond in self.conditions.items() if cond.status != "True"}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _age_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def _size_text(pool: ipam.Pool) -> str:
    parts = []
    for version in (4, 6):
        if pool.ranges_of(version):
            parts.append(f"{ipam.count_text(pool.size(version))} {ipam.FAMILY_NAMES[version]}")
    return " and ".join(parts) + " addresses"


def build_config(
    pools: Sequence[Mapping[str, Any]],
    advertisements: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> ConfigSnapshot:
    """Validate pools (oldest first: on overlap the older pool keeps its addresses) and check
    that advertisements ("L2Advertisement"/"BGPAdvertisement", object) name existing pools."""
    conditions: dict[ObjectRef, Condition] = {}
    accepted: list[ipam.Pool] = []
    names: set[str] = set()
    for obj in sorted(pools, key=_age_key):
        meta = _meta(obj)
        ref = ObjectRef("IPAddressPool", str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        names.add(ref.name)
        spec = obj.get("spec")
        try:
            pool = ipam.Pool.from_spec(ref.name, spec if isinstance(spec, Mapping) else {})
        except ipam.IpamError as exc:
            conditions[ref] = Condition("False", "InvalidAddresses", f"{exc}; the pool is ignored until fixed")
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
    for kind, obj in advertisements:
        meta = _meta(obj)
        ref = ObjectRef(kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
        wanted = [str(n) for n in (spec.get("ipAddressPools") or [])]  # type: ignore[union-attr]
        missing = [n for n in wanted if n not in names]
        if missing:
            conditions[ref] = Condition(
                "False",
                "UnknownPool",
                f"ipAddressPools names {', '.join(repr(n) for n in missing)}, which do not exist; "
                f"existing pools: {', '.join(sorted(names)) or 'none'}",
            )
        else:
            conditions[ref] = Condition("True", "Valid", "all referenced pools exist")
    return ConfigSnapshot(tuple(accepted), conditions)


def _first_overlap(pool: ipam.Pool, accepted: Sequence[ipam.Pool]) -> tuple[str, str] | None:
    for other in accepted:
        for mine in pool.ranges:
            for theirs in other.ranges:
                part = mine.overlap(theirs)
                if part is not None:
                    return other.name, str(part)
    return None
