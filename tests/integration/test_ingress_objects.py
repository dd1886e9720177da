"""Every object the ingress_nginx role builds, for every variant and webhook setting, accepted by
a real kube-apiserver (server-side dry-run), and what the API server refuses refused there."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible_collections.onprem.ingress.plugins.filter.ingress_objects import ingress_objects

from tests.support.controlplane import ControlPlane, kubectl
from tests.unit.test_filters_ingress import BASE, VARIANTS


def dry_run(controlplane: ControlPlane, objects: list[dict[str, Any]], check: bool = True) -> str:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    return kubectl(
        controlplane.kubeconfig, "apply", "--dry-run=server", "-o", "name", "-f", "-", stdin=doc, check=check
    )


@pytest.mark.parametrize("webhook", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_server_side_dry_run(controlplane: ControlPlane, namespace: str, variant: str, webhook: bool) -> None:
    settings = dict(
        BASE,
        variant=variant,
        namespace=namespace,
        admission_webhook=webhook,
        external_ips=["203.0.113.163"],
        lb_addresses=["203.0.113.168"],
        lb_pool="lab",
        publish_status_address="203.0.113.170",
        tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        class_name=f"nginx-{variant}",
    )
    objects = ingress_objects(settings)
    # the namespace exists already (the fixture's): everything else is only dry-run
    out = dry_run(controlplane, [o for o in objects if o["kind"] != "Namespace"])
    names = out.split()
    assert len(names) == len(objects) - 1, out
    workload = "daemonset.apps" if variant == "hostnetwork" else "deployment.apps"
    assert f"{workload}/ingress-nginx-controller" in names
