"""The BGP lab: the layer 2 lab (tests/support/l2lab.py) plus FRR in every node namespace and a
router we did not write, BIRD 2, in olb-router (lab/bin/netlab). The nodes peer with the router
over segment B: eBGP over IPv4 (router AS 64500, nodes AS 64512), iBGP over IPv6 (AS 64512).
IPv4 sessions run BFD (300 ms x 3) and a TCP MD5 password from a Secret; IPv6 ones graceful
restart.
Observations are the router's own: `birdc show route ... all` and `birdc show protocols`.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.support.controlplane import controlplane_bin_dir, stop_process, wait_for
from tests.support.l2lab import NODES, L2Lab, in_ns, pod_address, sh

ROUTER = "olb-router"
FAR = "olb-far"
ROUTER_V4, ROUTER_V6 = "203.0.113.1", "2001:db8:b::1"
ROUTER_ASN, NODE_ASN = 64500, 64512
FRR_BIN = Path("/usr/lib/frr")
FRR_DAEMONS = ("zebra", "bgpd", "bfdd")


@dataclass(frozen=True)
class Session:
    """A BGP session as BIRD shows it. BIRD prints "since" from a monotonic clock turned into
    wall time at each call, so the same session's time can differ by a millisecond or so from one
    `show protocols` to the next: compare with ``same_as``, never ``==``."""

    state: str
    since: float

    def same_as(self, other: Session | None, slack: float = 0.5) -> bool:
        return other is not None and self.state == other.state and abs(self.since - other.since) <= slack


def resets(before: dict[str, Session], after: dict[str, Session]) -> list[str]:
    """The sessions that went down (or changed state) between two looks at the router."""
    return sorted(name for name, session in before.items() if not session.same_as(after.get(name)))


def node_v4(node: str) -> str:
    return f"203.0.113.{10 + NODES.index(node) + 1}"


def node_v6(node: str) -> str:
    return f"2001:db8:b::{10 + NODES.index(node) + 1}"


V4_PASSWORD = "lab-v4-secret"  # noqa: S105  # the lab router's, in the lab only


def password_secret(password: str) -> str:
    """The router-v4 peer's passwordSecret (kubernetes.io/basic-auth, as MetalLB reads it)."""
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: router-v4-password, namespace: metallb-system}}
type: kubernetes.io/basic-auth
stringData: {{password: "{password}"}}
"""


PEERS = (
    password_secret(V4_PASSWORD)
    + f"""
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {{name: fast, namespace: metallb-system}}
spec: {{receiveInterval: 300, transmitInterval: 300, detectMultiplier: 3}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: router-v4, namespace: metallb-system}}
spec: {{myASN: {NODE_ASN}, peerASN: {ROUTER_ASN}, peerAddress: {ROUTER_V4}, holdTime: 9s, keepaliveTime: 3s,
        bfdProfile: fast, passwordSecret: {{name: router-v4-password, namespace: metallb-system}}}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: router-v6, namespace: metallb-system}}
spec: {{myASN: {NODE_ASN}, peerASN: {NODE_ASN}, peerAddress: "{ROUTER_V6}", holdTime: 9s, keepaliveTime: 3s,
        enableGracefulRestart: true}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: lab, namespace: metallb-system}}
spec: {{ipAddressPools: [lab]}}
"""
)


def bird_config(log: Path) -> str:
    nodes4 = "\n".join(f"protocol bgp {n} from node4 {{ neighbor {node_v4(n)} as {NODE_ASN}; }}" for n in NODES)
    nodes6 = "\n".join(f"protocol bgp {n}v6 from node6 {{ neighbor {node_v6(n)} as {NODE_ASN}; }}" for n in NODES)
    return f"""
log "{log}" all;
router id {ROUTER_V4};
timeformat protocol iso long ms;
timeformat route iso long ms;
protocol device {{ scan time 5; }}
protocol direct {{ ipv4; ipv6; interface "eth*"; }}
protocol kernel {{ ipv4 {{ export all; }}; merge paths yes; }}
protocol kernel {{ ipv6 {{ export all; }}; merge paths yes; }}
protocol bfd {{ interface "eth0" {{ min rx interval 300 ms; min tx interval 300 ms; multiplier 3; }}; }}
template bgp node4 {{
  local {ROUTER_V4} as {ROUTER_ASN};
  hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 5;
  bfd on;  # IPv4 sessions: a dead node is withdrawn at BFD's pace (3 x 300 ms), not the hold time's
  password "{V4_PASSWORD}";  # TCP MD5, as the BGPPeer's passwordSecret says
  ipv4 {{ import all; export none; }};
}}
template bgp node6 {{
  local {ROUTER_V6} as {NODE_ASN};
  direct;  # the nodes share segment B with the router: next hops are theirs, not resolved
  # the nodes announce graceful restart here: a restarting bgpd's routes stay meanwhile
  hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 5;
  ipv6 {{ import all; export none; }};
}}
{nodes4}
{nodes6}
"""


KUBE_PROXY_CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {{kubeconfig: {kubeconfig}}}
clusterCIDR: 10.244.0.0/16
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# conntrack limits are the host's, shared by every namespace here: left alone
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"""

BACKEND = """
import http.server, sys
address, port, node = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{node} {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((address, port), Answer).serve_forever()
"""

HEALTHY = """
import urllib.request
urllib.request.urlopen("http://127.0.0.1:10256/healthz", timeout=2).read()
"""

FETCH = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())
"""


@dataclass
class Route:
    via: str
    protocol: str
    attributes: dict[str, str] = field(default_factory=dict)  # BGP.local_pref -> "100", ...


def parse_routes(text: str) -> list[Route]:
    """`birdc show route <prefix> all`: one Route per alternative (one per announcing session)."""
    routes: list[Route] = []
    for line in text.splitlines():
        head = re.search(r"unicast \[(\S+) ", line)
        if head:
            routes.append(Route(via="", protocol=head.group(1)))
            continue
        if not routes:
            continue
        via = re.match(r"\s+via (\S+)", line)
        if via:
            routes[-1].via = via.group(1)
        attr = re.match(r"\s+(BGP\.\w+): (.*)", line)
        if attr:
            routes[-1].attributes[attr.group(1)] = attr.group(2).strip()
    return routes


class BgpLab:
    """`up()` once (the layer 2 lab, BIRD, FRR per node), speakers per test, `down()` at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.l2 = L2Lab(workdir)
        self.socket = workdir / "bird.ctl"
        self.bird: subprocess.Popen[bytes] | None = None
        self.data_path: list[subprocess.Popen[bytes]] = []

    def up(self) -> None:
        self.l2.up()
        try:
            self._start_bird()
            for node in NODES:
                self.start_frr(node)
            self.l2.apply(PEERS)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        for proc in self.data_path:
            stop_process(proc)
        for node in NODES:
            self.stop_frr(node)
        if self.bird is not None and self.bird.poll() is None:
            self.bird.send_signal(signal.SIGTERM)
            try:
                self.bird.wait(10)
            except subprocess.TimeoutExpired:
                self.bird.kill()
        self.l2.down()

    # -- the router

    def _start_bird(self) -> None:
        conf = self.workdir / "bird.conf"
        conf.write_text(bird_config(self.workdir / "bird.log"))
        log = (self.workdir / "bird.out").open("ab")
        self.bird = subprocess.Popen(
            ["ip", "netns", "exec", ROUTER, "bird", "-f", "-c", str(conf), "-s", str(self.socket)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for("BIRD answers", lambda: self.birdc("show status", check=False).find("Daemon is up") >= 0, 20)

    def birdc(self, command: str, check: bool = True) -> str:
        out = sh("birdc", "-s", str(self.socket), *command.split(), check=check, timeout=30)
        return out.stdout

    def routes(self, prefix: str) -> list[Route]:
        return parse_routes(self.birdc(f"show route {prefix} all", check=False))

    def next_hops(self, prefix: str) -> set[str]:
        return {r.via for r in self.routes(prefix)}

    def wait_next_hops(self, prefix: str, nodes: set[str], timeout: float = 15) -> None:
        want = {node_v6(n) if ":" in prefix else node_v4(n) for n in nodes}
        seen: list[set[str]] = [set()]

        def check() -> bool:
            seen[0] = self.next_hops(prefix)
            return seen[0] == want

        try:
            wait_for(f"{prefix} via {sorted(want) or 'nobody'}", check, timeout, 0.05)
        except AssertionError:
            raise AssertionError(
                f"{prefix}: wanted next hops {sorted(want)}, the router has {sorted(seen[0])}\n"
                f"{self.birdc('show protocols')}\n{self.frr_view(prefix)}\n{self.speaker_logs()}"
            ) from None

    def frr_view(self, prefix: str) -> str:
        """What each node's FRR holds for ``prefix``: its BGP table entry and the running
        configuration lines naming it (a failed wait says whose FRR lacked or kept the route)."""
        family = "ipv6" if ":" in prefix else "ipv4"
        out = []
        for node in NODES:
            entry = sh("vtysh", "-N", node, "-c", f"show bgp {family} unicast {prefix}", check=False)
            config = sh("vtysh", "-N", node, "-c", "show running-config", check=False).stdout
            naming = [line for line in config.splitlines() if prefix.split("/", maxsplit=1)[0] in line]
            out.append(f"--- FRR on {node}: {entry.stdout.strip() or entry.stderr.strip()}\n" + "\n".join(naming))
        return "\n".join(out)

    def sessions(self) -> dict[str, Session]:
        """BGP protocol -> (state, since) as BIRD shows them, since in seconds of the epoch."""
        out: dict[str, Session] = {}
        for line in self.birdc("show protocols").splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "BGP":  # name BGP table state DATE TIME info...
                since = datetime.strptime(f"{parts[4]} {parts[5]}", "%Y-%m-%d %H:%M:%S.%f").timestamp()
                out[parts[0]] = Session(parts[6] if len(parts) > 6 else parts[3], since)
        return out

    def wait_established(self, timeout: float = 30) -> dict[str, Session]:
        def up() -> dict[str, Session] | None:
            got = self.sessions()
            return got if got and all(s.state == "Established" for s in got.values()) else None

        try:
            return wait_for("every BGP session Established", up, timeout, 0.2)
        except AssertionError:
            raise AssertionError(f"{self.birdc('show protocols all')}\n{self.speaker_logs()}") from None

    def frr_drops(self) -> dict[str, int]:
        """Node -> sessions FRR itself counts as dropped (connectionsDropped, all neighbours)."""
        drops = {}
        for node in NODES:
            shown = json.loads(sh("vtysh", "-N", node, "-c", "show bgp neighbors json").stdout or "{}")
            drops[node] = sum(int(peer.get("connectionsDropped", 0)) for peer in shown.values())
        return drops

    # -- FRR on the nodes

    def start_frr(self, node: str) -> None:
        etc, run = Path("/etc/frr") / node, Path("/var/run/frr") / node
        self.stop_frr(node)
        for directory, mode in ((etc, "750"), (run, "755")):
            sh("install", "-d", "-o", "frr", "-g", "frr", "-m", mode, str(directory))
        (etc / "vtysh.conf").write_text("service integrated-vtysh-config\n")
        (etc / "frr.conf").write_text(f"frr defaults traditional\nhostname {node}\n!\n")
        for conf in ("vtysh.conf", "frr.conf"):
            shutil.chown(etc / conf, "frr", "frr")
        for daemon in FRR_DAEMONS:
            in_ns(f"olb-{node}", str(FRR_BIN / daemon), "-d", "-N", node, "-F", "traditional", "-A", "127.0.0.1")
        wait_for(f"FRR on {node}", lambda: sh("vtysh", "-N", node, "-c", "show version", check=False).returncode == 0)

    def restart_bgpd(self, node: str, down: float) -> None:
        """bgpd dies (SIGKILL) and comes back ``down`` seconds later, empty, as after a crash."""
        pidfile = Path("/var/run/frr") / node / "bgpd.pid"
        sh("kill", "-9", pidfile.read_text().strip())
        time.sleep(down)
        in_ns(f"olb-{node}", str(FRR_BIN / "bgpd"), "-d", "-N", node, "-F", "traditional", "-A", "127.0.0.1")

    def stop_frr(self, node: str) -> None:
        run = Path("/var/run/frr") / node
        for daemon in FRR_DAEMONS:
            pidfile = run / f"{daemon}.pid"
            if pidfile.exists():
                sh("kill", "-9", pidfile.read_text().strip(), check=False)
                pidfile.unlink(missing_ok=True)
        shutil.rmtree(Path("/etc/frr") / node, ignore_errors=True)

    # -- the data path behind a Service address: kube-proxy and a backend on every node

    def start_data_path(self) -> None:
        """On every node, the real kube-proxy (iptables mode) and a backend "Pod" at the node's
        endpoint address (l2lab.pod_address) that answers "<node> <client address>", with routes
        to the other nodes' endpoints. Traffic from the far client then takes the router's routes
        to a node, kube-proxy's DNAT to a backend (ETP Cluster: on any node), and back."""
        if self.data_path:
            return
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(KUBE_PROXY_CONFIG.format(kubeconfig=self.l2.kubeconfig))
        for node in NODES:
            address = pod_address(node)
            in_ns(f"olb-{node}", "ip", "addr", "replace", f"{address}/32", "dev", "lo")
            for other in NODES:  # the other nodes' endpoints over segment B, as a CNI would route them
                if other != node:
                    in_ns(f"olb-{node}", "ip", "route", "replace", f"{pod_address(other)}/32", "via", node_v4(other))
            kube_proxy = str(controlplane_bin_dir() / "kube-proxy")
            self._run_in(node, "kube-proxy", kube_proxy, f"--config={config}", f"--hostname-override={node}")
            self._run_in(node, "backend", "python3", "-c", BACKEND, address, "80", node)
        for node in NODES:  # kube-proxy answers /healthz once its first sync is done

            def synced(n: str = node) -> bool:
                return in_ns(f"olb-{n}", "python3", "-c", HEALTHY, check=False).returncode == 0

            wait_for(f"kube-proxy on {node} synced", synced, 60, 0.5)

    def _run_in(self, node: str, name: str, *argv: str) -> None:
        with (self.workdir / f"{name}-{node}.log").open("ab") as log:
            argv = ("ip", "netns", "exec", f"olb-{node}", *argv)
            self.data_path.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def fetch(self, url: str, timeout: float = 2) -> str:
        """One HTTP GET from the far client (a new connection, so a new source port): the body."""
        got = in_ns(FAR, "python3", "-c", FETCH, url, str(timeout), check=False, timeout=timeout + 10)
        return got.stdout.strip() if got.returncode == 0 else f"error: {got.stderr.strip()[-200:]}"

    # -- speakers (layer 2 and BGP)

    def start_speakers(self, *args: str, nodes: tuple[str, ...] = NODES) -> None:
        for node in nodes:
            self.l2.start_speaker(node, "--bgp", "--frr-pathspace", node, *args)
        self.l2.wait_ready(nodes)

    def revive(self, node: str) -> None:
        """A node killed with l2.kill_node back: links up, its speaker started and ready."""
        self.l2.revive_node(node)
        self.start_speakers(nodes=(node,))

    def set_bfd_profile(self, profile: str | None, peer: str = "router-v4") -> None:
        """Give the BGPPeer a BFD profile, or take its profile away (None)."""
        op = {"op": "add", "path": "/spec/bfdProfile", "value": profile} if profile else {
            "op": "remove", "path": "/spec/bfdProfile"}  # fmt: skip
        self.l2.kubectl("patch", "bgppeer", "-n", "metallb-system", peer, "--type=json", "-p", json.dumps([op]))

    def speaker_logs(self) -> str:
        return "\n".join(f"--- {n}\n{s.log()[-3000:]}" for n, s in self.l2.speakers.items())
