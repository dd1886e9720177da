"""The control-plane address lab, for the end-to-end tests and its bench.

The layer 2 lab's wiring (lab/bin/netlab): three control-plane nodes n1..n3 and a client on
segment A. One etcd on the host (shared by every apiserver: what is under test is the address,
not etcd's own clustering), a real kube-apiserver in each node's namespace (bound to every
address, port 6443, advertising the node's segment A address), and `onprem-lb control-plane` in
each node, with the settings file the control_plane_address role writes. Clients (kubectl,
lab/bin/httpprobe) run in the client namespace and use only the address.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.controlplane import REPO, SRC, controlplane_bin_dir, run_controlplane, stop_process, wait_for
from tests.support.l2lab import API_ADDRESS, CLIENT, L2PROBE, NETLAB, NODES, in_ns, sh

ADDRESS_V4 = "192.0.2.250"
ADDRESS_V6 = "2001:db8:a::250"
HTTPPROBE = REPO / "lab" / "bin" / "httpprobe"
HEARTBEAT_PORT = 7947
API_PORT = 6443


def node_address(node: str) -> str:
    return f"192.0.2.{10 + NODES.index(node) + 1}"


def url(address: str, path: str = "/readyz") -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{API_PORT}{path}"


class CpLab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cp_dir = workdir / "cp"
        self.apiservers: dict[str, subprocess.Popen[bytes]] = {}
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        self._macs: dict[str, str] = {}
        self._runs = 0
        self.through_address = workdir / "through-address.kubeconfig"  # written by up()

    # -- lifecycle

    def up(self) -> None:
        try:
            self._up()
        except BaseException:
            self.down()
            raise

    def _up(self) -> None:
        sh(str(NETLAB), "up", "--nodes", str(len(NODES)), timeout=120)
        sans = [f"--san={a}" for a in (ADDRESS_V4, ADDRESS_V6, *map(node_address, NODES))]
        started = run_controlplane("up", "--dir", str(self.cp_dir), "--address", API_ADDRESS, "--etcd-shared", *sans)
        if started.returncode != 0:
            raise AssertionError(f"control plane did not start:\n{started.stdout}{started.stderr}")
        secret = self.workdir / "control-plane.secret"
        secret.write_text(os.urandom(16).hex() + "\n")
        secret.chmod(0o600)
        for node in NODES:
            self.settings_file(node).write_text(yaml.safe_dump(self.settings(node, secret), sort_keys=False))
        for node in NODES:
            self.start_apiserver(node)
        for node in NODES:
            self.wait_apiserver(node)
        self.through_address = self.client_kubeconfig()

    def down(self) -> None:
        for node in list(self.daemons):
            self.stop_daemon(node, signal.SIGKILL, 10)
        for proc in self.apiservers.values():
            stop_process(proc, signal.SIGKILL, 10)
        self.apiservers.clear()
        run_controlplane("down", "--dir", str(self.cp_dir))
        sh(str(NETLAB), "down", check=False)

    # -- the settings the control_plane_address role writes

    def settings(self, node: str, secret: Path) -> dict[str, Any]:
        return {
            "node": node,
            "addresses": [ADDRESS_V4, ADDRESS_V6],
            "interfaces": ["eth0"],
            "members": [
                {"name": n, "heartbeat": f"198.51.100.{10 + i + 1}:{HEARTBEAT_PORT}"} for i, n in enumerate(NODES)
            ],
            "secretFile": str(secret),
            "health": {"url": f"https://127.0.0.1:{API_PORT}/readyz"},
        }

    def settings_file(self, node: str) -> Path:
        return self.workdir / f"control-plane-{node}.yaml"

    # -- kube-apiservers, one per node

    def start_apiserver(self, node: str) -> None:
        out = run_controlplane(
            "apiserver-args", "--dir", str(self.cp_dir), "--bind", "::", "--advertise", node_address(node)
        )
        if out.returncode != 0:
            raise AssertionError(f"apiserver-args: {out.stdout}{out.stderr}")
        argv = json.loads(out.stdout)
        log = (self.workdir / f"apiserver-{node}.log").open("ab")
        self.apiservers[node] = subprocess.Popen(
            ["ip", "netns", "exec", f"olb-{node}", *argv], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_apiserver(self, node: str, timeout: float = 120) -> None:
        wait_for(f"{node}'s kube-apiserver ready", lambda: self.readyz_in(node), timeout, 0.5)

    def readyz_in(self, node: str) -> bool:
        probe = in_ns(f"olb-{node}", sys.executable, str(HTTPPROBE), "stream", url("127.0.0.1"),
                      "--duration", "0.01", "--timeout", "2", check=False, timeout=30)  # fmt: skip
        try:
            return all(request[1] for request in json.loads(probe.stdout)["requests"])
        except (ValueError, KeyError):
            return False

    def kill_apiserver(self, node: str) -> None:
        stop_process(self.apiservers.pop(node), signal.SIGKILL, 10)

    def pause_apiserver(self, node: str) -> None:
        """The apiserver hangs (SIGSTOP): its node and its daemon stay up, readyz times out."""
        os.killpg(self.apiservers[node].pid, signal.SIGSTOP)

    def resume_apiserver(self, node: str) -> None:
        os.killpg(self.apiservers[node].pid, signal.SIGCONT)

    # -- onprem-lb control-plane, one per node

    def start_daemons(self, nodes: tuple[str, ...] = NODES) -> None:
        for node in nodes:
            self.start_daemon(node)

    def daemon_command(self, node: str) -> list[str]:
        """What start_daemon runs in ``node``'s namespace: `onprem-lb control-plane` with the role's
        settings. A lab that measures another daemon in its place (the bench's kube-vip) says here."""
        return [sys.executable, "-m", "onprem_lb", "control-plane",
                "--config", str(self.settings_file(node)), "--state-file", str(self.state_file(node))]  # fmt: skip

    def start_daemon(self, node: str) -> subprocess.Popen[bytes]:
        """The daemon in its own session, so stop_daemon also ends what it starts (a supervisor's child)."""
        self._runs += 1
        log = (self.workdir / f"daemon-{node}-{self._runs}.log").open("ab")
        cmd = ["ip", "netns", "exec", f"olb-{node}", *self.daemon_command(node)]
        env = dict(os.environ, PYTHONPATH=str(SRC))
        self.daemons[node] = proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        return proc

    def stop_daemon(self, node: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Signal ``node``'s daemon and wait for it (bounded), then SIGKILL what is left of its session."""
        proc = self.daemons.pop(node)
        stop_process(proc, sig, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def state_file(self, node: str) -> Path:
        return self.workdir / f"state-{node}.json"

    def state(self, node: str) -> dict[str, Any]:
        return json.loads(self.state_file(node).read_text())  # type: ignore[no-any-return]

    def stop_daemons(self, sig: int = signal.SIGTERM) -> None:
        for node in list(self.daemons):
            self.stop_daemon(node, sig, 15)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(self.workdir.glob("daemon-*.log"))
        )

    def kill_node(self, node: str) -> None:
        """The node dies: its daemon and apiserver are SIGKILLed and its links go down."""
        self.stop_daemon(node, signal.SIGKILL, 10)
        self.kill_apiserver(node)
        for link in ("eth0", "eth1", "mgmt0"):
            in_ns(f"olb-{node}", "ip", "link", "set", link, "down")

    def revive_node(self, node: str) -> None:
        for link in ("eth0", "eth1", "mgmt0"):
            in_ns(f"olb-{node}", "ip", "link", "set", link, "up")
        self.start_apiserver(node)

    # -- what the client sees

    def mac(self, node: str) -> str:
        if node not in self._macs:
            self._macs[node] = in_ns(f"olb-{node}", "cat", "/sys/class/net/eth0/address").stdout.strip().lower()
        return self._macs[node]

    def holders(self, address: str = ADDRESS_V4, duration: float = 0.3) -> set[str]:
        """The nodes whose MACs answer ARP/NDP for ``address`` at the client (lab/bin/l2probe)."""
        out = in_ns(CLIENT, sys.executable, str(L2PROBE), "watch", "eth0", address,
                    "--interval", "0.03", "--duration", str(duration), timeout=duration + 30)  # fmt: skip
        macs = {mac for _t, mac in json.loads(out.stdout)["replies"]}
        by_mac = {self.mac(n): n for n in NODES}
        return {by_mac.get(m, m) for m in macs}

    def wait_holder(
        self, expected: str | None, address: str = ADDRESS_V4, timeout: float = 20, besides: str | None = None
    ) -> str | None:
        """Wait until exactly ``expected`` answers (None: nobody; "any": any one node, other than
        ``besides`` when given)."""
        last: list[set[str]] = [set()]

        def check() -> bool:
            last[0] = got = self.holders(address)
            if expected == "any":
                return len(got) == 1 and got <= set(NODES) - {besides}
            return got == ({expected} if expected else set())

        try:
            wait_for(f"{address} answered by {expected or 'nobody'}", check, timeout, 0.05)
        except AssertionError:
            raise AssertionError(f"{address}: wanted {expected}, last seen {last[0]}\n{self.logs()}") from None
        return next(iter(last[0]), None)

    def client_kubeconfig(self) -> Path:
        """The admin kubeconfig with the server replaced by the address: what a client of the cluster holds."""
        return self.admin_kubeconfig(url(ADDRESS_V4, ""), self.workdir / "through-address.kubeconfig")

    def admin_kubeconfig(self, server: str, path: Path) -> Path:
        """The lab's admin kubeconfig (system:masters) with another server, written to ``path``."""
        config = json.loads((self.cp_dir / "admin.kubeconfig").read_text())
        config["clusters"][0]["cluster"]["server"] = server
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def kubectl_via_address(self, *args: str, address: str = ADDRESS_V4) -> subprocess.CompletedProcess[str]:
        kubectl = str(controlplane_bin_dir() / "kubectl")
        return in_ns(CLIENT, kubectl, "--kubeconfig", str(self.through_address), "--server", url(address, ""),
                     "--request-timeout", "5s", *args, check=False, timeout=30)  # fmt: skip

    @contextlib.contextmanager
    def stream(self, address: str = ADDRESS_V4, duration: float = 60) -> Iterator[dict[str, Any]]:
        """GET /readyz through the address every 10 ms while the block runs; the dict gets
        ``requests`` ([sent, ok, error, done] each) when the block ends."""
        stop = self.workdir / f"stream-stop-{time.monotonic_ns()}"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", CLIENT, sys.executable, str(HTTPPROBE), "stream", url(address),
             "--interval", "0.01", "--timeout", "1", "--duration", str(duration), "--until-file", str(stop)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        result: dict[str, Any] = {}
        try:
            time.sleep(0.5)
            yield result
            time.sleep(0.5)
        finally:
            stop.write_text("")
            out = proc.communicate(timeout=duration + 30)[0]
            stop.unlink(missing_ok=True)
        result.update(json.loads(out))


def longest_failure(requests: list[list[Any]]) -> float:
    """The longest time during which requests sent failed: from the first failed request's send
    to the next successful request's send (0.0 when none failed)."""
    longest, began = 0.0, None
    for request in requests:
        sent, ok = request[0], request[1]
        if ok and began is not None:
            longest, began = max(longest, sent - began), None
        elif not ok and began is None:
            began = sent
    if began is not None and requests:
        longest = max(longest, requests[-1][0] - began)
    return longest
