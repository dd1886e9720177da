"""The status the controller writes on the metallb.io objects: each one's Ready condition, the
pools' counts, and one Warning Event per problem (again only when the problem changes).

Writes go out only for what changed (timestamps and generations alone never warrant one);
``check_leader`` is asked before each write and raises when this controller no longer leads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from onprem_lb import ipam, metrics
from onprem_lb.config import READY, Condition, ConfigSnapshot, ObjectRef
from onprem_lb.k8s import EventRecorder

log = logging.getLogger("onprem_lb.controller")


def desired_status(ref: ObjectRef, snapshot: ConfigSnapshot, allocator: ipam.Allocator) -> dict[str, Any]:
    """The status an object should show now (pools: counts per family; all: the Ready condition)."""
    cond = snapshot.conditions.get(ref)
    status: dict[str, Any] = {}
    if ref.kind == "IPAddressPool":
        shown = allocator.usage(ref.name).shown() if ref.name in allocator.pools else None
        for fam in ("IPv4", "IPv6"):
            status[f"assigned{fam}"] = shown["used"][fam] if shown else 0
            status[f"available{fam}"] = shown["free"][fam] if shown else 0
    if cond is not None:
        status["conditions"] = [{"type": READY, "status": cond.status, "reason": cond.reason, "message": cond.message}]
    return status


class ConfigStatus:
    def __init__(self, client: AsyncClient, events: EventRecorder, check_leader: Callable[[], None]) -> None:
        self.client = client
        self.events = events
        self.check_leader = check_leader
        self.written: dict[str, dict[str, Any]] = {}  # kind/uid -> the status last written
        self.told: dict[ObjectRef, Condition] = {}  # the problem last told by an Event

    async def write(
        self,
        objects: Iterable[tuple[str, Any, Mapping[str, Any]]],
        snapshot: ConfigSnapshot,
        allocator: ipam.Allocator,
    ) -> None:
        """``objects``: (kind, its resource class or None when it has no status, the object)."""
        for name in allocator.pools:
            usage = allocator.usage(name)
            for fam in ("IPv4", "IPv6"):
                metrics.addresses_total.labels(pool=name, family=fam).set(usage.size[fam])
                metrics.addresses_in_use.labels(pool=name, family=fam).set(usage.used[fam])
        for kind, resource, obj in objects:
            meta = obj["metadata"]
            ref = ObjectRef(kind, meta["namespace"], meta["name"])
            desired = desired_status(ref, snapshot, allocator)
            cache_key = f"{kind}/{meta['uid']}"
            previous = self.written.get(cache_key)
            if previous is not None and _same_status(previous, desired):
                continue
            for cond in desired.get("conditions", []):
                old = {c["type"]: c for c in (previous or {}).get("conditions", [])}.get(cond["type"])
                if old is not None and old["status"] == cond["status"]:
                    cond["lastTransitionTime"] = old["lastTransitionTime"]
                else:
                    cond["lastTransitionTime"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                cond["observedGeneration"] = meta.get("generation") or 0
            self.check_leader()
            if resource is not None:
                await self.client.patch(
                    resource.Status,
                    meta["name"],
                    {"status": desired},
                    namespace=meta["namespace"],
                    patch_type=PatchType.MERGE,
                )
            self.written[cache_key] = desired
            self._tell(kind, ref, meta, snapshot.conditions.get(ref))

    def _tell(self, kind: str, ref: ObjectRef, meta: Mapping[str, Any], cond: Condition | None) -> None:
        """A Warning Event (and log line) for an object ignored or read other than written."""
        noteworthy = cond is not None and (cond.status != "True" or cond.warning)
        if cond is not None and noteworthy and self.told.get(ref) != cond:
            self.told[ref] = cond
            api_version = "metallb.io/v1beta2" if kind == "BGPPeer" else "metallb.io/v1beta1"
            self.events.record(meta, "Warning", cond.reason, cond.message, kind=kind, api_version=api_version)
            what = "ignored" if cond.status != "True" else "used"
            log.warning("%s %s/%s %s: %s", kind, ref.namespace, ref.name, what, cond.message)
        elif cond is not None and not noteworthy:
            self.told.pop(ref, None)


def _conditions_key(conds: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(c["type"], c["status"], c["reason"], c["message"]) for c in conds]


def _without_conditions(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "conditions"}


def _same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal but for condition timestamps and generations (those alone never warrant a write)."""
    return _without_conditions(old) == _without_conditions(new) and _conditions_key(
        old.get("conditions", [])
    ) == _conditions_key(new.get("conditions", []))
