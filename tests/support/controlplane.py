"""Shared test support: the control plane (lab/bin/controlplane), our kubectl, bounded waits,
onprem-lb controller processes. Integration and e2e tests, the molecule verifiers and the benches
import it from here; the pytest fixtures built on it are in tests/integration/conftest.py."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
CONTROLPLANE = REPO / "lab" / "bin" / "controlplane"


def pinned_versions() -> dict[str, str]:
    """lab/controlplane/versions.env as a dict (K8S_VERSION, ETCD_VERSION)."""
    lines = (REPO / "lab" / "controlplane" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@functools.cache
def controlplane_bin_dir() -> Path:
    """Where lab/bin/controlplane finds its binaries (asked of the script: one rule, one place)."""
    out = subprocess.run([str(CONTROLPLANE), "bin-dir"], capture_output=True, text=True, timeout=30, check=True)
    return Path(out.stdout.strip())


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    directory: Path | None  # None when the session was given an external control plane

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))


def wait_established(api: client.ApiClient, crd_name: str, timeout: float = 30) -> None:
    """Wait (bounded) until the API server serves a CustomResourceDefinition."""
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(crd_name)
        if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {crd_name} not Established after {timeout}s")


def run_controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONTROLPLANE), *args], capture_output=True, text=True, timeout=300, check=False)


# -- onprem-lb: CRDs, kubectl, controller processes ----------------------------------------------

CRD_DIR = REPO / "roles" / "lb_controller" / "files" / "crds"
POLICY_DIR = REPO / "roles" / "lb_controller" / "files" / "policies"
SRC = REPO / "src"


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    """Our built kubectl (the one on PATH may be another version)."""
    out = subprocess.run(
        [str(controlplane_bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return out.stdout + (out.stderr if not check else "")


T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30, interval: float = 0.1) -> T:
    """Poll check() until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Signal a process and wait for it, bounded; SIGKILL if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class LbController:
    """One `onprem-lb controller` process, its log in a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        env = dict(os.environ, PYTHONPATH=str(SRC))
        cmd = [sys.executable, "-m", "onprem_lb", "controller", "--kubeconfig", str(kubeconfig)]
        cmd += ["--metrics-address", "", "--retry-period", "0.5", "--renew-deadline", "2", "--lease-duration", "3"]
        self.proc = subprocess.Popen([*cmd, *args], stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        wait_for(f"{text!r} in {self.log_path}", lambda: text in self.log() or self.proc.poll() is not None, timeout)
        if text not in self.log():
            raise AssertionError(f"controller exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self._log.close()
        return stop_process(self.proc, sig, timeout)
