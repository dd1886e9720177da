"""The podman lab as the molecule scenario `site` (and `make lab`) brings it up, for tests that
run against it: where it is, and how to reach its API, nodes and client."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("ONPREM_LAB_DIR", REPO / ".cache/molecule-lab/site"))
KUBECONFIG = LAB_DIR / "controlplane" / "admin.kubeconfig"
NODES = {"onprem-lab-n1": "203.0.113.162", "onprem-lab-n2": "203.0.113.163", "onprem-lab-n3": "203.0.113.164"}
CLIENT, CLIENT_IP = "onprem-lab-client", "203.0.113.166"
ENV = dict(os.environ, CONTAINERS_CONF=str(REPO / "lab/nodes/containers.conf"))


def sh(*argv: str, timeout: float = 120, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=timeout, check=False, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:6])}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    kubectl_bin = Path(sh(str(REPO / "lab/bin/controlplane"), "bin-dir").strip()) / "kubectl"
    return sh(str(kubectl_bin), f"--kubeconfig={KUBECONFIG}", *args, input=input, check=check)


def on(host: str, *cmd: str, check: bool = True) -> str:
    return sh("podman", "exec", host, *cmd, check=check)


def node_of_mac(mac: str) -> str:
    for node in NODES:
        if on(node, "cat", "/sys/class/net/eth0/address").strip().lower() == mac:
            return node
    raise AssertionError(f"{mac} is no node's")


def arp_owner(vip: str) -> str | None:
    out = on(CLIENT, "arping", "-c", "1", "-w", "2", "-I", "eth0", vip, check=False)
    macs = {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", out)}
    assert len(macs) <= 1, f"{vip} answered by {macs}"
    return node_of_mac(macs.pop()) if macs else None
