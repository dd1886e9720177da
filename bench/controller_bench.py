"""onprem-lb controller benchmark against a real control plane (its own, started here).

1. 5,000 LoadBalancer Services present; then Services are created one at a time and the time
   from "create returned" to "status.loadBalancer written" is taken from a watch (p50/p99).
2. 10,000 Services present; the controller is restarted; time to rebuild state (list +
   restore) and to reconcile every Service once.
3. Peak and current RSS of the controller process with 10,000 Services.

Targets (issue 4): p99 < 100 ms, resync < 10 s, RSS < 150 MB. Results: bench/results/controller.json.
Run: .venv/bin/python bench/controller_bench.py  (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[1]
CONTROLPLANE = REPO / "lab" / "bin" / "controlplane"
RESULTS = REPO / "bench" / "results" / "controller.json"
NS = "bench"


def kubectl(kc: Path, *args: str) -> None:
    bins = subprocess.run(
        [str(REPO / "lab" / "bin" / "controlplane"), "bin-dir"], capture_output=True, text=True, check=True, timeout=30
    )
    kubectl_bin = Path(bins.stdout.strip()) / "kubectl"
    subprocess.run([str(kubectl_bin), "--kubeconfig", str(kc), *args], check=True, capture_output=True, timeout=120)


def service(name: str) -> dict[str, Any]:
    # No node ports: the NodePort range (2,768 ports) could not hold 10,000 Services.
    spec = {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]}
    return {"metadata": {"name": name}, "spec": spec}


def create_many(core: client.CoreV1Api, names: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: core.create_namespaced_service(NS, service(n)), names))


def allocated(core: client.CoreV1Api) -> int:
    cont, count = None, 0
    while True:
        page = core.list_namespaced_service(NS, limit=2000, _continue=cont)
        count += sum(1 for s in page.items if s.status.load_balancer.ingress)
        cont = page.metadata._continue
        if not cont:
            return count


def wait_allocated(core: client.CoreV1Api, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while allocated(core) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {allocated(core)} of {n} Services allocated after {timeout}s")
        time.sleep(1)


def start_controller(kc: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    # ONPREM_LB_SRC: another checkout's src/, to measure an earlier engine with the same bench
    env = dict(os.environ, PYTHONPATH=os.environ.get("ONPREM_LB_SRC", str(REPO / "src")))
    cmd = [sys.executable, "-m", "onprem_lb", "controller", "--kubeconfig", str(kc), "--metrics-address", "", *extra]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def wait_log(log: Path, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text())
        if m:
            return m
        time.sleep(0.05)
    raise SystemExit(f"{pattern!r} not in {log} after {timeout}s")


def rss_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def latency_run(core: client.CoreV1Api, count: int) -> list[float]:
    seen: dict[str, float] = {}
    stop = threading.Event()
    ready = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        rv = core.list_namespaced_service(NS, limit=1).metadata.resource_version
        ready.set()
        for ev in w.stream(core.list_namespaced_service, NS, resource_version=rv, timeout_seconds=300):
            obj = ev["object"]
            if obj.metadata.name.startswith("lat-") and obj.status.load_balancer.ingress:
                seen.setdefault(obj.metadata.name, time.perf_counter())
            if stop.is_set():
                w.stop()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    ready.wait(30)
    created: dict[str, float] = {}
    for i in range(count):
        name = f"lat-{i:04d}"
        core.create_namespaced_service(NS, service(name))
        created[name] = time.perf_counter()
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    return sorted((seen[n] - created[n]) * 1000 for n in created if n in seen)


@contextlib.contextmanager
def bench_cluster(prefix: str) -> Iterator[tuple[Path, Path, client.CoreV1Api]]:
    """A control plane of the bench's own with the metallb.io CRDs and one /16 pool (10.200.0.0/16):
    (work directory, kubeconfig, a client). Stopped and purged at the end."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    cp = workdir / "cp"
    subprocess.run([str(CONTROLPLANE), "up", "--dir", str(cp)], check=True, capture_output=True, timeout=300)
    kc = cp / "admin.kubeconfig"
    try:
        kubectl(kc, "apply", "-f", str(REPO / "roles" / "lb_controller" / "files" / "crds"))
        time.sleep(2)
        kubectl(kc, "create", "namespace", "metallb-system")
        pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n"
        pool += "metadata: {name: bulk, namespace: metallb-system}\nspec: {addresses: [10.200.0.0/16]}\n"
        (workdir / "pool.yaml").write_text(pool)
        kubectl(kc, "apply", "-f", str(workdir / "pool.yaml"))
        api = config.new_client_from_config(config_file=str(kc))
        api.configuration.connection_pool_maxsize = 16
        yield workdir, kc, client.CoreV1Api(api)
    finally:
        subprocess.run(
            [str(CONTROLPLANE), "down", "--purge", "--dir", str(cp)], capture_output=True, timeout=120, check=False
        )


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(30)


def main() -> int:
    with bench_cluster("onprem-lb-bench-") as (workdir, kc, core):
        procs: list[subprocess.Popen[bytes]] = []
        try:
            return _run(workdir, kc, core, procs)
        finally:
            stop_all(procs)


def _run(workdir: Path, kc: Path, core: client.CoreV1Api, procs: list[subprocess.Popen[bytes]]) -> int:
    kubectl(kc, "create", "namespace", NS)
    log1 = workdir / "controller-1.log"
    procs.append(start_controller(kc, log1))
    wait_log(log1, "caught up", 60)

    t0 = time.monotonic()
    create_many(core, [f"pre-{i:05d}" for i in range(5000)])
    wait_allocated(core, 5000, 300)
    prefill_s = time.monotonic() - t0
    lat = latency_run(core, 200)
    create_many(core, [f"pre-{i:05d}" for i in range(5000, 9800)])
    wait_allocated(core, 10000, 400)
    rss_before_restart = rss_mb(procs[0].pid)

    procs[0].send_signal(signal.SIGTERM)
    procs[0].wait(30)
    log2 = workdir / "controller-2.log"
    started = time.monotonic()
    procs.append(start_controller(kc, log2))
    rebuilt = wait_log(log2, r"state rebuilt: (\d+) services, (\d+) addresses kept.*in ([0-9.]+) s", 120)
    wait_log(log2, "caught up", 120)
    resync_total = time.monotonic() - started
    caught = re.search(r"caught up: \d+ queue entries handled for (\d+) services in ([0-9.]+) s", log2.read_text())
    assert caught is not None
    moved = "assigned " in log2.read_text()
    rss_after = rss_mb(procs[1].pid)

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "prefill_5000_services_s": round(prefill_s, 1),
        "create_to_status_ms": {
            "samples": len(lat),
            "p50": round(statistics.median(lat), 1),
            "p99": round(lat[int(len(lat) * 0.99) - 1], 1),
            "max": round(lat[-1], 1),
            "background_services": 5000,
        },
        "resync_10000": {
            "process_start_to_caught_up_s": round(resync_total, 2),
            "list_and_restore_s": float(rebuilt.group(3)),
            "addresses_kept": int(rebuilt.group(2)),
            "reconcile_all_s": float(caught.group(2)),
            "addresses_moved": moved,
        },
        "rss_mb": {"after_10000_allocations": rss_before_restart, "after_resync_10000": rss_after},
        "targets": {"p99_ms": 100, "resync_s": 10, "rss_mb": 150},
    }
    result["met"] = {
        "p99": result["create_to_status_ms"]["p99"] < 100,  # type: ignore[index]
        "resync": resync_total < 10,
        "rss": max(rss_before_restart["VmHWM"], rss_after["VmHWM"]) < 150,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
