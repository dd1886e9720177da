"""IPAM benchmark: 100k allocations from a large IPv4 pool and from an IPv6 /64.

Each scenario runs in a fresh process, so peak RSS (ru_maxrss) belongs to that scenario alone.
Measures: allocate N services, release every other one, re-allocate the released half.
Targets (issue 3): each 100k run under 2 s and under 200 MB.

    python bench/ipam_bench.py            # prints a table and writes bench/results/ipam.json
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".cache" / "collections"))

N = 100_000
SCENARIOS = {
    "ipv4-/12": ({"addresses": ["10.0.0.0/12"]}, ["IPv4"]),
    "ipv6-/64": ({"addresses": ["2001:db8::/64"]}, ["IPv6"]),
}


def run_scenario(name: str) -> dict[str, object]:
    from ansible_collections.onprem.ingress.plugins.module_utils.ipam import (  # noqa: PLC0415
        Allocator,
        Pool,
        ServiceRequest,
    )

    spec, families = SCENARIOS[name]
    fam = tuple(4 if f == "IPv4" else 6 for f in families)
    requests = [ServiceRequest(key=f"ns/svc-{i}", namespace="ns", families=fam) for i in range(N)]
    allocator = Allocator([Pool.from_spec("bench", spec)])

    t0 = time.perf_counter()
    for r in requests:
        allocator.allocate(r)
    t_alloc = time.perf_counter() - t0

    t0 = time.perf_counter()
    for r in requests[::2]:
        allocator.release(r.key)
    t_release = time.perf_counter() - t0

    t0 = time.perf_counter()
    for r in requests[::2]:
        allocator.allocate(r)
    t_realloc = time.perf_counter() - t0

    used = allocator.usage("bench").used
    assert sum(used.values()) == N, used
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "scenario": name,
        "services": N,
        "allocate_s": round(t_alloc, 3),
        "release_half_s": round(t_release, 3),
        "reallocate_half_s": round(t_realloc, 3),
        "total_s": round(t_alloc + t_release + t_realloc, 3),
        "peak_rss_mb": round(rss_mb, 1),
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_scenario(sys.argv[2])))
        return 0
    results = []
    for name in SCENARIOS:
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout))
    targets = {"total_s": 2.0, "peak_rss_mb": 200.0}
    print(f"{'scenario':10} {'alloc s':>8} {'release s':>10} {'realloc s':>10} {'total s':>8} {'peak MB':>8}  target")
    for r in results:
        ok = r["total_s"] < targets["total_s"] and r["peak_rss_mb"] < targets["peak_rss_mb"]
        print(
            f"{r['scenario']:10} {r['allocate_s']:>8} {r['release_half_s']:>10} {r['reallocate_half_s']:>10} "
            f"{r['total_s']:>8} {r['peak_rss_mb']:>8}  {'met' if ok else 'MISSED'} (<2 s, <200 MB)"
        )
    record = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": __import__("os").cpu_count(),
            "platform": platform.platform(),
        },
        "targets": targets,
        "results": results,
    }
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "ipam.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
