"""controller/loop.py: what the controller keeps of a Service."""

from __future__ import annotations

import asyncio
from typing import Any

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Service

from onprem_lb.controller.loop import Controller, slim_service


def test_slim_service_keeps_what_allocation_reads_only() -> None:
    full = {
        "metadata": {
            "name": "web",
            "namespace": "apps",
            "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {
                "metallb.io/address-pool": "p",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": 80, "nodePort": 30080, "targetPort": 8080}],
            "selector": {"app": "web"},
            "externalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}},
    }
    slim = slim_service(full)
    assert slim["metadata"]["annotations"] == {"metallb.io/address-pool": "p"}
    assert "managedFields" not in slim["metadata"]
    assert slim["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert slim["spec"]["selector"] == {}  # only ETP=Local Services need it (backend key)
    assert slim["status"] == {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}


# -- the writes of one allocation -------------------------------------------------------------------


class RecordingClient:
    """Answers merge patches as an API server would, keeping metadata written through /status
    or (``drops_status_metadata``) dropping it, as a stricter server might."""

    def __init__(self, *, drops_status_metadata: bool) -> None:
        self.drops = drops_status_metadata
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def patch(self, resource: Any, name: str, body: dict[str, Any], **_kw: Any) -> Service:
        status = resource is Service.Status
        self.patches.append(("status" if status else "service", body))
        annotations = {} if status and self.drops else (body.get("metadata") or {}).get("annotations")
        return Service(metadata=ObjectMeta(name=name, annotations=annotations))


def allocate_one(client: RecordingClient) -> list[tuple[str, dict[str, Any]]]:
    ctl = Controller(client, None)  # type: ignore[arg-type]  # only patch is called
    pool = {"metadata": {"name": "lab", "namespace": "metallb-system", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    ctl.pools.items["metallb-system/lab"] = {**pool, "spec": {"addresses": ["192.0.2.0/28"]}}
    ctl._rebuild_config()
    ctl.services.items["apps/web"] = slim_service(
        {"metadata": {"name": "web", "namespace": "apps", "uid": "u1"}, "spec": {"type": "LoadBalancer"}}
    )
    asyncio.run(ctl.reconcile("apps/web"))
    return client.patches


def test_status_and_pool_annotation_go_in_one_write() -> None:
    patches = allocate_one(RecordingClient(drops_status_metadata=False))
    assert patches == [
        (
            "status",
            {
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.0"}]}},
                "metadata": {"annotations": {"metallb.io/ip-allocated-from-pool": "lab"}},
            },
        )
    ]


def test_the_annotation_is_written_on_its_own_when_the_status_write_drops_it() -> None:
    patches = allocate_one(RecordingClient(drops_status_metadata=True))
    assert [kind for kind, _body in patches] == ["status", "service"]
    assert patches[1][1] == {"metadata": {"annotations": {"metallb.io/ip-allocated-from-pool": "lab"}}}
