"""onprem-lb controller against the real control plane: the seed articles, the IPAM rules
through real Services, restart without moving addresses, API server restart, two controllers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kconfig
from kubernetes.client.rest import ApiException

from tests.support.controlplane import (
    SRC,
    ControlPlane,
    LbController,
    kubectl,
    run_controlplane,
    wait_established,
    wait_for,
)
from tests.support.services import ensure_namespace, events, ips, lb_service, wait_event, wait_ips

pytestmark = pytest.mark.integration

SEEDS = Path(__file__).parent / "seeds"
Start = Callable[..., LbController]


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def manifests(controlplane: ControlPlane) -> Iterator[Callable[[str], None]]:
    """apply(text): kubectl apply now, kubectl delete after the test (seed tests share names)."""
    applied: list[str] = []

    def apply(text: str) -> None:
        kubectl(controlplane.kubeconfig, "apply", "-f", "-", stdin=text)
        applied.append(text)

    yield apply
    for text in reversed(applied):
        kubectl(controlplane.kubeconfig, "delete", "--ignore-not-found", "--wait", "-f", "-", stdin=text)


# -- the seed articles, unchanged --------------------------------------------------------------------


def test_seed_000_legacy_configmap_then_kubectl_expose(
    controlplane: ControlPlane, core: client.CoreV1Api, lb_controller: Start, manifests: Callable[[str], None]
) -> None:
    """Seed 000/002: the MetalLB 0.12 ConfigMap, converted; `kubectl expose` gets ip-start."""
    ensure_namespace(core, "metallb-system")
    config_map = (
        (SEEDS / "seed000-config-pool.yaml").read_text().replace("{ip-start}-{ip-stop}", "192.0.2.240-192.0.2.250")
    )
    converted = subprocess.run(
        [sys.executable, "-m", "onprem_lb", "convert-configmap", "-"],
        input=config_map,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "kind: IPAddressPool" in converted and "kind: L2Advertisement" in converted
    manifests(converted)
    lb_controller("--lease-name", "seed000")
    kc = controlplane.kubeconfig
    kubectl(kc, "create", "deploy", "nginx", "--image", "nginx")
    try:
        kubectl(kc, "expose", "deploy", "nginx", "--port", "80", "--type", "LoadBalancer")
        wait_ips(core, "default", "nginx")
        external = kubectl(kc, "get", "svc", "nginx", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
        assert external == "192.0.2.240"
        svc = core.read_namespaced_service("nginx", "default")
        assert svc.metadata.annotations["metallb.io/ip-allocated-from-pool"] == "default"
        assert wait_event(core, "default", "nginx", "IPAllocated") == 'Assigned IP ["192.0.2.240"] from pool default'
    finally:
        kubectl(kc, "delete", "svc,deploy", "nginx", "--ignore-not-found")


def test_seed_001_single_address_pool_and_a_pending_second_service(
    controlplane: ControlPlane, core: client.CoreV1Api, lb_controller: Start, manifests: Callable[[str], None]
) -> None:
    """Seed 001: MetalLB in namespace `metallb`, one address; a second Service stays pending."""
    for ns in ("metallb", "ingress-nginx"):
        ensure_namespace(core, ns)
    manifests((SEEDS / "seed001-pool.yaml").read_text())
    lb_controller("--namespace", "metallb", "--lease-name", "seed001")
    manifests((SEEDS / "seed001-service.yaml").read_text())
    assert wait_ips(core, "ingress-nginx", "ingress-nginx-controller") == ["192.168.111.11"]
    listing = kubectl(controlplane.kubeconfig, "get", "svc", "-n", "ingress-nginx")
    assert (
        "ingress-nginx-controller   LoadBalancer   10.102.87.119   192.168.111.11   80:30384/TCP,443:32623/TCP"
        in listing
    )

    core.create_namespaced_service("ingress-nginx", lb_service("second"))
    try:
        message = wait_event(core, "ingress-nginx", "second", "AllocationFailed")
        assert message.startswith(
            "PoolExhausted: no free IPv4 address for service ingress-nginx/second in pool(s) main-pool"
        )
        assert ips(core, "ingress-nginx", "second") == []
        pools = wait_for(
            "pool status",
            lambda: (
                "1           0" in kubectl(controlplane.kubeconfig, "get", "ipaddresspools", "-n", "metallb") and True
            ),
        )
        assert pools
        l2 = kubectl(controlplane.kubeconfig, "get", "l2advertisements", "-n", "metallb", "-o", "json")
        assert json.loads(l2)["items"][0]["status"]["conditions"][0]["status"] == "True"
    finally:
        core.delete_namespaced_service("second", "ingress-nginx")


def test_seed_003_ingress_nginx_gets_the_first_pool_address(
    core: client.CoreV1Api, lb_controller: Start, manifests: Callable[[str], None]
) -> None:
    for ns in ("metallb-system", "ingress-nginx"):
        ensure_namespace(core, ns)
    manifests((SEEDS / "seed003-ipaddresspool.yaml").read_text())
    lb_controller("--lease-name", "seed003")
    manifests((SEEDS / "seed001-service.yaml").read_text())  # ingress-nginx's own LoadBalancer Service
    assert wait_ips(core, "ingress-nginx", "ingress-nginx-controller") == ["203.0.113.10"]


def test_seed_004_universe_pool_annotation(
    core: client.CoreV1Api, lb_controller: Start, manifests: Callable[[str], None]
) -> None:
    ensure_namespace(core, "metallb-system")
    manifests((SEEDS / "seed004-pool.yaml").read_text())
    lb_controller("--lease-name", "seed004")
    manifests((SEEDS / "seed004-service.yaml").read_text())
    assert wait_ips(core, "default", "nginx") == ["10.252.252.100"]


# -- the IPAM rules, through real Services -----------------------------------------------------------


def test_allocation_rules_through_services(
    controlplane: ControlPlane, core: client.CoreV1Api, lb_controller: Start, namespace: str
) -> None:
    cls, pool_ns, kc = "onprem.test/rules", "lbrules", controlplane.kubeconfig
    ensure_namespace(core, pool_ns)
    custom = client.CustomObjectsApi(core.api_client)

    def pool(name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": name}, "spec": spec}
        custom.create_namespaced_custom_object("metallb.io", "v1beta1", pool_ns, "ipaddresspools", body)

    pool("main", {"addresses": ["192.0.2.0/29", "2001:db8:1::/125"], "avoidBuggyIPs": True})
    pool("reserved", {"addresses": ["198.51.100.0/30"], "autoAssign": False})
    ctl = lb_controller("--namespace", pool_ns, "--lb-class", cls, "--lease-name", "rules")

    def svc(name: str, **kw: Any) -> None:
        core.create_namespaced_service(namespace, lb_service(name, cls, **kw))

    try:
        svc("a")
        assert wait_ips(core, namespace, "a") == ["192.0.2.1"]  # .0 skipped: avoidBuggyIPs
        svc("b", annotations={"metallb.io/loadBalancerIPs": "192.0.2.5"})
        assert wait_ips(core, namespace, "b") == ["192.0.2.5"]
        svc("c", loadBalancerIP="198.51.100.2")
        assert wait_ips(core, namespace, "c") == ["198.51.100.2"]
        svc("d", annotations={"metallb.io/address-pool": "reserved"})
        assert wait_ips(core, namespace, "d") == ["198.51.100.0"]
        # Sharing: same key, different ports share; a clashing port is refused with a reason.
        share = {"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "192.0.2.6"}
        svc("s1", port=80, annotations=share)
        svc("s2", port=443, annotations=share)
        assert wait_ips(core, namespace, "s1") == wait_ips(core, namespace, "s2") == ["192.0.2.6"]
        svc("s3", port=80, annotations=share)
        assert "AddressInUse" in wait_event(core, namespace, "s3", "AllocationFailed")
        # Dual-stack.
        svc("e", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"])
        assert wait_ips(core, namespace, "e") == ["192.0.2.2", "2001:db8:1::"]
        # A request that contradicts the Service is an Event, not a crash.
        svc("f", annotations={"metallb.io/loadBalancerIPs": "2001:db8:1::5"})
        assert "is IPv6 but the service's ipFamilies are IPv4" in wait_event(core, namespace, "f", "AllocationFailed")
        # Release on delete: the address is free again (lowest first).
        core.delete_namespaced_service("a", namespace)
        svc("g")
        assert wait_ips(core, namespace, "g") == ["192.0.2.1"]
        # Type change: released, status and annotation cleared.
        core.patch_namespaced_service("d", namespace, {"spec": {"type": "ClusterIP", "loadBalancerClass": None}})
        assert "198.51.100.0" in wait_event(core, namespace, "d", "IPReleased")
        wait_for("d's status cleared", lambda: ips(core, namespace, "d") == [])
        annotations = core.read_namespaced_service("d", namespace).metadata.annotations or {}
        assert "metallb.io/ip-allocated-from-pool" not in annotations
        # Pool status: counts per family.
        # (the status is written after the allocations: wait for the counts, not for any status)
        want = {"assignedIPv4": 4, "availableIPv4": 3, "assignedIPv6": 1}  # .1 .2 .5 .6 of 7; e's v6

        def main_counts() -> dict[str, Any]:
            pool = custom.get_namespaced_custom_object("metallb.io", "v1beta1", pool_ns, "ipaddresspools", "main")
            return {k: pool.get("status", {}).get(k) for k in want}

        wait_for(f"main pool status {want}", lambda: main_counts() == want)
        # The pool shrinks under g: it is allocated again from what is left.
        custom.patch_namespaced_custom_object(
            "metallb.io", "v1beta1", pool_ns, "ipaddresspools", "main",
            {"spec": {"addresses": ["192.0.2.16/29", "2001:db8:1::/125"]}},
        )  # fmt: skip
        wait_for("g moved into the new range", lambda: ips(core, namespace, "g") == ["192.0.2.17"])
        assert "NotInAnyPool" in wait_event(core, namespace, "s1", "AllocationFailed")
        # Cross-object problems: reported on status and as Events, never a crash.
        pool("overlap", {"addresses": ["192.0.2.20/31"]})
        custom.create_namespaced_custom_object(
            "metallb.io", "v1beta1", pool_ns, "l2advertisements",
            {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "l2"},
             "spec": {"ipAddressPools": ["nope"]}},
        )  # fmt: skip

        def ready(plural: str, name: str) -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object("metallb.io", "v1beta1", pool_ns, plural, name)
            return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})

        cond = wait_for("overlap condition", lambda: ready("ipaddresspools", "overlap"))
        assert cond["status"] == "False" and cond["reason"] == "Overlap", cond
        assert "older pool 'main'" in cond["message"]
        cond = wait_for("l2 condition", lambda: ready("l2advertisements", "l2"))
        assert cond["reason"] == "UnknownPool" and "'nope'" in cond["message"]
        assert "older pool 'main'" in wait_event(core, pool_ns, "overlap", "Overlap")
        # A Service asking for the ignored pool is told why it is ignored, not that it is missing.
        svc("h", annotations={"metallb.io/address-pool": "overlap"})
        assert "exists but is ignored: addresses 192.0.2.20/31" in wait_event(core, namespace, "h", "AllocationFailed")
        # A CIDR with host bits set is used as its network (as MetalLB does), with a Warning.
        pool("host-bits", {"addresses": ["198.18.0.9/30"]})
        cond = wait_for("host-bits condition", lambda: ready("ipaddresspools", "host-bits"))
        assert cond["status"] == "True" and cond["reason"] == "HostBitsIgnored", cond
        assert "read as its network 198.18.0.8/30" in wait_event(core, pool_ns, "host-bits", "HostBitsIgnored")
        assert ctl.proc.poll() is None
        assert "Traceback" not in ctl.log()
    finally:
        kubectl(kc, "delete", "ipaddresspools,l2advertisements", "--all", "-n", pool_ns, "--ignore-not-found")


# -- restart, API server restart, two controllers -----------------------------------------------------


def _create_services(core: client.CoreV1Api, ns: str, names: list[str], lb_class: str) -> None:
    for name in names:
        for _attempt in range(60):  # bounded: rides out an API server restart
            try:
                core.create_namespaced_service(ns, lb_service(name, lb_class))
                break
            except ApiException as exc:
                if exc.status == 409:
                    break
                time.sleep(0.5)
            except Exception:
                time.sleep(0.5)
        else:
            raise AssertionError(f"could not create service {name} in 60 attempts")


def _addresses(core: client.CoreV1Api, ns: str) -> dict[str, list[str]]:
    items = core.list_namespaced_service(ns).items
    return {s.metadata.name: [i.ip for i in (s.status.load_balancer.ingress or [])] for s in items}


def _all_allocated(core: client.CoreV1Api, ns: str, count: int) -> dict[str, list[str]] | None:
    current = _addresses(core, ns)
    return current if len(current) == count and all(current.values()) else None


def _one_pool(custom: client.CustomObjectsApi, ns: str, cidr: str) -> None:
    body = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "bulk"},
            "spec": {"addresses": [cidr]}}  # fmt: skip
    custom.create_namespaced_custom_object("metallb.io", "v1beta1", ns, "ipaddresspools", body)


def test_restart_with_1000_services_moves_nothing(core: client.CoreV1Api, lb_controller: Start, namespace: str) -> None:
    cls, pool_ns = "onprem.test/restart", "lbrestart"
    ensure_namespace(core, pool_ns)
    custom = client.CustomObjectsApi(core.api_client)
    _one_pool(custom, pool_ns, "10.250.0.0/20")
    args = ("--namespace", pool_ns, "--lb-class", cls, "--lease-name", "restart")
    first = lb_controller(*args)
    _create_services(core, namespace, [f"s{i:04d}" for i in range(1000)], cls)
    before = wait_for(
        "1000 allocations",
        lambda: _all_allocated(core, namespace, 1000),
        120,
        1,
    )
    assert first.stop() == 0
    second = lb_controller(*args)
    second.wait_log("1000 addresses kept")
    second.wait_log("caught up: ")  # said once the queue is empty and no write is in flight
    time.sleep(3)  # every Service has been reconciled by now (a no-op each)
    after = _addresses(core, namespace)
    moved = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert moved == {}
    assert "assigned " not in second.log()
    flat = [ip for v in after.values() for ip in v]
    assert len(flat) == len(set(flat)) == 1000
    custom.delete_namespaced_custom_object("metallb.io", "v1beta1", pool_ns, "ipaddresspools", "bulk")


def _allocators(core: client.CoreV1Api, ns: str, names: list[str]) -> set[str]:
    """The controller instances that reported IPAllocated on these Services, once every one has the Event.

    The Event is posted after the status write, not with it: waiting for the addresses is not enough."""

    def found() -> set[str] | None:
        each = [{inst for r, _m, inst in events(core, ns, name) if r == "IPAllocated"} for name in names]
        return set().union(*each) if all(each) else None

    return wait_for(f"IPAllocated events on {len(names)} Services", found, 20)


def test_two_controllers_only_the_lease_holder_writes(
    core: client.CoreV1Api, lb_controller: Start, namespace: str
) -> None:
    cls, pool_ns = "onprem.test/ha", "lbha"
    ensure_namespace(core, pool_ns)
    custom = client.CustomObjectsApi(core.api_client)
    _one_pool(custom, pool_ns, "198.51.100.64/26")
    args = ("--namespace", pool_ns, "--lb-class", cls, "--lease-name", "ha")
    a = lb_controller(*args, "--identity", "ctl-a")
    a.wait_log("became leader")
    b = lb_controller(*args, "--identity", "ctl-b")
    _create_services(core, namespace, [f"x{i}" for i in range(20)], cls)
    before = wait_for("20 allocations", lambda: _all_allocated(core, namespace, 20))
    assert _allocators(core, namespace, [f"x{i}" for i in range(20)]) == {"ctl-a"}
    assert "became leader" not in b.log() and "assigned " not in b.log()
    a.stop(signal.SIGKILL)  # no clean release: the standby must wait out the lease
    _create_services(core, namespace, [f"y{i}" for i in range(5)], cls)
    b.wait_log("became leader", timeout=20)
    after = wait_for("25 allocations", lambda: _all_allocated(core, namespace, 25))
    assert {k: after[k] for k in before} == before
    flat = [ip for v in after.values() for ip in v]
    assert len(flat) == len(set(flat)) == 25
    assert _allocators(core, namespace, [f"y{i}" for i in range(5)]) == {"ctl-b"}
    custom.delete_namespaced_custom_object("metallb.io", "v1beta1", pool_ns, "ipaddresspools", "bulk")


def test_api_server_restart_mid_run_loses_and_duplicates_nothing(lb_controller: Start, tmp_path: Path) -> None:
    directory = tmp_path / "cp"
    up = run_controlplane("up", "--dir", str(directory))
    assert up.returncode == 0, up.stderr
    kc = directory / "admin.kubeconfig"
    try:
        api = kconfig.new_client_from_config(config_file=str(kc))
        kubectl(kc, "apply", "-f", str(SRC.parent / "roles" / "lb_controller" / "files" / "crds"))
        wait_established(api, "ipaddresspools.metallb.io")
        core = client.CoreV1Api(api)
        ensure_namespace(core, "metallb-system")
        ensure_namespace(core, "apps")
        _one_pool(client.CustomObjectsApi(api), "metallb-system", "203.0.113.0/24")
        ctl = lb_controller("--lease-name", "restart-api", kubeconfig=kc)
        names = [f"r{i:03d}" for i in range(150)]
        creator = threading.Thread(target=_create_services, args=(core, "apps", names, None))
        creator.start()
        wait_for("some allocations", lambda: sum(1 for v in _addresses(core, "apps").values() if v) >= 40, 60)
        state = json.loads((directory / "state.json").read_text())
        os.kill(state["pids"]["kube-apiserver"], signal.SIGKILL)
        time.sleep(2)
        again = run_controlplane("up", "--dir", str(directory))
        assert again.returncode == 0, again.stderr
        creator.join(180)
        try:
            final = wait_for(
                "150 allocations after the restart",
                lambda: _all_allocated(core, "apps", 150),
                90,
                0.5,
            )
        except AssertionError:
            current = _addresses(core, "apps")
            pending = sorted(k for k, v in current.items() if not v)
            raise AssertionError(
                f"{len(current)} Services, pending {pending[:20]}; controller alive: {ctl.proc.poll() is None}\n"
                f"controller log tail:\n{ctl.log()[-6000:]}"
            ) from None
        flat = [ip for v in final.values() for ip in v]
        assert len(flat) == len(set(flat)) == 150
        assert ctl.proc.poll() is None, ctl.log()
    finally:
        run_controlplane("down", "--dir", str(directory))


def test_refused_credentials_and_a_missing_namespace_are_explained_with_backoff(
    controlplane: ControlPlane, lb_controller: Callable[..., LbController], tmp_path: Path
) -> None:
    """Bad input, class 4: a 401 or a missing namespace is one line naming the cause and the fix,
    logged with growing gaps (the retry runs every 0.5 s here), never a raw Status(...)."""
    admin = yaml.safe_load(controlplane.kubeconfig.read_text())
    admin["users"] = [{"name": u["name"], "user": {"token": "not-a-valid-token"}} for u in admin["users"]]
    bad = tmp_path / "bad-token.kubeconfig"
    bad.write_text(yaml.safe_dump(admin))
    refused = lb_controller("--namespace", "metallb-system", kubeconfig=bad)
    missing = lb_controller("--namespace", "no-such-namespace", "--lease-name", "missing-ns")
    refused.wait_log("refused our credentials (HTTP 401 Unauthorized)")
    missing.wait_log("namespace no-such-namespace does not exist (HTTP 404); create it, or pass --namespace")
    time.sleep(6)  # 12 retries at 0.5 s: logged at 0, 2 and 6 s at most
    for ctl, text in ((refused, "HTTP 401"), (missing, "no-such-namespace does not exist")):
        log = ctl.log()
        assert "Status(" not in log and "Traceback" not in log
        assert 1 <= sum(text in line for line in log.splitlines()) <= 4, log
