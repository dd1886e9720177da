"""lb_pool_info and lb_address give the answer the running controller gives, on one cluster with
overlapping pools (name order and age order disagree), a pool the controller ignores, and two
load-balancer classes whose controllers hand out the same ranges."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.support.ansible import run_module
from tests.support.controlplane import ControlPlane, LbController, kubectl, wait_for
from tests.support.services import ensure_namespace, ips, lb_service, wait_event, wait_ips

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "metallb.io", "v1beta1", "ipaddresspools"
CLASSES = {"a": "onprem.test/agree-a", "b": "onprem.test/agree-b"}


def pool_statuses(custom: client.CustomObjectsApi, ns: str) -> dict[str, dict[str, Any]]:
    """name -> (Ready status and reason, the counts) as the controller wrote them."""
    out = {}
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
        status = item.get("status") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        out[item["metadata"]["name"]] = {
            "ready": ready.get("status") == "True",
            "reason": ready.get("reason"),
            "used": status.get("assignedIPv4"),
            "free": status.get("availableIPv4"),
        }
    return out


def module_view(kubeconfig: str, ns: str, lb_class: str) -> dict[str, dict[str, Any]]:
    result = run_module("lb_pool_info", {"kubeconfig": kubeconfig, "pool_namespace": ns, "lb_class": lb_class})
    assert not result.get("failed"), result
    assert result["unassigned"] == [], result["unassigned"]
    return {
        p["name"]: {"ready": p["ready"], "reason": p["reason"], "used": p["used"]["IPv4"], "free": p["free"]["IPv4"]}
        for p in result["pools"]
    } | {"_holders": {p["name"]: p["holders"] for p in result["pools"]}}


def test_modules_and_controller_agree(
    controlplane: ControlPlane, lb_controller: Callable[..., LbController], namespace: str
) -> None:
    core = client.CoreV1Api(controlplane.api_client())
    custom = client.CustomObjectsApi(core.api_client)
    kc = str(controlplane.kubeconfig)
    pool_ns = {k: f"agree-{k}" for k in CLASSES}

    def pool(ns: str, name: str, addresses: list[str], **spec: Any) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "IPAddressPool", "metadata": {"name": name},
                "spec": {"addresses": addresses, **spec}}  # fmt: skip
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    for k in CLASSES:
        ensure_namespace(core, pool_ns[k])
        # the older pool sorts last by name: reading pools in name order would let the newer one win
        pool(pool_ns[k], "zz-older", ["10.251.0.0/29"])
    time.sleep(1.2)  # creationTimestamp has one-second resolution
    for k in CLASSES:
        pool(pool_ns[k], "aa-newer", ["10.251.0.4/30", "10.251.0.16/30"])  # overlaps zz-older: ignored
        pool(pool_ns[k], "spare", ["10.251.1.0/30"], autoAssign=False)
    # a pool the API accepts and the controller refuses: an In selector without values
    bad_selector = {"namespaceSelectors": [{"matchExpressions": [{"key": "team", "operator": "In", "values": []}]}]}
    pool(pool_ns["a"], "bad", ["10.251.2.0/30"], serviceAllocation=bad_selector)
    try:
        for k, cls in CLASSES.items():
            lb_controller("--namespace", pool_ns[k], "--lb-class", cls, "--lease-name", f"agree-{k}")
        # Before any Service: lb_address predicts what the controller then gives.
        predicted = run_module("lb_address", {"kubeconfig": kc, "pool_namespace": pool_ns["a"],
                                              "lb_class": CLASSES["a"], "service": f"{namespace}/a0"})  # fmt: skip
        assert not predicted.get("failed"), predicted
        # both controllers hand out the same range: b's Services hold the same addresses as a's
        for k, cls in CLASSES.items():
            for i in range(3):
                core.create_namespaced_service(namespace, lb_service(f"{k}{i}", cls))
        spare = {"metallb.io/address-pool": "spare"}
        core.create_namespaced_service(namespace, lb_service("a-spare", CLASSES["a"], annotations=spare))
        core.create_namespaced_service(namespace, lb_service("plain"))  # no class: neither controller's
        held = {f"{k}{i}": wait_ips(core, namespace, f"{k}{i}") for k in CLASSES for i in range(3)}
        assert predicted["addresses"] == held["a0"] == ["10.251.0.0"]
        assert held["a0"] == held["b0"]  # the two classes overlap: only lb_class tells them apart
        assert wait_ips(core, namespace, "a-spare") == ["10.251.1.0"]

        # The pools' status, as the controller of each class writes it, is what lb_pool_info says.
        for k, cls in CLASSES.items():
            want_used = {"zz-older": 3, "spare": 1 if k == "a" else 0}

            def settled(k: str = k, want: dict[str, int] = want_used) -> dict[str, dict[str, Any]] | None:
                seen = pool_statuses(custom, pool_ns[k])
                return seen if all(seen.get(n, {}).get("used") == u for n, u in want.items()) else None

            controller_view = wait_for(f"pool status of class {k}", settled, 30)
            view = module_view(kc, pool_ns[k], cls)
            holders = view.pop("_holders")
            assert view == controller_view, (k, view, controller_view)
            held_by_class = {ip: [f"{namespace}/{n}"] for n, v in held.items() if n.startswith(k) for ip in v}
            assert holders["zz-older"] == held_by_class
        assert module_view(kc, pool_ns["a"], CLASSES["a"])["aa-newer"] == {
            "ready": False, "reason": "Overlap", "used": 0, "free": 0}  # fmt: skip
        assert pool_statuses(custom, pool_ns["a"])["bad"]["reason"] == "InvalidAddresses"

        # The next address, and a request for the ignored pool: same answer from both.
        nxt = run_module("lb_address", {"kubeconfig": kc, "pool_namespace": pool_ns["a"],
                                        "lb_class": CLASSES["a"], "service": f"{namespace}/a3"})  # fmt: skip
        core.create_namespaced_service(namespace, lb_service("a3", CLASSES["a"]))
        assert nxt["addresses"] == wait_ips(core, namespace, "a3") == ["10.251.0.3"]
        ignored = run_module("lb_address", {"kubeconfig": kc, "pool_namespace": pool_ns["a"], "pool": "aa-newer",
                                            "lb_class": CLASSES["a"], "service": f"{namespace}/a4"})  # fmt: skip
        core.create_namespaced_service(
            namespace, lb_service("a4", CLASSES["a"], annotations={"metallb.io/address-pool": "aa-newer"})
        )
        event = wait_event(core, namespace, "a4", "AllocationFailed", "exists but is ignored")
        assert ignored["failed"] and ignored["msg"] in event, (ignored["msg"], event)
        # A Service of another class is not lb_address's to answer for with this class.
        other = run_module("lb_address", {"kubeconfig": kc, "pool_namespace": pool_ns["a"],
                                          "lb_class": CLASSES["a"], "service": f"{namespace}/b0"})  # fmt: skip
        assert other["failed"] and "has loadBalancerClass 'onprem.test/agree-b'" in other["msg"], other
        # a ClusterIP Service is answered for as it will be once it is a LoadBalancer of this class
        core.create_namespaced_service(namespace, {"metadata": {"name": "later"}, "spec": {"ports": [{"port": 80}]}})
        later = run_module("lb_address", {"kubeconfig": kc, "pool_namespace": pool_ns["a"],
                                          "lb_class": CLASSES["a"], "service": f"{namespace}/later"})  # fmt: skip
        assert not later.get("failed"), later.get("msg")
        assert later["addresses"] == ["10.251.0.4"] and not later["held"], later
        assert ips(core, namespace, "plain") == []
    finally:
        for ns in pool_ns.values():
            kubectl(controlplane.kubeconfig, "delete", "ipaddresspools", "--all", "-n", ns, "--ignore-not-found")
