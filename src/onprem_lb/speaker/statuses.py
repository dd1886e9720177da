"""The per-(Service, node) status objects every protocol writes (ServiceL2Status,
ServiceBGPStatus): one writer per object, so a plain create-then-patch is safe."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.types import PatchType

from onprem_lb.k8s import TRANSIENT

NODE_LABEL = "metallb.io/node"
SVC_NAME_LABEL = "metallb.io/service-name"
SVC_NS_LABEL = "metallb.io/service-namespace"


def convert(plain: dict[str, Any]) -> dict[str, Any] | None:
    """What an informer keeps of a status object: only ours, the ones naming a node."""
    meta = plain.get("metadata") or {}
    labels = meta.get("labels") or {}
    if NODE_LABEL not in labels:
        return None
    return {"name": meta.get("name"), "labels": labels, "status": plain.get("status") or {}}


async def put(
    client: AsyncClient,
    resource: Any,
    namespace: str,
    *,
    name: str,
    entry: Mapping[str, Any],
    have: Mapping[str, Any] | None,
) -> None:
    """Create the object when missing, then write its status when it differs from ``have``."""
    if have is None:
        meta = ObjectMeta(name=name, namespace=namespace, labels=dict(entry["labels"]))
        try:
            await client.create(resource(metadata=meta, spec={}))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
    if have is None or have["status"] != entry["status"]:
        await client.patch(
            resource.Status, name, {"status": entry["status"]}, namespace=namespace, patch_type=PatchType.MERGE
        )


async def delete_own(
    client: AsyncClient, resource: Any, namespace: str, node: str, have: Iterable[Mapping[str, Any]]
) -> None:
    """Remove this node's objects (a planned stop): best effort, the API may be gone."""
    for obj in list(have):
        if obj["labels"].get(NODE_LABEL) == node:
            with contextlib.suppress(ApiError, *TRANSIENT):
                await client.delete(resource, obj["name"], namespace=namespace)
