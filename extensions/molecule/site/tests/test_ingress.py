"""The ingress role on the lab: both controllers, each exposure, converged in turn. Each has the
fields it needs, leaves nothing of the configuration before it, converges a second time with no
change, and is reached from the client on the addresses and ports it promises.

Traefik runs for real (the lab's pod runner runs the binary lab/ingress/build.sh builds, as the
Pod's ServiceAccount): requests for seed 000's hosts are routed to nginx and to httpd through
kube-proxy, an unknown host gets 404, a TLS Ingress is served with the certificate of its Secret
and its plain-HTTP requests are redirected. ingress-nginx's nginx cannot run here (its image's
Lua modules are in no registry this lab may use), so its Pod is a stand-in server that names the
Pod: its tests prove the path a client takes to the controller Pod, not nginx's routing. The
switch from ingress-nginx to Traefik keeps the Service and its address. The tests run in order
and end with the inventory's own configuration (Traefik, loadbalancer) converged again.
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
INGRESS = str(REPO / "playbooks" / "ingress.yml")
DEMO = str(REPO / "playbooks" / "demo.yml")
NODES = {"onprem-lab-n1": "203.0.113.162", "onprem-lab-n2": "203.0.113.163", "onprem-lab-n3": "203.0.113.164"}
CLIENT = "onprem-lab-client"
NS = "ingress-nginx"
NAME = "ingress-nginx-controller"
LAB_POOL_FIRST = "203.0.113.168"  # inventories/lab: pool `lab` is .168-.171
ENV = dict(os.environ, CONTAINERS_CONF=str(REPO / "lab/nodes/containers.conf"))

NGINX = {"ingress_controller": "ingress-nginx"}
# ingress-nginx in two exposures (its Pod is a stand-in here, and the exposure's objects are the
# ones Traefik's four below use, tested for both controllers against the API server in
# tests/integration/test_ingress_objects.py), then Traefik in all four.
CONFIGS: dict[str, dict[str, Any]] = {
    "nginx-hostnetwork": {**NGINX, "ingress_exposure": "hostnetwork"},
    "nginx-loadbalancer": {**NGINX},
    # the switch to Traefik: the same Service, the same address
    "traefik-loadbalancer-switch": {},
    "traefik-nodeport": {"ingress_exposure": "nodeport", "ingress_publish_status_address": "203.0.113.162"},
    "traefik-hostnetwork": {"ingress_exposure": "hostnetwork"},
    "traefik-externalips": {"ingress_exposure": "externalips", "ingress_external_ips": ["203.0.113.163"]},
    "traefik-loadbalancer": {},  # the inventory's own: Traefik behind an address pinned from pool `lab`
}
# Converged a second time to show it changes nothing (the inventory's own is by molecule's
# idempotence step): a Deployment behind a NodePort Service, and the DaemonSet.
AGAIN = ("traefik-nodeport", "traefik-hostnetwork")
DEMO_NS = "ingress-demo"
TLS_HOST = "tls.example.com"


def sh(*argv: str, check: bool = True, timeout: float = 60, input: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=timeout, check=False, input=input)
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


def ask(host: str, address: str, port: int, scheme: str = "http", *extra: str) -> tuple[int, str]:
    """(HTTP status, body) of GET scheme://host:port/ sent to ``address`` from the client."""
    out = sh("podman", "exec", CLIENT, "curl", "-s", "-m", "3", "-o", "/dev/stdout", "-w", "\n%{http_code}",
             "--resolve", f"{host}:{port}:{address}", *extra, f"{scheme}://{host}:{port}/", check=False)  # fmt: skip
    body, _, code = out.rpartition("\n")
    return (int(code) if code.isdigit() else 0), body


def parts(config: str) -> tuple[str, str]:
    """(controller, exposure) of a CONFIGS key."""
    controller, exposure = config.split("-")[:2]
    return ("traefik" if controller == "traefik" else "ingress-nginx"), exposure


def promised(variant: str, service: dict[str, Any] | None, controller: str) -> list[tuple[str, int, int]]:
    """(address, port, the controller's container port behind it) a client is promised."""
    own = {80: 80, 443: 443} if controller == "ingress-nginx" or variant == "hostnetwork" else {80: 8000, 443: 8443}
    if variant == "loadbalancer":
        assert service is not None
        vip = service["status"]["loadBalancer"]["ingress"][0]["ip"]
        return [(vip, 80, own[80]), (vip, 443, own[443])]
    if variant == "nodeport":
        return [(ip, node_port, own[port]) for ip in NODES.values() for node_port, port in ((30080, 80), (30443, 443))]
    if variant == "hostnetwork":
        return [(ip, port, port) for ip in NODES.values() for port in (80, 443)]
    return [("203.0.113.163", 80, own[80]), ("203.0.113.163", 443, own[443])]


@pytest.fixture(scope="module", autouse=True)
def back_to_the_inventory(module_playbook: Callable[..., Any], request: pytest.FixtureRequest) -> Iterator[None]:
    """The tests end on the inventory's own settings; after a failure, converge them again."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        run = module_playbook(INGRESS, inventory=INVENTORY)
        assert run.rc == 0, run.report


@pytest.fixture(scope="module")
def demo(module_playbook: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Seed 000's apps and Ingresses (playbooks/demo.yml) in their own namespace, and a TLS
    Ingress for tls.example.com with a self-signed certificate made here. Yields the PEM."""
    run = module_playbook(DEMO, {"demo_namespace": DEMO_NS}, inventory=INVENTORY)
    assert run.rc == 0, run.report
    work = tmp_path_factory.mktemp("tls")
    key, cert = str(work / "key.pem"), str(work / "cert.pem")
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={TLS_HOST}",
       "-addext", f"subjectAltName=DNS:{TLS_HOST}", "-keyout", key, "-out", cert)  # fmt: skip
    kubectl(
        "-n", DEMO_NS, "create", "secret", "tls", "tls-demo", f"--cert={work / 'cert.pem'}", f"--key={work / 'key.pem'}"
    )
    kubectl("-n", DEMO_NS, "create", "ingress", "tls", "--class=nginx", f"--rule={TLS_HOST}/=nginx:80,tls=tls-demo")
    pem = (work / "cert.pem").read_text()
    sh("podman", "exec", "-i", CLIENT, "sh", "-c", "cat > /root/tls-demo.pem", input=pem)
    yield pem
    kubectl("delete", "namespace", DEMO_NS, "--wait=false")


def kubectl(*args: str) -> str:
    binary = Path(sh(str(REPO / "lab/bin/controlplane"), "bin-dir").strip()) / "kubectl"
    return sh(str(binary), f"--kubeconfig={KUBECONFIG}", *args)


def check_fields(controller: str, variant: str) -> dict[str, Any] | None:
    """The fields the configuration needs, and nothing another one owned. Returns its Service."""
    services, deployments, daemonsets = items("services"), items("deployments"), items("daemonsets")
    assert "ingress-nginx-controller-admission" not in services  # these configurations run without the webhook
    workload, other = ("traefik", "ingress-nginx-controller")[:: 1 if controller == "traefik" else -1]
    assert other not in deployments and other not in daemonsets  # the other controller is gone
    if variant == "hostnetwork":
        assert NAME not in services and workload not in deployments
        pod = daemonsets[workload]["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
        if controller == "ingress-nginx":
            assert "--report-node-internal-ip-address" in pod["containers"][0]["args"]
        assert daemonsets[workload]["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0
        return None
    assert workload not in daemonsets and workload in deployments
    args = deployments[workload]["spec"]["template"]["spec"]["containers"][0]["args"]
    flag = {"traefik": "--providers.kubernetesIngressNGINX.", "ingress-nginx": "--"}[controller]
    spec = services[NAME]["spec"]
    assert spec["selector"]["app.kubernetes.io/name"] == ("traefik" if controller == "traefik" else "ingress-nginx")
    if variant == "loadbalancer":
        assert spec["type"] == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local"
        assert f"{flag}{'publishService' if controller == 'traefik' else 'publish-service'}={NS}/{NAME}" in args
        # pinned with onprem.ingress.lb_address: the first address of pool `lab`, installed first
        assert services[NAME]["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == LAB_POOL_FIRST
        assert services[NAME]["status"]["loadBalancer"]["ingress"][0]["ip"] == LAB_POOL_FIRST
        return services[NAME]
    status = "publishStatusAddress" if controller == "traefik" else "publish-status-address"
    if variant == "nodeport":
        assert spec["type"] == "NodePort" and spec["externalTrafficPolicy"] == "Cluster"
        assert sorted(p["nodePort"] for p in spec["ports"]) == [30080, 30443]
        assert f"{flag}{status}=203.0.113.162" in args
    else:
        assert spec["type"] == "ClusterIP" and spec["externalIPs"] == ["203.0.113.163"]
        assert f"{flag}{status}=203.0.113.163" in args
    return services[NAME]


def test_check_mode_reports_a_switch_and_changes_nothing(playbook: Callable[..., Any], demo: str) -> None:
    """(It also makes the demo: before the webhook test, whose webhook the lab cannot answer.)"""
    run = playbook(INGRESS, CONFIGS["traefik-nodeport"], check=True, diff=True, inventory=INVENTORY)
    assert run.rc == 0, run.report
    applied = run.task_results("Apply the controller's objects")
    assert applied and applied[0]["changed"], run.report
    assert items("services")[NAME]["spec"]["type"] == "LoadBalancer"
    assert "traefik" in items("deployments") and "ingress-nginx-controller" not in items("deployments")


def test_hostnetwork_stops_on_another_listener_and_names_it(playbook: Callable[..., Any]) -> None:
    listener = subprocess.Popen(
        ["podman", "exec", "onprem-lab-n2", "python3", "-m", "http.server", "--bind", "127.0.0.1", "8080"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        for _ in range(50):
            if "8080" in sh("podman", "exec", "onprem-lab-n2", "ss", "-Hltn", "sport = :8080"):
                break
            time.sleep(0.1)
        run = playbook(INGRESS, CONFIGS["traefik-hostnetwork"], inventory=INVENTORY)
    finally:
        sh("podman", "exec", "onprem-lab-n2", "pkill", "-f", "http.server --bind 127.0.0.1 8080", check=False)
        listener.wait(10)
    assert run.rc != 0, run.report
    message = " ".join(run.failed_messages())
    assert "onprem-lab-n2 already has python3 (pid " in message and "listening on 127.0.0.1:8080" in message, message
    assert "ports 80, 443, 8080" in message, message
    assert "Traceback" not in run.output
    assert all(run.changed(n) == 0 for n in NODES), run.report
    assert not items("daemonsets") and "traefik" in items("deployments")


def test_webhook_waits_for_its_certificate_jobs_and_endpoint(playbook: Callable[..., Any]) -> None:
    """(The next test's first configuration, without the webhook, removes all of this.)"""
    run = playbook(INGRESS, {**NGINX, "ingress_nginx_admission_webhook": True}, inventory=INVENTORY)
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


def serves_the_demo(address: str, port: int, https: bool, pem: str) -> None:
    """Traefik routes by host to seed 000's nginx and httpd, 404s an unknown host, serves the
    TLS Ingress with its Secret's certificate and redirects its plain HTTP to HTTPS."""
    scheme = "https" if https else "http"
    insecure = ("-k",) if https else ()
    code, body = ask("nginx.example.com", address, port, scheme, *insecure)
    assert code == 200 and "Welcome to nginx!" in body, (
        f"{scheme}://{address}:{port} nginx.example.com -> {code} {body[:200]!r}"
    )
    code, body = ask("httpd.example.com", address, port, scheme, *insecure)
    assert code == 200 and "It works!" in body, (
        f"{scheme}://{address}:{port} httpd.example.com -> {code} {body[:200]!r}"
    )
    assert ask("unknown.example.com", address, port, scheme, *insecure)[0] == 404
    if https:  # verified against the certificate the test made: the Secret's, not Traefik's default
        code, body = ask(TLS_HOST, address, port, "https", "--cacert", "/root/tls-demo.pem")
        assert code == 200 and "Welcome to nginx!" in body, f"https://{TLS_HOST}:{port} via {address} -> {code}"
    else:  # ssl-redirect, on by default for an Ingress with TLS, as in ingress-nginx
        code, _ = ask(TLS_HOST, address, port)
        assert code == 308, f"http://{TLS_HOST}:{port} via {address} -> {code}"


def wait_until_served(address: str, port: int, timeout: float = 60) -> None:
    """Traefik reads new routes within a second or two: wait for the first answer."""
    deadline = time.monotonic() + timeout
    while ask("nginx.example.com", address, port)[0] != 200:
        assert time.monotonic() < deadline, f"nginx.example.com not served through {address}:{port} in {timeout:.0f} s"
        time.sleep(0.5)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_each_configuration_converges_serves_and_leaves_nothing_behind(
    config: str, playbook: Callable[..., Any], demo: str
) -> None:
    controller, variant = parts(config)
    before = items("services").get(NAME)
    run = playbook(INGRESS, CONFIGS[config], inventory=INVENTORY)
    assert run.rc == 0, run.report
    service = check_fields(controller, variant)
    # nothing of the webhook the earlier test turned on is left (the lab's configurations run without it)
    assert not items("jobs") and not items("validatingwebhookconfigurations", None)
    assert "ingress-nginx-admission" not in items("serviceaccounts")
    if config == "traefik-loadbalancer-switch":  # the same Service object: its address never moved
        assert before is not None and service is not None
        assert service["metadata"]["uid"] == before["metadata"]["uid"]
        assert service["status"]["loadBalancer"] == before["status"]["loadBalancer"]
    if config in AGAIN:
        again = playbook(INGRESS, CONFIGS[config], inventory=INVENTORY)
        assert again.rc == 0 and all(again.changed(n) == 0 for n in NODES), again.report
    for n, (address, port, container_port) in enumerate(promised(variant, service, controller)):
        if controller == "traefik":
            if port in (80, 30080):
                wait_until_served(address, port)
            if n < 2:  # the first address: every route, both ports
                serves_the_demo(address, port, port in (443, 30443), demo)
            else:  # each other address and port: routed by host
                https = ("https", "-k") if port in (443, 30443) else ()
                assert ask("nginx.example.com", address, port, *https)[0] == 200, f"{address}:{port}"
            continue
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
    kubectl("delete", "namespace", "demo-play", "--wait=false")
