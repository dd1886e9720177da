"""Real-world MetalLB manifests (tests/corpus/metallb/, and the seeds') are accepted unchanged:
by the CRDs and the Service policy (server-side dry-run against the real API server), by the
legacy ConfigMap converter, and by the controller's configuration model (no pool or
advertisement refused)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from onprem_lb import legacy
from onprem_lb.config import config_from_objects
from tests.support.controlplane import ControlPlane, kubectl

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus" / "metallb"
SEEDS = REPO / "tests" / "integration" / "seeds"
MANIFESTS = sorted(p for p in CORPUS.glob("*.yaml") if p.name != "legacy-configmap.yaml")
SEED_MANIFESTS = sorted(p for p in SEEDS.glob("*.yaml") if "config" not in p.name)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def in_namespace(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [dict(o, metadata=dict(o["metadata"], namespace=namespace)) for o in objects]


def dry_run(controlplane: ControlPlane, objects: list[dict[str, Any]]) -> list[str]:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    out = kubectl(controlplane.kubeconfig, "apply", "--dry-run=server", "-o", "name", "-f", "-", stdin=doc)
    return out.split()


@pytest.mark.parametrize("path", MANIFESTS + SEED_MANIFESTS, ids=lambda p: p.name)
def test_api_accepts(path: Path, controlplane: ControlPlane, metallb_crds: None, namespace: str) -> None:
    objects = in_namespace(documents(path), namespace)
    assert len(dry_run(controlplane, objects)) == len(objects)


def config_of(objects: list[dict[str, Any]]) -> Any:
    stamped = [dict(o, metadata=dict(o["metadata"], creationTimestamp="2026-01-01T00:00:00Z")) for o in objects]
    return config_from_objects(stamped)


def test_the_controller_uses_every_pool_and_advertisement() -> None:
    objects = [o for p in MANIFESTS for o in documents(p)]
    snap = config_of(objects)
    assert {p.name for p in snap.pools} == {o["metadata"]["name"] for o in objects if o["kind"] == "IPAddressPool"}
    refused = {f"{r.kind}/{r.name}": c.message for r, c in snap.conditions.items() if c.status != "True"}
    assert refused == {}
    # the one that is read other than written says so
    warned = {r.name: c.reason for r, c in snap.conditions.items() if c.warning}
    assert warned == {"host-bits": "HostBitsIgnored"}


def test_the_legacy_configmap_converts_with_every_key_and_is_accepted(
    controlplane: ControlPlane, metallb_crds: None, namespace: str
) -> None:
    text = (CORPUS / "legacy-configmap.yaml").read_text()
    objects = legacy.convert(legacy.config_text_from_manifest(text), namespace=namespace)
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["BFDProfile", "BGPAdvertisement", "BGPPeer", "Community", "IPAddressPool", "L2Advertisement"]
    community = next(o for o in objects if o["kind"] == "Community")
    # written unquoted, read as written: not the base-60 integer or the boolean of YAML 1.1
    assert {"name": "y", "value": "64500:10"} in community["spec"]["communities"]
    peer = next(o for o in objects if o["kind"] == "BGPPeer" and o["spec"]["peerAddress"] == "10.0.0.1")
    assert peer["spec"]["password"].startswith("yes-") and peer["spec"]["peerPort"] == 1179  # text, not true
    assert len(dry_run(controlplane, objects)) == len(objects)
    snap = config_of(objects)
    assert all(c.status == "True" for c in snap.conditions.values()), snap.conditions
