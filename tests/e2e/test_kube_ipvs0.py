"""Why the sysctl role matters: with Service addresses on every node, every node answers ARP.

kube-proxy in IPVS mode binds every Service address to kube-ipvs0 on every node. With Linux's
default arp_ignore=0 a node answers ARP for any address it holds on any interface, so a client
asking for a load-balancer address gets an answer from every node and the address flaps
between MACs. arp_ignore=1 / arp_announce=2 (what ipvs.strictARP makes kube-proxy set, and what
the onprem.ingress.sysctl role sets and persists) stop that.

The lab: three systemd nodes and a client, podman containers on an internal podman network
(203.0.113.240/28, no route off this machine). Each node gets one address on a kube-ipvs0
device (a bridge without ports: this kernel has no dummy interfaces) and one on lo. The client
asks with iputils arping and records which MACs answer. Last, the onprem-lb speakers run on
the nodes (this checkout, mounted read-only) against a control plane on the network's gateway:
then exactly one node, the elected one, answers for the address.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.controlplane import CRD_DIR, kubectl, run_controlplane

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "lab" / "nodes" / "containers.conf"
BUILD_IMAGE = REPO / "lab" / "nodes" / "build-image.sh"
NETWORK = "onprem-e2e-ipvs0"
SUBNET, GATEWAY = "203.0.113.240/28", "203.0.113.241"
NODES = {"e2e-ipvs0-n1": "203.0.113.242", "e2e-ipvs0-n2": "203.0.113.243", "e2e-ipvs0-n3": "203.0.113.244"}
CLIENT, CLIENT_ADDRESS = "e2e-ipvs0-client", "203.0.113.246"
VIP_KUBE_IPVS0 = "203.0.113.250"  # as kube-proxy IPVS binds a LoadBalancer address
VIP_LOOPBACK = "203.0.113.251"  # as a DSR / keepalived set-up binds one to lo
BOOT_TIMEOUT_S = 60.0
# The nodes run the onprem-lb speaker from this checkout and its virtualenv, mounted read-only
# at the same paths (the virtualenv's interpreter lives under sys.base_prefix).
ENGINE_MOUNTS = [f"--volume={p}:{p}:ro" for p in sorted({str(REPO), sys.base_prefix}) if p not in ("/", "/usr")]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("podman") is None or shutil.which("debootstrap") is None,
    reason="the lab nodes need root, podman and debootstrap (make host-deps installs them)",
)


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


@dataclass
class KubeIpvs0Lab:
    """Nodes holding VIPs the way IPVS mode does, and a client that asks who has them."""

    workdir: Path
    image: str = ""
    macs: dict[str, str] = field(default_factory=dict)  # eth0 MAC (lower case) -> node

    def run(self, container: str, *cmd: str, check: bool = True) -> str:
        return podman("exec", container, *cmd, check=check).stdout

    def up(self) -> None:
        self.down()
        build = subprocess.run(
            [str(BUILD_IMAGE)],
            capture_output=True,
            text=True,
            env=dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF)),
            timeout=1800,
            check=False,
        )
        if build.returncode != 0:
            raise AssertionError(f"building the node image failed:\n{build.stderr}")
        self.image = build.stdout.split()[-1]
        podman("network", "create", "--internal", "--disable-dns", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
        for name, address in [*NODES.items(), (CLIENT, CLIENT_ADDRESS)]:
            podman(
                "run", "-d", "--name", name, "--hostname", name, "--network", NETWORK, "--ip", address,
                "--systemd=always", "--cap-add", "NET_ADMIN,NET_RAW,SYS_ADMIN", *ENGINE_MOUNTS,
                self.image, "/sbin/init",
            )  # fmt: skip
        for name in [*NODES, CLIENT]:
            self.wait_booted(name)
        for name in NODES:
            # kube-proxy leaves kube-ipvs0 down with the addresses on it; they are local all the same.
            self.run(name, "ip", "link", "add", "kube-ipvs0", "type", "bridge")
            self.run(name, "ip", "address", "add", f"{VIP_KUBE_IPVS0}/32", "dev", "kube-ipvs0")
            self.run(name, "ip", "address", "add", f"{VIP_LOOPBACK}/32", "dev", "lo")
            mac = self.run(name, "cat", "/sys/class/net/eth0/address").strip().lower()
            self.macs[mac] = name

    def wait_booted(self, name: str) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            state = podman("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise AssertionError(f"{name} did not finish booting in {BOOT_TIMEOUT_S}s (systemd says {state!r})")

    def down(self) -> None:
        for name in [*NODES, CLIENT]:
            podman("rm", "--force", "--time", "0", name, check=False)
        podman("network", "rm", "--force", NETWORK, check=False)

    def arp_answers(self, address: str) -> set[str]:
        """Which nodes answer the client's ARP requests for `address` (one request a second for 2 s).

        With a deadline, iputils arping stops at -c *replies*: set high so that every node's
        answer to the same request is counted.
        """
        out = self.run(CLIENT, "arping", "-c", "30", "-w", "2", "-I", "eth0", address, check=False)
        macs = {m.lower() for m in re.findall(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]", out)}
        return {self.macs.get(mac, f"unknown {mac}") for mac in macs}

    def converge_sysctl(self, **extra_vars: str) -> subprocess.CompletedProcess[str]:
        """Run the onprem.ingress.sysctl role on the nodes, as a site playbook does."""
        inventory = self.workdir / "inventory.yml"
        node_vars = "{ansible_connection: podman_pipelined, ansible_python_interpreter: /usr/bin/python3}"
        inventory.write_text("all:\n  hosts:\n" + "".join(f"    {name}: {node_vars}\n" for name in NODES))
        playbook = self.workdir / "sysctl.yml"
        playbook.write_text(
            "- name: Prepare the nodes\n  hosts: all\n  gather_facts: false\n  roles:\n    - onprem.ingress.sysctl\n"
        )
        cmd = ["ansible-playbook", "-i", str(inventory), str(playbook)]
        for key, value in extra_vars.items():
            cmd += ["-e", f"{key}={value}"]
        env = dict(
            os.environ,
            CONTAINERS_CONF=str(CONTAINERS_CONF),
            # containers.podman.podman with pipelining, as the molecule scenarios use it.
            ANSIBLE_CONNECTION_PLUGINS=str(REPO / "extensions" / "molecule" / "shared" / "connection_plugins"),
            ANSIBLE_PIPELINING="true",
        )
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture(scope="module")
def kube_ipvs0_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeIpvs0Lab]:
    lab = KubeIpvs0Lab(workdir=tmp_path_factory.mktemp("kube-ipvs0"))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def test_every_node_answers_for_ipvs_addresses_until_the_sysctl_role_runs(kube_ipvs0_lab: KubeIpvs0Lab) -> None:
    lab = kube_ipvs0_lab
    everyone = set(NODES)
    # Before: ARP flux. Every node claims both addresses with its own MAC.
    assert lab.arp_answers(VIP_KUBE_IPVS0) == everyone
    assert lab.arp_answers(VIP_LOOPBACK) == everyone

    run = lab.converge_sysctl()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    for name in NODES:
        assert lab.run(name, "sysctl", "-n", "net.ipv4.conf.all.arp_ignore").strip() == "1"
        assert lab.run(name, "sysctl", "-n", "net.ipv4.conf.all.arp_announce").strip() == "2"

    # After: nobody answers for addresses that are not on the interface the request came in on...
    assert lab.arp_answers(VIP_KUBE_IPVS0) == set()
    assert lab.arp_answers(VIP_LOOPBACK) == set()
    # ...while each node still answers for its own address (the silence above is not a broken lab).
    for name, address in NODES.items():
        assert lab.arp_answers(address) == {name}


def test_then_only_the_speaker_answers(kube_ipvs0_lab: KubeIpvs0Lab) -> None:
    """With the flux gone, the onprem-lb speakers elect one node and only its MAC answers."""
    lab = kube_ipvs0_lab
    if sys.base_prefix in ("/", "/usr"):
        pytest.skip("the interpreter lives in /usr: it cannot be mounted into the nodes")
    cp = lab.workdir / "cp"
    up = run_controlplane("up", "--dir", str(cp), "--address", GATEWAY)
    assert up.returncode == 0, up.stdout + up.stderr
    kubeconfig = cp / "admin.kubeconfig"
    engine = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    controller = None
    try:
        kubectl(kubeconfig, "apply", "-f", str(CRD_DIR))
        for _ in range(100):  # bounded: the CRDs become served within seconds
            if "ipaddresspools" in kubectl(kubeconfig, "api-resources", "--api-group=metallb.io"):
                break
            time.sleep(0.2)
        kubectl(kubeconfig, "create", "namespace", "metallb-system")
        kubectl(kubeconfig, "apply", "-f", "-", stdin=_speaker_objects())
        controller = subprocess.Popen(
            [sys.executable, "-m", "onprem_lb", "controller", "--kubeconfig", str(kubeconfig), "--metrics-address", ""],
            env=engine, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        venv_python = str(Path(sys.prefix) / "bin" / "python")
        secret = kubeconfig.parent / "heartbeat-secret"
        secret.write_text(os.urandom(16).hex() + "\n")
        for name, address in NODES.items():
            podman("cp", str(kubeconfig), f"{name}:/root/admin.kubeconfig")
            podman("cp", str(secret), f"{name}:/root/heartbeat-secret")
            command = (
                f"PYTHONPATH={REPO / 'src'} exec {venv_python} -m onprem_lb speaker"
                f" --kubeconfig /root/admin.kubeconfig --node-name {name} --heartbeat-address {address}:7946"
                " --secret-file /root/heartbeat-secret --metrics-address '' >/root/speaker.log 2>&1"
            )
            podman("exec", "-d", name, "/bin/sh", "-c", command)
        elected = min(NODES, key=lambda n: hashlib.sha256(f"{n}#{VIP_KUBE_IPVS0}".encode()).digest())
        answers: set[str] = set()
        for _ in range(20):  # bounded: speakers are ready within a few seconds
            answers = lab.arp_answers(VIP_KUBE_IPVS0)
            if answers == {elected}:
                break
        logs = {n: lab.run(n, "tail", "-n", "20", "/root/speaker.log", check=False) for n in NODES}
        assert answers == {elected}, f"{answers} answered, {elected} expected; speaker logs: {logs}"
        # the kernel still stays silent for the loopback address nobody announces
        assert lab.arp_answers(VIP_LOOPBACK) == set()
    finally:
        for name in NODES:
            lab.run(name, "pkill", "-f", "onprem_lb speaker", check=False)
        if controller is not None:
            controller.terminate()
            controller.wait(15)
        run_controlplane("down", "--dir", str(cp))


def _speaker_objects() -> str:
    endpoint_node = next(iter(NODES))
    nodes = "".join(
        f"---\napiVersion: v1\nkind: Node\nmetadata: {{name: {n}, labels: {{kubernetes.io/hostname: {n}}}}}\n"
        for n in NODES
    )
    return (
        nodes
        + f"""---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: ipvs, namespace: metallb-system}}
spec:
  addresses: [{VIP_KUBE_IPVS0}/32]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: ipvs, namespace: metallb-system}}
spec:
  ipAddressPools: [ipvs]
  interfaces: [eth0]
---
apiVersion: v1
kind: Service
metadata: {{name: ingress, namespace: default}}
spec:
  type: LoadBalancer
  ports: [{{port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ingress-lab
  namespace: default
  labels: {{kubernetes.io/service-name: ingress, endpointslice.kubernetes.io/managed-by: lab.onprem.test}}
addressType: IPv4
endpoints:
  - addresses: [10.244.0.10]
    nodeName: {endpoint_node}
    conditions: {{ready: true}}
"""
    )


def test_reverting_the_role_brings_the_flux_back(kube_ipvs0_lab: KubeIpvs0Lab) -> None:
    """The revert path is real: state=absent puts the kernel defaults back, and every node answers again."""
    lab = kube_ipvs0_lab
    run = lab.converge_sysctl(sysctl_state="absent")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert lab.arp_answers(VIP_KUBE_IPVS0) == set(NODES)
