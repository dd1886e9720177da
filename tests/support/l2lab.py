"""The layer 2 lab for end-to-end tests and the speaker bench.

Three node namespaces and a client on internal bridges (lab/bin/netlab), a real control plane
bound to the management bridge, the onprem-lb controller on the host, and one onprem-lb
speaker per node inside its namespace. Observations are made from the client namespace with
real tools (arping, ndisc6, ip neigh) and lab/bin/l2probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onprem_lb import address_states
from tests.support.controlplane import CRD_DIR, REPO, SRC, kubectl, run_controlplane, stop_process, wait_for

NETLAB = REPO / "lab" / "bin" / "netlab"
L2PROBE = REPO / "lab" / "bin" / "l2probe"
API_ADDRESS = "198.51.100.1"
NODES = ("n1", "n2", "n3")
CLIENT = "olb-client"
POOL_V4 = "192.0.2.240/28"
POOL_V6 = "2001:db8:a::240-2001:db8:a::24f"

BASE_OBJECTS = f"""
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: lab, namespace: metallb-system}}
spec:
  addresses: [{POOL_V4}, {POOL_V6}]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: lab, namespace: metallb-system}}
spec:
  ipAddressPools: [lab]
  interfaces: [eth0]
"""


def pod_address(node: str) -> str:
    """The address of the one endpoint ``service_manifest`` puts on ``node`` (its Pod CIDR's .10)."""
    return f"10.244.{NODES.index(node)}.10"


def service_manifest(
    ns: str,
    name: str,
    *,
    nodes: tuple[str, ...] = ("n1",),
    extra: str = "",
    annotations: str = "{}",
    families: str = "[IPv4]",
    policy: str = "SingleStack",
) -> str:
    """A selector-less LoadBalancer Service plus an EndpointSlice with ready endpoints on ``nodes``."""
    endpoints = "\n".join(
        f"  - addresses: [{pod_address(n)}]\n    nodeName: {n}\n    conditions: {{ready: true}}" for n in nodes
    )
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}, annotations: {annotations}}}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  ipFamilyPolicy: {policy}
  ipFamilies: {families}
  ports: [{{port: 80, protocol: TCP}}]
  {extra}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-lab
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}, endpointslice.kubernetes.io/managed-by: lab.onprem.test}}
addressType: IPv4
ports: [{{port: 80, protocol: TCP}}]
endpoints:
{endpoints if nodes else "  []"}
"""


def sh(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"`{' '.join(args)}` failed ({out.returncode}): {out.stdout}{out.stderr}")
    return out


def in_ns(ns: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, timeout=timeout, check=check)


def metallb_first(nodes: list[str], ip: str) -> str:
    return min(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())


# The engine run from the source tree (PYTHONPATH=src): what Speaker runs unless given another.
ENGINE_FROM_SRC = (sys.executable, "-m", "onprem_lb")


class Speaker:
    """One speaker in a node's namespace. ``engine`` is the command before `speaker`: the source
    tree by default, or e.g. ``(python, "dist/onprem-lb-X.pyz")`` to run the single-file engine
    (then without PYTHONPATH, so nothing comes from src)."""

    def __init__(
        self,
        node: str,
        log_path: Path,
        kubeconfig: Path,
        args: tuple[str, ...],
        engine: tuple[str, ...] = ENGINE_FROM_SRC,
    ) -> None:
        self.node = node
        self.log_path = log_path
        self._log = log_path.open("ab")
        index = NODES.index(node) + 1
        secret = kubeconfig.parent / "heartbeat-secret"  # one shared secret, as lb_speaker writes it
        if not secret.exists():
            secret.write_text(os.urandom(16).hex() + "\n")
            secret.chmod(0o600)
        cmd = [
            "ip", "netns", "exec", f"olb-{node}",
            *engine, "speaker",
            "--kubeconfig", str(kubeconfig),
            "--node-name", node,
            "--heartbeat-address", f"198.51.100.{10 + index}:7946",
            "--secret-file", str(secret),
            "--metrics-address", "",
            *args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if engine == ENGINE_FROM_SRC:
            env["PYTHONPATH"] = str(SRC)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self._log.close()
        return stop_process(self.proc, sig, timeout)


class L2Lab:
    """One lab: `up()` once, `start_speakers()` per test, `down()` at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cp_dir = workdir / "cp"
        self.kubeconfig = self.cp_dir / "admin.kubeconfig"
        self.speakers: dict[str, Speaker] = {}
        self.controller: subprocess.Popen[bytes] | None = None
        self._macs: dict[tuple[str, str], str] = {}
        self._runs = 0

    # -- lifecycle

    def up(self) -> None:
        try:
            self._up()
        except BaseException:  # a lab half up is still taken down (no fixture teardown runs)
            self.down()
            raise

    def _up(self) -> None:
        sh(str(NETLAB), "up", "--nodes", str(len(NODES)), timeout=120)
        started = run_controlplane("up", "--dir", str(self.cp_dir), "--address", API_ADDRESS)
        if started.returncode != 0:
            raise AssertionError(f"control plane did not start:\n{started.stdout}{started.stderr}")
        self.kubectl("apply", "-f", str(CRD_DIR))
        wait_for("CRDs served", lambda: "ipaddresspools" in self.kubectl("api-resources", "--api-group=metallb.io"), 30)
        self.kubectl("create", "namespace", "metallb-system")
        nodes = "\n---\n".join(
            f"apiVersion: v1\nkind: Node\nmetadata: {{name: {n}, labels: {{kubernetes.io/hostname: {n}}}}}"
            for n in NODES
        )
        self.apply(nodes)
        self.apply(BASE_OBJECTS)
        log = (self.workdir / "controller.log").open("ab")
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "onprem_lb", "controller", "--kubeconfig", str(self.kubeconfig),
             "--metrics-address", ""],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(SRC)),
        )  # fmt: skip

    def down(self) -> None:
        self.stop_speakers(signal.SIGKILL)
        if self.controller is not None:
            self.controller.terminate()
            try:
                self.controller.wait(10)
            except subprocess.TimeoutExpired:
                self.controller.kill()
        run_controlplane("down", "--dir", str(self.cp_dir))
        sh(str(NETLAB), "down", check=False)

    # -- the API

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kubectl(self.kubeconfig, *args, stdin=stdin, check=check)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=manifest)

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", "-o", "json", *args))  # type: ignore[no-any-return]

    def service_ips(self, ns: str, name: str, count: int = 1, timeout: float = 30) -> list[str]:
        def ips() -> list[str] | None:
            ingress = self.get("service", "-n", ns, name).get("status", {}).get("loadBalancer", {}).get("ingress", [])
            got = [i["ip"] for i in ingress if i.get("ip")]
            return got if len(got) >= count else None

        return wait_for(f"addresses for {ns}/{name}", ips, timeout, 0.2)

    def events(self, ns: str, name: str) -> list[tuple[str, str]]:
        items = self.get("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
        return [(e.get("reason", ""), e.get("message", "")) for e in items]

    # -- speakers

    def start_speakers(self, *args: str, nodes: tuple[str, ...] = NODES) -> None:
        for node in nodes:
            self.start_speaker(node, *args)

    def start_speaker(self, node: str, *args: str, engine: tuple[str, ...] = ENGINE_FROM_SRC) -> Speaker:
        self._runs += 1
        log = self.workdir / f"speaker-{node}-{self._runs}.log"
        spk = Speaker(node, log, self.kubeconfig, args, engine)
        self.speakers[node] = spk
        return spk

    def wait_ready(self, nodes: tuple[str, ...] = NODES, timeout: float = 20) -> None:
        for node in nodes:
            spk = self.speakers[node]

            def ready(s: Speaker = spk) -> bool:
                return "speaker ready" in s.log() or not s.alive()

            wait_for(f"speaker {node} ready", ready, timeout, 0.1)
            assert spk.alive(), spk.log()

    def stop_speakers(self, sig: int = signal.SIGTERM) -> None:
        for spk in self.speakers.values():
            spk.stop(sig)
        self.speakers.clear()
        # Leases of killed speakers would make the next test's speakers wait for them.
        self.kubectl("delete", "leases", "-n", "metallb-system", "-l", "app.kubernetes.io/component=speaker",
                     "--ignore-not-found", "--wait=false", check=False)  # fmt: skip
        self.kubectl("delete", "servicel2statuses", "-n", "metallb-system", "--all", "--wait=false", check=False)

    def kill_node(self, node: str) -> None:
        """The node dies: its speaker is SIGKILLed and its links go down."""
        self.speakers[node].stop(signal.SIGKILL)
        for link in ("eth0", "eth1", "mgmt0"):
            in_ns(f"olb-{node}", "ip", "link", "set", link, "down")

    def revive_node(self, node: str) -> None:
        for link in ("eth0", "eth1", "mgmt0"):
            in_ns(f"olb-{node}", "ip", "link", "set", link, "up")
        wait_for(f"{node} reaches the API address", lambda: in_ns(
            f"olb-{node}", "ping", "-c1", "-W1", API_ADDRESS, check=False).returncode == 0, 20)  # fmt: skip

    def partition(self, node: str) -> None:
        """Cut the node off from the API server only (heartbeats between nodes still flow)."""
        in_ns(f"olb-{node}", "iptables", "-I", "OUTPUT", "-d", API_ADDRESS, "-j", "DROP")

    def heal(self, node: str) -> None:
        in_ns(f"olb-{node}", "iptables", "-D", "OUTPUT", "-d", API_ADDRESS, "-j", "DROP", check=False)

    def cut_heartbeats(self, node: str) -> None:
        """Cut the node off from the other speakers (its heartbeats, both ways); eth0 stays up so
        the client sees whether it still answers."""
        for chain, flag in (("INPUT", "--dport"), ("OUTPUT", "--dport")):
            in_ns(f"olb-{node}", "iptables", "-I", chain, "-p", "udp", flag, "7946", "-j", "DROP")

    def mend_heartbeats(self, node: str) -> None:
        for chain in ("INPUT", "OUTPUT"):
            in_ns(f"olb-{node}", "iptables", "-D", chain, "-p", "udp", "--dport", "7946", "-j", "DROP", check=False)

    # -- the API server going away for everyone

    def _api_pid(self) -> int:
        state = json.loads((self.cp_dir / "state.json").read_text())
        return int(state["pids"]["kube-apiserver"])

    def stop_api(self) -> None:
        """kube-apiserver stops answering (SIGSTOP: connections hang, as behind a dead route)."""
        os.killpg(self._api_pid(), signal.SIGSTOP)

    def start_api(self) -> None:
        os.killpg(self._api_pid(), signal.SIGCONT)
        wait_for(
            "the API server answers",
            lambda: self.kubectl("get", "--raw", "/readyz", check=False).strip() == "ok",
            30,
        )

    @contextlib.contextmanager
    def api_down(self) -> Iterator[None]:
        """The API server stopped for the block (started again however the block ends)."""
        self.stop_api()
        try:
            yield
        finally:
            self.start_api()

    # -- observing from the client

    def mac(self, node: str, iface: str = "eth0") -> str:
        key = (node, iface)
        if key not in self._macs:
            out = in_ns(f"olb-{node}", "cat", f"/sys/class/net/{iface}/address").stdout.strip()
            self._macs[key] = out.lower()
        return self._macs[key]

    def owner_of_mac(self, mac: str) -> str | None:
        for node in NODES:
            for iface in ("eth0", "eth1"):
                if self.mac(node, iface) == mac:
                    return node
        return None

    def probe(self, ip: str, iface: str = "eth0", duration: float = 0.3, interval: float = 0.03) -> dict[str, Any]:
        out = in_ns(CLIENT, sys.executable, str(L2PROBE), "watch", iface, ip,
                    "--interval", str(interval), "--duration", str(duration), timeout=duration + 30)  # fmt: skip
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def macs(self, ip: str, iface: str = "eth0") -> set[str]:
        """Every MAC that answers for ``ip`` within a short window (several requests)."""
        return {mac for _t, mac in self.probe(ip, iface)["replies"]}

    def owners(self, ip: str, iface: str = "eth0") -> set[str | None]:
        return {self.owner_of_mac(m) for m in self.macs(ip, iface)}

    def wait_owner(self, ip: str, expected: str | None, iface: str = "eth0", timeout: float = 15) -> None:
        want: set[str | None] = {expected} if expected else set()
        last: list[set[str | None]] = [set()]

        def check() -> bool:
            last[0] = self.owners(ip, iface)
            return last[0] == want

        try:
            wait_for(f"{ip} answered by {expected or 'nobody'}", check, timeout, 0.05)
        except AssertionError:
            logs = "\n".join(f"--- {n}\n{s.log()[-3000:]}" for n, s in self.speakers.items())
            raise AssertionError(f"{ip}: wanted {want}, last seen {last[0]}\n{logs}") from None

    def wait_settled(self, ip: str, owner: str, timeout: float = 20) -> None:
        """Wait until the election of ``ip`` is over on every running speaker, as each one
        publishes it on its Lease: ``owner`` announces it and no other speaker probes, announces
        or still hands it over. Speakers started together do not know each other for their first
        moments: one may win, probe or announce before it sees the owner, then hand over, and a
        client that asks then hears it."""
        answering = {"announcing", "holdingByMembership", "probing", "handingOver"}
        last: list[dict[str, str]] = [{}]

        def settled() -> bool:
            states: dict[str, str] = {}
            for item in self.get("leases", "-n", "metallb-system")["items"]:
                node = item["spec"].get("holderIdentity", "")
                if node in self.speakers:
                    text = item["metadata"].get("annotations", {}).get(address_states.ANNOTATIONS["layer2"])
                    decoded = address_states.decode(text)
                    states[node] = decoded[0].get(ip, address_states.NOT_OWNER) if decoded else "unknown"
            last[0] = states
            others = {n: st for n, st in states.items() if n != owner}
            return (
                states.get(owner) == "announcing"
                and len(states) == len(self.speakers)
                and not answering & set(others.values())
            )

        try:
            wait_for(f"{ip}'s election settled on {owner}", settled, timeout, 0.2)
        except AssertionError:
            raise AssertionError(f"{ip}: not settled on {owner}; states on the Leases: {last[0]}") from None

    def arping_macs(self, ip: str, iface: str = "eth0") -> set[str]:
        """The real arping (Thomas Habets' arping from Debian): MACs that replied to 3 requests."""
        out = in_ns(CLIENT, "arping", "-c", "3", "-W", "0.1", "-i", iface, ip, check=False, timeout=30).stdout
        return set(re.findall(r"from ([0-9a-f:]{17}) ", out.lower()))

    def ndisc6_macs(self, ip: str, iface: str = "eth0") -> set[str]:
        """ndisc6 in multiple-answer mode: every target link-layer address heard."""
        out = in_ns(CLIENT, "ndisc6", "-m", "-n", "-r", "3", "-w", "300", ip, iface, check=False, timeout=30).stdout
        return {m.lower() for m in re.findall(r"Target link-layer address: ([0-9A-Fa-f:]{17})", out)}
