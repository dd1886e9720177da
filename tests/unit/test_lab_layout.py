"""The lab's layout is written in three places that must agree: lab/bin/lab (which creates the
hosts), inventories/lab (which site.yml reads) and the molecule scenario `site` (which runs on
them). And the small pure parts of the lab's tools behave as their callers assume."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def load_script(path: Path) -> ModuleType:
    name = path.name.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    loader.exec_module(module)
    return module


lab = load_script(REPO / "lab" / "bin" / "lab")
runner = load_script(REPO / "lab" / "nodes" / "pod-runner")


def inventory() -> dict[str, Any]:
    hosts = yaml.safe_load((REPO / "inventories/lab/hosts.yml").read_text())
    pools = yaml.safe_load((REPO / "inventories/lab/group_vars/all/pools.yml").read_text())
    return {"hosts": hosts, "pools": pools}


def test_inventory_names_the_nodes_the_lab_creates_at_their_addresses() -> None:
    speakers = inventory()["hosts"]["all"]["children"]["lb_speakers"]["hosts"]
    assert {n: v["lb_speaker_heartbeat_ip"] for n, v in speakers.items()} == {n: a for n, (a, _) in lab.NODES.items()}


def test_inventory_network_facts_match_the_lab_network() -> None:
    pools = inventory()["pools"]
    assert pools["lb_config_node_cidrs"] == [lab.SUBNET]
    assert set(pools["lb_config_node_addresses"]) == {lab.GATEWAY, lab.CLIENT_IP, *(a for a, _ in lab.NODES.values())}
    assert pools["lb_config_service_cidrs"] == [lab.SERVICE_CIDR]
    subnet = ipaddress.ip_network(lab.SUBNET)
    for pool in pools["lb_config_pools"]:
        for rng in pool["addresses"]:
            first, _, last = rng.partition("-")
            assert ipaddress.ip_address(first) in subnet and ipaddress.ip_address(last) in subnet, rng


def test_molecule_site_platforms_are_the_lab_hosts() -> None:
    scenario = yaml.safe_load((REPO / "extensions/molecule/site/molecule.yml").read_text())
    platforms = {p["name"]: p["address"] for p in scenario["platforms"]}
    assert platforms == {**{n: a for n, (a, _) in lab.NODES.items()}, lab.CLIENT: lab.CLIENT_IP}
    assert {p["network"]["subnet"] for p in scenario["platforms"]} == {lab.SUBNET}


def test_pod_cidrs_are_disjoint_inside_the_cluster_cidr() -> None:
    cluster = ipaddress.IPv4Network(lab.CLUSTER_CIDR)
    cidrs = [ipaddress.IPv4Network(c) for _, c in lab.NODES.values()]
    assert all(c.subnet_of(cluster) for c in cidrs)
    assert len({c.network_address for c in cidrs}) == len(cidrs)
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1 :])


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("nginx", "nginx"),
        ("nginx:latest", "nginx"),
        ("docker.io/library/nginx:1.27@sha256:0123", "nginx"),
        ("httpd", "httpd"),
        ("registry.example/mirror/httpd:2.4", "httpd"),
        ("busybox:1.28", "generic"),
        ("registry.k8s.io/ingress-nginx/controller:v1.15.1", "generic"),
        ("nginx-unprivileged", "generic"),
        ("docker.io/library/traefik:v3.7.13", "traefik"),
        ("traefik", "traefik"),
    ],
)
def test_pod_runner_picks_the_server_by_repository_name(image: str, kind: str) -> None:
    assert runner.image_kind(image) == kind


def test_pod_runner_runs_a_traefik_container_as_its_pod_with_the_api_env(tmp_path: Path) -> None:
    """The controller's container: the lab's Traefik with the container's args, the Pod's
    ServiceAccount directory bind-mounted where in-cluster clients read it, the API's env."""
    pod = {
        "metadata": {"name": "traefik-1", "namespace": "ingress", "uid": "u2"},
        "spec": {"nodeName": "onprem-lab-n2", "containers": [
            {"name": "traefik", "image": "traefik:v3.7", "args": ["--ping=true"], "ports": [{"containerPort": 8000}]},
        ]},
        "status": {"podIP": "10.244.2.9"},
    }  # fmt: skip
    sa = tmp_path / "sa"
    api_env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    (server,) = runner.servers_for(pod, tmp_path, {}, lambda: (sa, api_env))
    assert server.argv[-2:] == [runner.TRAEFIK, "--ping=true"]  # one process, not one per port
    assert f'mount --bind "{sa}" "{runner.SA_DIR}"' in server.argv[server.argv.index("-c") + 1]
    assert server.env is not None and server.env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_pod_runner_resolves_the_downward_api_fields_seed_004_uses() -> None:
    pod = {
        "metadata": {"name": "nginx-app-1", "namespace": "seed-004", "uid": "u1"},
        "spec": {},
        "status": {"podIP": "10.244.1.7", "hostIP": "203.0.113.162"},
    }
    container = {
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "value": "hi"},
        ]
    }
    env = runner.container_env(pod, container, "onprem-lab-n1")
    assert env["NODE_NAME"] == "onprem-lab-n1"
    assert env["POD_NAME"] == "nginx-app-1"
    assert env["GREETING"] == "hi"


def test_lab_processes_are_those_with_an_argument_inside_the_lab_dir(tmp_path: Path) -> None:
    labdir = tmp_path / "lab"
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]  # takes any further arguments
    inside = subprocess.Popen([*sleeper, f"--data-dir={labdir}/etcd"])
    beside = subprocess.Popen([*sleeper, f"{labdir}-other/x"])  # a sibling directory is not the lab's
    try:
        for proc in (inside, beside):  # until each has exec'd (its command line is there)
            for _ in range(200):
                if b"time.sleep" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                    break
                time.sleep(0.01)
        found = lab.lab_processes(lab.Lab(labdir))
        assert inside.pid in found
        assert beside.pid not in found
        # the shell that runs `lab down --dir DIR` names DIR too, but is not the lab's
        child = (
            "import importlib.machinery as m, json, os, pathlib, sys; "
            f"lab = m.SourceFileLoader('lab', {str(REPO / 'lab/bin/lab')!r}).load_module(); "
            "print(json.dumps([os.getppid(), lab.lab_processes(lab.Lab(pathlib.Path(sys.argv[1])))]))"
        )
        out = subprocess.run(
            ["sh", "-c", f'{sys.executable} -c "{child}" "$0"; true', str(labdir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        shell_pid, seen = json.loads(out.stdout)
        assert inside.pid in seen
        assert shell_pid not in seen
    finally:
        for proc in (inside, beside):
            proc.kill()
            proc.wait()
