"""What the lab benchmarks share: the running lab (`make lab`), its client, and the API.

The benchmarks drive the lab `lab/bin/lab up` brings up (three podman nodes, a client, the real
control plane, kwok, kube-proxy and real web servers as Pods; see docs/guides/lab.md).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.controlplane import wait_for  # noqa: E402
from tests.support.lab import web_deployment  # noqa: E402

__all__ = ["wait_for", "web_deployment"]  # for the benchmarks, with the helpers below
LAB_DIR = Path(os.environ.get("ONPREM_LAB_DIR", REPO / ".lab"))
NODES = {"onprem-lab-n1": "203.0.113.162", "onprem-lab-n2": "203.0.113.163", "onprem-lab-n3": "203.0.113.164"}
CLIENT = "onprem-lab-client"
ENV = dict(
    os.environ,
    PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
    ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache" / "collections"),
    ANSIBLE_CONNECTION_PLUGINS=str(REPO / "extensions" / "molecule" / "shared" / "connection_plugins"),
    ANSIBLE_PIPELINING="true",
    CONTAINERS_CONF=str(REPO / "lab" / "nodes" / "containers.conf"),
    ONPREM_LAB_DIR=str(LAB_DIR),
)


def sh(*cmd: str, timeout: float = 900, check: bool = True) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return result.stdout


def on(host: str, *cmd: str, check: bool = True, timeout: float = 120) -> str:
    return sh("podman", "exec", host, *cmd, check=check, timeout=timeout)


def lab_up() -> client.ApiClient:
    """The lab's API client; brings the lab up (lab/bin/lab up) unless its client runs."""
    if CLIENT not in sh("podman", "ps", "--format", "{{.Names}}").split() or not (LAB_DIR / "controlplane").is_dir():
        sh(str(REPO / "lab" / "bin" / "lab"), "up", "--dir", str(LAB_DIR), timeout=1800)
    sh("podman", "cp", str(REPO / "lab" / "bin" / "httpprobe"), f"{CLIENT}:/usr/local/bin/httpprobe")
    return config.new_client_from_config(config_file=str(LAB_DIR / "controlplane" / "admin.kubeconfig"))


def node_macs() -> dict[str, str]:
    """MAC -> node, for the nodes that run (podman gives a node a new MAC when it starts again)."""
    macs = {n: on(n, "cat", "/sys/class/net/eth0/address", check=False).strip().lower() for n in NODES}
    return {mac: n for n, mac in macs.items() if mac}


def arp_owner(vip: str, macs: dict[str, str]) -> str | None:
    out = on(CLIENT, "arping", "-c", "1", "-w", "2", "-I", "eth0", vip, check=False)
    found = {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", out)}
    return macs.get(found.pop()) if len(found) == 1 else None


def start_stream(url: str, stop_file: str, host: str | None = None, duration: float = 300) -> subprocess.Popen[str]:
    """A GET every 10 ms from the client until ``stop_file`` exists (at most ``duration`` s);
    ``host``: the Host header."""
    on(CLIENT, "rm", "-f", stop_file)
    return subprocess.Popen(
        ["podman", "exec", CLIENT, "python3", "/usr/local/bin/httpprobe", "stream", url,
         "--interval", "0.01", "--timeout", "1", "--duration", str(duration), "--until-file", stop_file,
         *(["--host", host] if host else [])],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip


class Request(NamedTuple):
    sent: float  # time.time() when the request was started
    ok: bool  # answered 200
    error: str  # what went wrong otherwise
    done: float  # time.time() when it ended


def stop_stream(probe: subprocess.Popen[str], stop_file: str) -> list[Request]:
    """The probe's requests, in the order sent."""
    on(CLIENT, "touch", stop_file)
    out, _ = probe.communicate(timeout=120)
    return [Request(float(s), bool(ok), str(err), float(d)) for s, ok, err, d in json.loads(out)["requests"]]


def longest_silence(requests: list[Request], since: float) -> float:
    """The longest time without a successful answer arriving, from `since` to the last request sent.

    What a user feels: a request that waited out the outage in a queue (the client's ARP
    entry resolving late) succeeds, but its answer arrives late, so it does not shorten this.
    """
    end = max((r.sent for r in requests), default=since)  # the end of the sending window
    edges = [since, *sorted(r.done for r in requests if r.ok and r.done >= since), end]
    return max(b - a for a, b in itertools.pairwise(edges))


def failure_runs(requests: list[Request], since: float) -> list[dict[str, object]]:
    """Each run of failed requests sent after `since`: when (s after it), how many, and why."""
    runs: list[dict[str, object]] = []
    current: dict[str, object] | None = None
    for sent, ok, err, _ in requests:
        if sent < since:
            continue
        if ok:
            current = None
            continue
        if current is None:
            current = {"at_s": round(sent - since, 3), "failed": 0, "errors": {}}
            runs.append(current)
        current["failed"] = int(current["failed"]) + 1  # type: ignore[call-overload]
        errors = current["errors"]
        assert isinstance(errors, dict)
        errors[err] = errors.get(err, 0) + 1
    return runs


def longest_failure(requests: list[Request], after: float) -> tuple[int, float]:
    """(failed requests in the longest run, its span in seconds) among requests sent after `after`.

    The span runs from the first failed request's send time to the next successful one's (to
    the last request's, when none succeeded again).
    """
    best = (0, 0.0)
    run_start: float | None = None
    count = 0
    tail = [r for r in requests if r[0] >= after]
    for sent, ok, _, _ in tail:
        if not ok:
            if run_start is None:
                run_start, count = sent, 0
            count += 1
        elif run_start is not None:
            best = max(best, (count, sent - run_start))
            run_start = None
    if run_start is not None:
        best = max(best, (count, tail[-1][0] - run_start))
    return best


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def fresh_namespace(api: client.ApiClient, name: str) -> None:
    """Create namespace `name`, first removing one a previous, interrupted run left."""
    core = client.CoreV1Api(api)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    if not gone():
        core.delete_namespace(name)
        wait_for(f"namespace {name} from an earlier run is gone", gone, timeout=120)
    core.create_namespace({"metadata": {"name": name}})


def outage_record(**extra: Any) -> dict[str, Any]:
    """The head of an API-outage bench's results: when, on what, how the clients asked, targets."""
    return {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "request_interval_s": 0.01,
        "request_timeout_s": 1.0,
        **extra,
    }
