"""ingress-nginx (roles/ingress_nginx) on the lab: each variant converges, has the fields it
needs, leaves nothing of the variant before it, converges a second time with no change, and is
reached from the client on the ports it promises.

The lab has no container runtime: the pod runner answers on the controller's container ports
with a small HTTP server naming the Pod (plain HTTP on 443 too), so these tests prove the path
a client takes (pool address, node port, node address, external IP) to a controller Pod, not
nginx's routing. They run in order and end with the inventory's own variant converged again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[4]))
LAB_DIR = Path(os.environ.get("ONPREM_LAB_DIR", REPO / ".cache/molecule-lab/site"))
KUBECONFIG = LAB_DIR / "controlplane" / "admin.kubeconfig"
INVENTORY = str(REPO / "inventories" / "lab")
INGRESS = str(REPO / "playbooks" / "ingress_nginx.yml")
DEMO = str(REPO / "playbooks" / "demo.yml")
NODES = {"onprem-lab-n1": "203.0.113.162", "onprem-lab-n2": "203.0.113.163", "onprem-lab-n3": "203.0.113.164"}
CLIENT = "onprem-lab-client"
NS = "ingress-nginx"
NAME = "ingress-nginx-controller"
LAB_POOL_FIRST = "203.0.113.168"  # inventories/lab: pool `lab` is .168-.171
ENV = dict(os.environ, CONTAINERS_CONF=str(REPO / "lab/nodes/containers.conf"))

VARIANTS: dict[str, dict[str, Any]] = {
    "nodeport": {"ingress_nginx_variant": "nodeport", "ingress_nginx_publish_status_address": "203.0.113.162"},
    "hostnetwork": {"ingress_nginx_variant": "hostnetwork"},
    "externalips": {"ingress_nginx_variant": "externalips", "ingress_nginx_external_ips": ["203.0.113.163"]},
    "loadbalancer": {},  # the inventory's own: loadbalancer, address pinned from pool `lab`
}


def sh(*argv: str, check: bool = True, timeout: float = 60) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:6])}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def kubectl_json(*args: str) -> Any:
    kubectl = Path(sh(str(REPO / "lab/bin/controlplane"), "bin-dir").strip()) / "kubectl"
    return json.loads(sh(str(kubectl), f"--kubeconfig={KUBECONFIG}", *args, "-o", "json"))


def items(kind: str, namespace: str | None = NS) -> dict[str, dict[str, Any]]:
    scope = ["-n", namespace] if namespace else []
    got = kubectl_json("get", kind, *scope, "-l", "app.kubernetes.io/managed-by=onprem.ingress")
    return {o["metadata"]["name"]: o for o in got["items"]}


def curl(address: str, port: int) -> str:
    return sh("podman", "exec", CLIENT, "curl", "-s", "-m", "3", f"http://{address}:{port}/", check=False)


def promised(variant: str, service: dict[str, Any] | None) -> list[tuple[str, int, int]]:
    """(address, port, the controller's container port behind it) a client is promised."""
    if variant == "loadbalancer":
        assert service is not None
        vip = service["status"]["loadBalancer"]["ingress"][0]["ip"]
        return [(vip, 80, 80), (vip, 443, 443)]
    if variant == "nodeport":
        return [(ip, node_port, port) for ip in NODES.values() for node_port, port in ((30080, 80), (30443, 443))]
    if variant == "hostnetwork":
        return [(ip, port, port) for ip in NODES.values() for port in (80, 443)]
    return [("203.0.113.163", 80, 80), ("203.0.113.163", 443, 443)]


@pytest.fixture(scope="module", autouse=True)
def back_to_the_inventory(module_playbook: Callable[..., Any], request: pytest.FixtureRequest) -> Iterator[None]:
    """The tests end on the inventory's own settings; after a failure, converge them again."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        run = module_playbook(INGRESS, inventory=INVENTORY)
        assert run.rc == 0, run.report


def check_fields(variant: str) -> dict[str, Any] | None:
    """The fields the variant needs, and nothing another variant owned. Returns its Service."""
    services, deployments, daemonsets = items("services"), items("deployments"), items("daemonsets")
    assert "ingress-nginx-controller-admission" not in services  # these variants run without the webhook
    if variant == "hostnetwork":
        assert NAME not in services and NAME not in deployments
        pod = daemonsets[NAME]["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
        assert "--report-node-internal-ip-address" in pod["containers"][0]["args"]
        assert daemonsets[NAME]["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0
        return None
    assert NAME not in daemonsets and NAME in deployments
    args = deployments[NAME]["spec"]["template"]["spec"]["containers"][0]["args"]
    spec = services[NAME]["spec"]
    if variant == "loadbalancer":
        assert spec["type"] == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local"
        assert f"--publish-service={NS}/{NAME}" in args
        # pinned with onprem.ingress.lb_address: the first address of pool `lab`, installed first
        assert services[NAME]["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == LAB_POOL_FIRST
        assert services[NAME]["status"]["loadBalancer"]["ingress"][0]["ip"] == LAB_POOL_FIRST
    elif variant == "nodeport":
        assert spec["type"] == "NodePort" and spec["externalTrafficPolicy"] == "Cluster"
        assert sorted(p["nodePort"] for p in spec["ports"]) == [30080, 30443]
        assert "--publish-status-address=203.0.113.162" in args
    else:
        assert spec["type"] == "ClusterIP" and spec["externalIPs"] == ["203.0.113.163"]
        assert "--publish-status-address=203.0.113.163" in args
    return services[NAME]


def test_check_mode_reports_a_switch_and_changes_nothing(playbook: Callable[..., Any]) -> None:
    run = playbook(INGRESS, VARIANTS["nodeport"], check=True, diff=True, inventory=INVENTORY)
    assert run.rc == 0, run.report
    applied = run.task_results("Apply the controller's objects")
    assert applied and applied[0]["changed"], run.report
    assert items("services")[NAME]["spec"]["type"] == "LoadBalancer"


def test_hostnetwork_stops_on_another_listener_and_names_it(playbook: Callable[..., Any]) -> None:
    listener = subprocess.Popen(
        ["podman", "exec", "onprem-lab-n2", "python3", "-m", "http.server", "--bind", "127.0.0.1", "10254"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        for _ in range(50):
            if "10254" in sh("podman", "exec", "onprem-lab-n2", "ss", "-Hltn", "sport = :10254"):
                break
            time.sleep(0.1)
        run = playbook(INGRESS, VARIANTS["hostnetwork"], inventory=INVENTORY)
    finally:
        sh("podman", "exec", "onprem-lab-n2", "pkill", "-f", "http.server --bind 127.0.0.1 10254", check=False)
        listener.wait(10)
    assert run.rc != 0, run.report
    message = " ".join(run.failed_messages())
    assert "onprem-lab-n2 already has python3 (pid " in message and "listening on 127.0.0.1:10254" in message, message
    assert "Traceback" not in run.output
    assert all(run.changed(n) == 0 for n in NODES), run.report
    assert not items("daemonsets") and NAME in items("deployments")


def test_webhook_waits_for_its_certificate_jobs_and_endpoint(playbook: Callable[..., Any]) -> None:
    """(The next test's first switch, to nodeport without the webhook, removes all of this.)"""
    run = playbook(INGRESS, {"ingress_nginx_admission_webhook": True}, inventory=INVENTORY)
    assert run.rc == 0, run.report
    for task in ("Wait until the certificate Jobs are complete, the webhook's Secret and CA exist (at most 300 s)",
                 "Wait until the webhook's Service has a ready endpoint (at most 300 s)"):  # fmt: skip
        assert all(not r.get("skipped") for r in run.task_results(task)), task
    jobs = items("jobs")
    assert sorted(jobs) == ["ingress-nginx-admission-create", "ingress-nginx-admission-patch"]
    assert all(any(c["type"] == "Complete" for c in j["status"]["conditions"]) for j in jobs.values())
    hooks = items("validatingwebhookconfigurations", None)
    assert hooks["ingress-nginx-admission"]["webhooks"][0]["failurePolicy"] == "Fail"
    assert "ingress-nginx-controller-admission" in items("services")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_converges_serves_and_leaves_nothing_behind(variant: str, playbook: Callable[..., Any]) -> None:
    run = playbook(INGRESS, VARIANTS[variant], inventory=INVENTORY)
    assert run.rc == 0, run.report
    service = check_fields(variant)
    # nothing of the webhook the previous test turned on is left (the lab's variants run without it)
    assert not items("jobs") and not items("validatingwebhookconfigurations", None)
    assert "ingress-nginx-admission" not in items("serviceaccounts")
    if variant != "loadbalancer":  # the inventory's own: molecule's idempotence step ran it twice
        again = playbook(INGRESS, VARIANTS[variant], inventory=INVENTORY)
        assert again.rc == 0 and all(again.changed(n) == 0 for n in NODES), again.report
    for address, port, container_port in promised(variant, service):
        body = curl(address, port)
        assert body.startswith(f"{NS}/{NAME}-") and body.strip().endswith(f"controller:{container_port}"), (
            f"{address}:{port} -> {body!r}"
        )


def test_demo_playbook_creates_seed_000s_deployments_services_and_ingresses(playbook: Callable[..., Any]) -> None:
    run = playbook(DEMO, {"demo_namespace": "demo-play"}, inventory=INVENTORY)
    assert run.rc == 0, run.report
    ingresses = kubectl_json("get", "ingresses", "-n", "demo-play")["items"]
    rules = {i["spec"]["rules"][0]["host"]: i["spec"]["ingressClassName"] for i in ingresses}
    assert rules == {"nginx.example.com": "nginx", "httpd.example.com": "nginx"}
    services = {s["metadata"]["name"] for s in kubectl_json("get", "services", "-n", "demo-play")["items"]}
    assert services == {"nginx", "httpd"}
    sh(str(Path(sh(str(REPO / "lab/bin/controlplane"), "bin-dir").strip()) / "kubectl"), f"--kubeconfig={KUBECONFIG}",
       "delete", "namespace", "demo-play", "--wait=false")  # fmt: skip
