"""playbooks/site.yml with inventories/lab, checked by what the lab does, not by files.

The tests run in order against the converged lab: the daemons and their sandboxes, their
access rights in the real API server, a Service getting an address that exactly one node
answers ARP for, a rolling restart of the speakers that never leaves the address silent, and
bad inventories that stop before anything changes.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[4]))
LAB_DIR = Path(os.environ.get("ONPREM_LAB_DIR", REPO / ".cache/molecule-lab/site"))
KUBECONFIG = LAB_DIR / "controlplane" / "admin.kubeconfig"
SITE = str(REPO / "playbooks" / "site.yml")
SPEAKERS = str(REPO / "playbooks" / "lb_speaker.yml")
INVENTORY = str(REPO / "inventories" / "lab")
NODES = {"onprem-lab-n1": "203.0.113.162", "onprem-lab-n2": "203.0.113.163", "onprem-lab-n3": "203.0.113.164"}
CONTROLLERS = ["onprem-lab-n1"]
CLIENT = "onprem-lab-client"
POOL = (ipaddress.IPv4Address("203.0.113.168"), ipaddress.IPv4Address("203.0.113.174"))
NS = "metallb-system"
CAP_NET_RAW = 1 << 13
STOP_FILE = "/run/stop-probe"  # inside the client container


def podman(*args: str, check: bool = True, timeout: float = 60) -> str:
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "lab/nodes/containers.conf"))
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def on(node: str, *cmd: str, check: bool = True) -> str:
    return podman("exec", node, *cmd, check=check)


@pytest.fixture(scope="module")
def api() -> Iterator[client.ApiClient]:
    yield config.new_client_from_config(config_file=str(KUBECONFIG))


def unit_pid(node: str, unit: str) -> int:
    return int(on(node, "systemctl", "show", "-P", "MainPID", unit).strip())


def effective_caps(node: str, pid: int) -> int:
    status = on(node, "cat", f"/proc/{pid}/status")
    return int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]


def exposure(node: str, unit: str) -> float:
    out = on(node, "systemd-analyze", "security", "--no-pager", unit)
    return float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))  # type: ignore[union-attr]


# (node, unit, the only capabilities it may hold): the controller none, the speaker raw sockets
DAEMONS = [(n, "onprem-lb-controller", 0) for n in CONTROLLERS] + [(n, "onprem-lb-speaker", CAP_NET_RAW) for n in NODES]


@pytest.mark.parametrize(("name", "unit", "caps"), DAEMONS, ids=[f"{n}-{u}" for n, u, _ in DAEMONS])
def test_daemon_runs_unprivileged_and_sandboxed(name: str, unit: str, caps: int) -> None:
    assert on(name, "systemctl", "is-active", unit).strip() == "active"
    pid = unit_pid(name, unit)
    assert on(name, "ps", "-o", "user=", "-p", str(pid)).strip() == "onprem-lb"
    assert effective_caps(name, pid) == caps
    assert exposure(name, f"{unit}.service") <= 2.0


def test_check_mode_on_the_converged_lab_changes_nothing_and_says_so(playbook: Callable[..., Any]) -> None:
    pids = {n: unit_pid(n, "onprem-lb-speaker") for n in NODES}
    # (the whole of site.yml was just run twice by molecule's converge and idempotence steps)
    for stage in ("lb_controller.yml", "lb_config.yml"):
        run = playbook(str(REPO / "playbooks" / stage), check=True, diff=True, inventory=INVENTORY)
        assert run.rc == 0, run.report
        assert all(run.changed(n) == 0 for n in NODES), run.report
    # a change is reported with its diff, and nothing is restarted
    run = playbook(SPEAKERS, {"lb_speaker_log_level": "debug"}, check=True, diff=True, inventory=INVENTORY)
    assert run.rc == 0, run.report
    unit = run.task_results("Write the speaker's systemd unit")
    assert unit and all(r["changed"] for r in unit), run.report
    assert "--log-level debug" in json.dumps([r.get("diff") for r in unit]), run.report
    assert {n: unit_pid(n, "onprem-lb-speaker") for n in NODES} == pids
    assert all("--log-level info" in on(n, "cat", "/etc/systemd/system/onprem-lb-speaker.service") for n in NODES)


def node_kubeconfig(node: str, component: str) -> dict[str, Any]:
    path = f"/etc/onprem-lb/{component}.kubeconfig"
    assert on(node, "stat", "-c", "%a %U", path).split() == ["600", "onprem-lb"]
    return yaml.safe_load(on(node, "cat", path))  # type: ignore[no-any-return]


def can_i(kubeconfig: dict[str, Any], verb: str, resource: str, namespace: str = "", group: str = "") -> bool:
    api = config.new_client_from_config_dict(kubeconfig)
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, namespace=namespace or None, group=group or None
            )
        )
    )
    return bool(client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed)


def test_daemons_use_their_own_least_privileged_tokens() -> None:
    ctl = node_kubeconfig(CONTROLLERS[0], "controller")
    spk = node_kubeconfig("onprem-lab-n2", "speaker")
    for kubeconfig in (ctl, spk):
        user = kubeconfig["users"][0]["user"]
        assert set(user) == {"token"}, "a ServiceAccount token, no admin client certificate"
        assert not can_i(kubeconfig, "list", "secrets", NS)
        assert not can_i(kubeconfig, "create", "pods", "default")
    assert can_i(ctl, "patch", "services/status", "default")
    assert can_i(ctl, "update", "leases", NS, "coordination.k8s.io")
    assert not can_i(ctl, "delete", "servicel2statuses", NS, "metallb.io")
    assert can_i(spk, "create", "servicel2statuses", NS, "metallb.io")
    assert not can_i(spk, "patch", "services/status", "default")
    assert not can_i(spk, "update", "leases", "kube-system", "coordination.k8s.io")


def test_heartbeats_are_signed_with_one_cluster_secret(api: client.ApiClient) -> None:
    secret = client.CoreV1Api(api).read_namespaced_secret("onprem-lb-memberlist", NS)
    key = base64.b64decode(secret.data["secretkey"]).decode()
    assert len(key) == 64
    for node in NODES:
        assert on(node, "stat", "-c", "%a %U", "/etc/onprem-lb/memberlist").split() == ["600", "onprem-lb"]
        assert on(node, "cat", "/etc/onprem-lb/memberlist") == key
        cmdline = on(node, "cat", f"/proc/{unit_pid(node, 'onprem-lb-speaker')}/cmdline").replace("\0", " ")
        assert "--secret-file /etc/onprem-lb/memberlist" in cmdline


@pytest.fixture(scope="module")
def service_ip(api: client.ApiClient) -> Iterator[str]:
    """A LoadBalancer Service with a ready endpoint on n2, and the address the controller gave it."""
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "site-web"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
        },
    )
    discovery.create_namespaced_endpoint_slice(
        "default",
        {
            "metadata": {
                "name": "site-web-lab",
                "labels": {
                    "kubernetes.io/service-name": "site-web",
                    "endpointslice.kubernetes.io/managed-by": "lab.onprem.test",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.2.10"], "nodeName": "onprem-lab-n2", "conditions": {"ready": True}}],
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    )
    ip = ""
    for _ in range(100):  # bounded: the controller answers within a second
        ingress = core.read_namespaced_service("site-web", "default").status.load_balancer.ingress
        if ingress:
            ip = ingress[0].ip
            break
        time.sleep(0.2)
    assert ip, "the controller gave site-web no address"
    yield ip
    core.delete_namespaced_service("site-web", "default")
    discovery.delete_namespaced_endpoint_slice("site-web-lab", "default")


def node_macs() -> dict[str, str]:
    return {on(n, "cat", "/sys/class/net/eth0/address").strip().lower(): n for n in NODES}


def arp_answers(ip: str) -> set[str]:
    """MACs that answer a few ARP requests from the client (iputils arping)."""
    out = on(CLIENT, "arping", "-c", "3", "-w", "3", "-I", "eth0", ip, check=False)
    return {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", out)}


def test_service_gets_a_pool_address_and_one_node_answers_arp(service_ip: str, api: client.ApiClient) -> None:
    assert POOL[0] <= ipaddress.IPv4Address(service_ip) <= POOL[1]
    macs = node_macs()
    answers: set[str] = set()
    for _ in range(20):  # bounded: speakers announce within a second or two
        answers = arp_answers(service_ip)
        if len(answers) == 1:
            break
    assert len(answers) == 1 and answers <= set(macs), f"answers {answers}, node MACs {macs}"
    owner = macs[next(iter(answers))]
    statuses = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "metallb.io", "v1beta1", NS, "servicel2statuses"
    )["items"]
    assert [s["status"]["node"] for s in statuses if s["status"].get("serviceName") == "site-web"] == [owner]


def longest_silence(result: dict[str, Any], interval: float) -> float:
    """Longest time without a reply while probing every `interval` seconds (l2probe watch)."""
    times = [float(t) for t, _ in result["replies"]]
    assert times, "nobody answered at all"
    return max([b - a for a, b in itertools.pairwise(times)] + [interval])


def rolling_restart_silence(service_ip: str, playbook: Callable[..., Any], extra_vars: dict[str, Any]) -> float:
    """Run the speakers' playbook while the client asks for the address every 10 ms; return the
    longest time without an answer."""
    podman("cp", str(REPO / "lab/bin/l2probe"), f"{CLIENT}:/usr/local/bin/l2probe")
    on(CLIENT, "rm", "-f", STOP_FILE)
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "lab/nodes/containers.conf"))
    probe = subprocess.Popen(
        ["podman", "exec", CLIENT, "python3", "/usr/local/bin/l2probe", "watch", "eth0", service_ip,
         "--interval", "0.01", "--duration", "240", "--until-file", STOP_FILE],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        run = playbook(SPEAKERS, extra_vars, inventory=INVENTORY)
        assert run.rc == 0, run.report
        assert all(run.changed(n) > 0 for n in NODES), "every speaker is restarted: " + run.report
    finally:
        on(CLIENT, "touch", STOP_FILE)
        out, _ = probe.communicate(timeout=30)
    result = json.loads(out)
    silence = longest_silence(result, 0.01)
    print(f"rolling restart of {len(NODES)} speakers ({extra_vars or 'back to the inventory'}): longest silence "
          f"{silence * 1000:.0f} ms, {len(result['replies'])} replies to {result['sent']} requests")  # fmt: skip
    return silence


def test_rolling_restart_of_the_speakers_never_silences_the_address(
    service_ip: str, playbook: Callable[..., Any]
) -> None:
    """A unit change restarts the speakers one node at a time (the role's rolling restart, with the
    speaker's SIGTERM handover). The lab keeps the changed unit afterwards (molecule's idempotence
    step ran before verify)."""
    silence = rolling_restart_silence(service_ip, playbook, {"lb_speaker_log_level": "debug"})
    # A planned handover is a few unanswered 10 ms probes (bench: 47-91 ms on a quiet machine, up
    # to 0.5 s with both cores busy). A failover, which this must not be, cannot be shorter than
    # the speakers' --dead-after (1.0 s): only then do peers take over from a silent node.
    assert silence < 1.0


BAD_INVENTORIES = {
    "overlapping pools": (
        {"lb_config_pools": [
            {"name": "a", "addresses": ["203.0.113.168-203.0.113.172"]},
            {"name": "b", "addresses": ["203.0.113.170/31"]},
        ]},
        "pools 'a' and 'b' share 203.0.113.170/31",
    ),
    "unknown variable": (
        {"lb_config_pool": [{"name": "x", "addresses": ["203.0.113.170/32"]}]},
        "did you mean lb_config_pools",
    ),
    "pool holding a node address": (
        {"lb_config_pools": [{"name": "lab", "addresses": ["203.0.113.162-203.0.113.170"]}]},
        "203.0.113.162",
    ),
    "unknown field in an advertisement": (
        {"lb_config_l2_advertisements": [{"name": "lab", "ipAdressPools": ["lab"]}]},
        "unknown field ipAdressPools",
    ),
    "ingress variable typo": ({"ingress_exposur": "nodeport"}, "did you mean ingress_exposure"),
    "ingress variable of the old role": (
        {"ingress_nginx_variant": "nodeport"}, "ingress_nginx_variant was renamed ingress_exposure"
    ),
    "externalips without addresses": ({"ingress_exposure": "externalips"}, "needs ingress_external_ips"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_INVENTORIES))
def test_bad_inventory_stops_before_anything_changes(
    name: str, playbook: Callable[..., Any], api: client.ApiClient
) -> None:
    extra_vars, expected = BAD_INVENTORIES[name]
    objects = client.CustomObjectsApi(api)
    before = objects.list_namespaced_custom_object("metallb.io", "v1beta1", NS, "ipaddresspools")["items"]
    run = playbook(SITE, extra_vars, inventory=INVENTORY)
    assert run.rc != 0, run.report
    messages = " ".join(run.failed_messages())
    assert expected in messages, run.report
    assert "Traceback" not in run.output
    assert all(run.changed(n) == 0 for n in NODES), run.report
    after = objects.list_namespaced_custom_object("metallb.io", "v1beta1", NS, "ipaddresspools")["items"]
    assert [p["spec"] for p in after] == [p["spec"] for p in before]


def metallb(api: client.ApiClient, plural: str) -> dict[str, dict[str, Any]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object("metallb.io", "v1beta1", NS, plural)["items"]
    return {item["metadata"]["name"]: item for item in items}


def test_legacy_configmap_is_applied_and_pruned_only_when_asked(
    playbook: Callable[..., Any], api: client.ApiClient
) -> None:
    """Seed 000's MetalLB 0.12 ConfigMap through lb_config; dropping it leaves the objects until
    lb_config_prune, which then removes exactly what the role applied."""
    config_playbook = str(REPO / "playbooks" / "lb_config.yml")
    seed = (REPO / "tests/integration/seeds/seed000-config-pool.yaml").read_text()
    legacy = seed.replace("{ip-start}", "198.51.100.200").replace("{ip-stop}", "198.51.100.210")
    run = playbook(config_playbook, {"lb_config_legacy_configmap": legacy}, inventory=INVENTORY)
    assert run.rc == 0, run.report
    pools = metallb(api, "ipaddresspools")
    assert pools["default"]["spec"]["addresses"] == ["198.51.100.200-198.51.100.210"]
    assert pools["default"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "onprem.ingress"
    assert any(ad["spec"].get("ipAddressPools") == ["default"] for ad in metallb(api, "l2advertisements").values())
    # announced in layer 2 but outside the lab's node subnet: a warning, not an error
    assert "outside every node subnet" in run.output, run.report

    assert playbook(config_playbook, inventory=INVENTORY).rc == 0
    assert "default" in metallb(api, "ipaddresspools"), "no prune without lb_config_prune"

    run = playbook(config_playbook, {"lb_config_prune": True}, inventory=INVENTORY)
    assert run.rc == 0, run.report
    lab = yaml.safe_load((REPO / "inventories/lab/group_vars/all/pools.yml").read_text())
    assert set(metallb(api, "ipaddresspools")) == {p["name"] for p in lab["lb_config_pools"]}
    assert set(metallb(api, "l2advertisements")) == {a["name"] for a in lab["lb_config_l2_advertisements"]}
