"""Every object the ingress role builds, for both controllers, every exposure and option, accepted
by a real kube-apiserver (server-side dry-run; Traefik's Gateway objects against the Gateway API
CRDs the lab's Traefik is built against, lab/ingress/build.sh), and what the API server refuses
refused there."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.onprem.ingress.plugins.filter.ingress_objects import ingress_objects

from tests.support.controlplane import ControlPlane, kubectl
from tests.unit.test_filters_ingress import BASE, VARIANTS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway_controlplane(controlplane: ControlPlane) -> ControlPlane:
    """The test control plane, serving Gateway API."""
    version = re.search(r"^TRAEFIK_VERSION=(\S+)$", (REPO / "lab/ingress/versions.env").read_text(), re.M)
    assert version, "lab/ingress/versions.env names no TRAEFIK_VERSION"
    crds = REPO / ".cache/ingress" / f"traefik-{version.group(1)}" / "gateway-api"
    assert crds.is_dir(), f"{crds} is missing: make ingress-controller builds it"
    kubectl(controlplane.kubeconfig, "apply", "-f", str(crds))
    for crd in ("gatewayclasses", "gateways", "httproutes"):
        kubectl(controlplane.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
                f"crd/{crd}.gateway.networking.k8s.io")  # fmt: skip
    return controlplane


def dry_run(controlplane: ControlPlane, objects: list[dict[str, Any]], check: bool = True) -> str:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    return kubectl(
        controlplane.kubeconfig, "apply", "--dry-run=server", "-o", "name", "-f", "-", stdin=doc, check=check
    )


@pytest.mark.parametrize("option", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("controller", ["traefik", "ingress-nginx"], ids=["traefik", "nginx"])
def test_server_side_dry_run(
    gateway_controlplane: ControlPlane, namespace: str, controller: str, variant: str, option: bool
) -> None:
    """``option``: ingress-nginx's admission webhook, or Traefik's Gateway API."""
    settings = dict(
        BASE,
        controller=controller,
        gateway_api=option,
        variant=variant,
        namespace=namespace,
        admission_webhook=option,
        external_ips=["203.0.113.163"],
        lb_addresses=["203.0.113.168"],
        lb_pool="lab",
        publish_status_address="203.0.113.170",
        tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        class_name=f"nginx-{variant}",
    )
    objects = ingress_objects(settings)
    # the namespace exists already (the fixture's): everything else is only dry-run
    out = dry_run(gateway_controlplane, [o for o in objects if o["kind"] != "Namespace"])
    names = out.split()
    assert len(names) == len(objects) - 1, out
    workload = "daemonset.apps" if variant == "hostnetwork" else "deployment.apps"
    assert f"{workload}/{'traefik' if controller == 'traefik' else 'ingress-nginx-controller'}" in names
    if controller == "traefik" and option:
        assert "gateway.gateway.networking.k8s.io/ingress-nginx-controller" in names
