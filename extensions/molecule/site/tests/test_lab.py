"""The lab serves real traffic: the seeds' demo answers curl from the client, and
externalTrafficPolicy behaves as on a real cluster.

Traffic in these tests goes from the client container through the address a speaker announces,
kube-proxy's NAT in the node that answered ARP, to nginx processes the pod runner started at the
Pods' addresses; what the web server logged is read back from the node that ran it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[4]))
sys.path.insert(0, str(REPO))
from tests.support.controlplane import wait_for  # noqa: E402
from tests.support.lab import web_deployment  # noqa: E402
from tests.support.podman_lab import (  # noqa: E402
    CLIENT,
    CLIENT_IP,
    LAB_DIR,
    NODES,
    arp_owner,
    kubectl,
    on,
    sh,
)

LAB = str(REPO / "lab" / "bin" / "lab")
NS = "etp"


def http(vip: str) -> str:
    return on(CLIENT, "curl", "-s", "-m", "2", f"http://{vip}/", check=False)


def apply(obj: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def web(name: str, node: str) -> dict[str, Any]:
    return web_deployment(name, NS, node, {"app": name})


def lb(name: str, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": policy,
            "selector": {"app": name},
            "ports": [{"port": 80, "targetPort": 80}],
        },
    }


def address_of(name: str) -> str:
    def assigned() -> str:
        return kubectl("-n", NS, "get", "svc", name, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}").strip()

    return str(wait_for(f"{name} gets an address", assigned))


def access_log(name: str) -> tuple[str, str]:
    """(node, nginx access log) of the one running Pod of Deployment `name`."""
    pods = json.loads(kubectl("-n", NS, "get", "pods", "-l", f"app={name}", "-o", "json"))["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]]
    assert len(running) == 1, [p["metadata"]["name"] for p in running]
    pod = running[0]
    node = pod["spec"]["nodeName"]
    log = on(node, "cat", f"/run/onprem-lab/pods/{pod['metadata']['uid']}/nginx-access.log", check=False)
    return node, log


def serving_node(name: str) -> str | None:
    """The node whose Pod of `name` logged a request last, or None while a rollout is under way."""
    try:
        node, log = access_log(name)
    except AssertionError:
        return None
    return node if log else None


@pytest.fixture
def namespace() -> Iterator[None]:
    kubectl("create", "namespace", NS)
    try:
        yield
    finally:
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=60s", check=False)


def test_the_seeds_demo_answers_from_the_client() -> None:
    try:
        out = sh(LAB, "demo", "--dir", str(LAB_DIR), timeout=300)
        print(out)
        lb_line = r"seed-000/nginx-lb +LoadBalancer 203\.0\.113\.\d+:80 +ARP answered by \S+ \(onprem-lab-n\d\)"
        assert re.search(lb_line, out)
        # seed 004 asks for the pool `production` by name
        assert re.search(r"seed-004/nginx +LoadBalancer 203\.0\.113\.17[234]:80", out)
        pods = set(re.findall(r"POD: (nginx-app-\S+)", out))
        assert len(pods) >= 2, f"30 requests reached {pods}"
        assert "Welcome to nginx!" in out and "It works!" in out
        # seed 000's hosts through the ingress address, routed by the real Traefik, and as HTTPRoutes
        for line in (
            "Host nginx.example.com: 200 Welcome to nginx!",
            "Host httpd.example.com: 200 It works!",
            "Host nginx.gw.example.com: 200 Welcome to nginx!, httproute/nginx",
            "Host httpd.gw.example.com: 200 It works!, httproute/httpd",
            "Host unknown.example.com: 404",
        ):
            assert line in out, line
    finally:
        for ns in ("seed-000", "seed-004"):
            kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s", check=False)


def test_lab_up_again_restarts_nothing() -> None:
    def fingerprint() -> dict[str, str]:
        ids = {h: sh("podman", "inspect", "-f", "{{.Id}}", h).strip() for h in [*NODES, CLIENT]}
        pids = {
            f"{n}/{u}": on(n, "systemctl", "show", "-P", "MainPID", u).strip()
            for n in NODES
            for u in ("onprem-lab-kube-proxy", "onprem-lab-pod-runner", "onprem-lb-speaker")
        }
        state = json.loads((LAB_DIR / "controlplane" / "state.json").read_text())["pids"]
        return {**ids, **pids, **{k: str(v) for k, v in state.items()}, "kwok": (LAB_DIR / "kwok/kwok.pid").read_text()}

    before = fingerprint()
    out = sh(LAB, "up", "--infra-only", "--dir", str(LAB_DIR), timeout=300)
    assert " started" not in out, out
    assert fingerprint() == before


@pytest.mark.usefixtures("namespace")
def test_local_policy_elects_the_endpoint_node_and_keeps_the_client_address() -> None:
    first, second = "onprem-lab-n2", "onprem-lab-n3"
    apply(web("local", first))
    apply(lb("local", "Local"))
    vip = address_of("local")
    wait_for(f"{vip} answers", lambda: "Welcome to nginx!" in http(vip))
    for _ in range(3):  # always the node with the endpoint, never another
        assert arp_owner(vip) == first
    node, log = access_log("local")
    assert node == first
    assert re.search(rf"^{re.escape(CLIENT_IP)} ", log, re.M), f"the client's own address in the log:\n{log}"
    assert not any(re.search(rf"^{re.escape(a)} ", log, re.M) for a in NODES.values()), log

    # the endpoint moves: so does the announcement
    apply(web("local", second))
    wait_for(f"{vip} announced by {second}", lambda: arp_owner(vip) == second, timeout=60)
    wait_for(
        f"{vip} answers from {second}", lambda: "Welcome to nginx!" in http(vip) and serving_node("local") == second
    )


@pytest.mark.usefixtures("namespace")
def test_cluster_policy_forwards_from_a_node_without_an_endpoint() -> None:
    # a Service is announced only while an endpoint serves (as MetalLB does): one first, then
    # it moves off the node that won the election, which keeps the address (Cluster)
    apply(web("cluster", "onprem-lab-n1"))
    apply(lb("cluster", "Cluster"))
    vip = address_of("cluster")
    owner = wait_for(f"{vip} announced", lambda: arp_owner(vip))
    elsewhere = next(n for n in NODES if n != owner)
    apply(web("cluster", elsewhere))
    wait_for(f"{vip} answers from {elsewhere}", lambda: "Welcome" in http(vip) and serving_node("cluster") == elsewhere)
    assert arp_owner(vip) == owner, "the announcement does not follow endpoints with Cluster"
    node, log = access_log("cluster")
    assert node == elsewhere != owner
    # forwarded by the owner, which masquerades: the server sees the owner's address
    assert re.search(rf"^{re.escape(NODES[owner])} ", log, re.M), f"{owner}'s address in the log:\n{log}"
    assert not re.search(rf"^{re.escape(CLIENT_IP)} ", log, re.M), log
