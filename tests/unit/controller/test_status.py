"""controller/status.py: what each metallb.io object's status should say, and when it changed."""

from __future__ import annotations

from onprem_lb import ipam
from onprem_lb.config import ObjectRef, build_config
from onprem_lb.controller.status import _same_status, desired_status

NS = "metallb-system"


def pool(name: str, addresses: list[str], created: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": NS, "creationTimestamp": created}, "spec": {"addresses": addresses}}


def test_a_usable_pool_shows_its_counts_and_an_ignored_one_zero_with_the_reason() -> None:
    snap = build_config(
        [pool("a", ["192.0.2.0/30"], "2026-01-01T00:00:00Z"), pool("b", ["192.0.2.2/31"], "2026-01-02T00:00:00Z")]
    )
    allocator = ipam.Allocator(snap.pools)
    allocator.assign(
        ipam.ServiceRequest(key="ns/s", namespace="ns"), [(4, int.from_bytes(bytes([192, 0, 2, 1]), "big"))]
    )
    a = desired_status(ObjectRef("IPAddressPool", NS, "a"), snap, allocator)
    assert (a["assignedIPv4"], a["availableIPv4"], a["assignedIPv6"]) == (1, 3, 0)
    assert a["conditions"][0]["status"] == "True"
    b = desired_status(ObjectRef("IPAddressPool", NS, "b"), snap, allocator)
    assert (b["assignedIPv4"], b["availableIPv4"]) == (0, 0)
    assert (b["conditions"][0]["status"], b["conditions"][0]["reason"]) == ("False", "Overlap")


def test_timestamps_and_generations_alone_are_no_change() -> None:
    cond = {"type": "Ready", "status": "True", "reason": "Valid", "message": "m"}
    old = {"assignedIPv4": 1, "conditions": [dict(cond, lastTransitionTime="t1", observedGeneration=1)]}
    assert _same_status(old, {"assignedIPv4": 1, "conditions": [dict(cond)]})
    assert not _same_status(old, {"assignedIPv4": 2, "conditions": [dict(cond)]})
    assert not _same_status(old, {"assignedIPv4": 1, "conditions": [dict(cond, reason="Overlap")]})
