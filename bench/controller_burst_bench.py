"""onprem-lb controller in a burst: per-Service create → status latency while Services pour in.

On a control plane of its own (started and purged here), with one /16 pool:

1. 1,000 Services created 8 at a time (8 client threads), then 5,000 the same way;
2. 1,000 Services and their EndpointSlices in one `kubectl apply` (a List).

Both times of a Service come from one watch: when it was ADDED, and when it was first seen with
status.loadBalancer.ingress; so the watch's own delay cancels out. Reported: p50/p99/max of that
latency, and the time from the last create to the last allocation.

Target (issue 13): p99 <= 1 s during the burst. Results: bench/results/controller-burst.json.
Run: .venv/bin/python bench/controller_burst_bench.py [--label NAME]  (about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from controller_bench import REPO, bench_cluster, kubectl, service, start_controller, stop_all, wait_log
from kubernetes import client, watch

RESULTS = REPO / "bench" / "results" / "controller-burst.json"


class Watcher:
    """ADDED time and first-allocated time of every Service in one namespace."""

    def __init__(self, core: client.CoreV1Api, ns: str) -> None:
        self.added: dict[str, float] = {}
        self.allocated: dict[str, float] = {}
        self._stop = threading.Event()
        ready = threading.Event()

        def run() -> None:
            w = watch.Watch()
            rv = core.list_namespaced_service(ns, limit=1).metadata.resource_version
            ready.set()
            try:
                for ev in w.stream(core.list_namespaced_service, ns, resource_version=rv, timeout_seconds=900):
                    now = time.perf_counter()
                    obj = ev["object"]
                    name = obj.metadata.name
                    if ev["type"] == "ADDED":
                        self.added.setdefault(name, now)
                    if obj.status.load_balancer.ingress:
                        self.allocated.setdefault(name, now)
                    if self._stop.is_set():
                        w.stop()
            except Exception:  # the control plane going away at the end; what was seen is kept
                if not self._stop.is_set():
                    raise

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(30)

    def wait_all(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.allocated) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()

    def report(self, count: int, last_create: float) -> dict[str, Any]:
        lat = sorted(self.allocated[n] - self.added[n] for n in self.allocated if n in self.added)
        done = max(self.allocated.values()) if self.allocated else float("nan")
        return {
            "services": count,
            "allocated": len(self.allocated),
            "p50_s": round(lat[len(lat) // 2], 3) if lat else None,
            "p99_s": round(lat[max(0, int(len(lat) * 0.99) - 1)], 3) if lat else None,
            "max_s": round(lat[-1], 3) if lat else None,
            "last_create_to_all_allocated_s": round(done - last_create, 2),
        }


def threaded_burst(core: client.CoreV1Api, ns: str, count: int, threads: int = 8) -> dict[str, Any]:
    core.create_namespace({"metadata": {"name": ns}})
    watcher = Watcher(core, ns)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: core.create_namespaced_service(ns, service(f"s-{i:05d}")), range(count)))
    last_create = time.perf_counter()
    watcher.wait_all(count, 300)
    return {"create_s": round(last_create - started, 1), **watcher.report(count, last_create)}


def apply_burst(core: client.CoreV1Api, kc: Path, workdir: Path, ns: str, count: int) -> dict[str, Any]:
    core.create_namespace({"metadata": {"name": ns}})
    items: list[dict[str, Any]] = []
    for i in range(count):
        name = f"a-{i:05d}"
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                      "spec": {**service(name)["spec"], "selector": {"app": name}}})  # fmt: skip
        items.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"], "conditions": {"ready": True}}],
        })  # fmt: skip
    path = workdir / f"{ns}.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    watcher = Watcher(core, ns)
    started = time.perf_counter()
    kubectl(kc, "apply", "-f", str(path))
    last_create = time.perf_counter()
    watcher.wait_all(count, 300)
    return {"apply_s": round(last_create - started, 1), **watcher.report(count, last_create)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="current", help="the name this run is recorded under")
    parser.add_argument("--sizes", default="1000,5000", help="threaded burst sizes")
    parser.add_argument("--controller-arg", action="append", default=[], help="passed to the controller (repeat)")
    args = parser.parse_args()
    with bench_cluster("onprem-lb-burst-") as (workdir, kc, core):
        procs: list[subprocess.Popen[bytes]] = []
        try:
            return _run(args, workdir, kc, core, procs)
        finally:
            stop_all(procs)


def _run(
    args: argparse.Namespace, workdir: Path, kc: Path, core: client.CoreV1Api, procs: list[subprocess.Popen[bytes]]
) -> int:
    log = workdir / "controller.log"
    procs.append(start_controller(kc, log, *args.controller_arg))
    wait_log(log, "caught up", 60)
    runs: dict[str, Any] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        runs[f"threaded_{size}"] = threaded_burst(core, f"burst-{size}", size)
        print(json.dumps({f"threaded_{size}": runs[f"threaded_{size}"]}), flush=True)
    runs["kubectl_apply_1000_with_endpointslices"] = apply_burst(core, kc, workdir, "apply-1000", 1000)
    print(json.dumps({"apply": runs["kubectl_apply_1000_with_endpointslices"]}), flush=True)
    load = os.getloadavg()[0]
    record = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1m_at_end": round(load, 2),
        "runs": runs,
        "controller_args": args.controller_arg,
        "engine_src": os.environ.get("ONPREM_LB_SRC", "this checkout"),
        "target": {"p99_s": 1.0},
        "met": all((r.get("p99_s") or 99) <= 1.0 for r in runs.values()),
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = record
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
