"""Services and Events through the kubernetes client: what the controller tests and the
module-agreement test read and create."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.controlplane import wait_for


def ips(core: client.CoreV1Api, ns: str, name: str) -> list[str]:
    svc = core.read_namespaced_service(name, ns)
    return [i.ip for i in (svc.status.load_balancer.ingress or [])]


def wait_ips(core: client.CoreV1Api, ns: str, name: str, timeout: float = 20) -> list[str]:
    return wait_for(f"an address on {ns}/{name}", lambda: ips(core, ns, name), timeout)


def events(core: client.CoreV1Api, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return [(e.reason, e.message, e.reporting_instance or "") for e in items]


def wait_event(core: client.CoreV1Api, ns: str, name: str, reason: str, text: str = "") -> str:
    def found() -> str:
        return next((m for r, m, _who in events(core, ns, name) if r == reason and text in m), "")

    return wait_for(f"{reason} event on {ns}/{name}", found, 20)


def ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def lb_service(name: str, lb_class: str | None = None, port: int = 80, **extra: Any) -> dict[str, Any]:
    annotations = extra.pop("annotations", {})
    spec: dict[str, Any] = {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}], **extra}
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    return {"metadata": {"name": name, "annotations": annotations}, "spec": spec}
