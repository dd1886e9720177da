"""The control-plane address under failure: what a client of the Kubernetes API feels.

In the netns lab of the e2e tests (tests/support/cplab.py: three control-plane nodes, a real
kube-apiserver each on one shared etcd, `onprem-lb control-plane` on each), the client sends
GET /readyz through the address every 10 ms (each on its own TLS connection and thread, 1 s
timeout; lab/bin/httpprobe) while the holder's kube-apiserver is SIGKILLed (and, with
--node-runs, while the holder's whole node dies: daemon and apiserver killed, links down). The
daemons keep running across runs, as on a cluster: the address moves to a survivor, the killed
apiserver is started again, and the next run kills the new holder's.

Per run: the longest run of failed requests (first failed request sent to the next successful
one) and the longest silence (no successful answer arriving). Target (issue 26): longest failure
p95 <= 1 s over 20 runs. Results: bench/results/control-plane-address.json.
Run as root: PYTHONPATH=src .venv/bin/python bench/control_plane_bench.py [--runs 20] [--node-runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from labkit import REPO, Request, longest_failure, longest_silence, outage_record, percentile

from tests.support.cplab import CpLab

RESULTS = REPO / "bench" / "results" / "control-plane-address.json"


def one_run(lab: CpLab, kind: str) -> dict[str, object]:
    holder = lab.wait_holder("any")
    assert holder is not None
    with lab.stream(duration=60) as seen:
        killed_at = time.time()
        if kind == "apiserver":
            lab.kill_apiserver(holder)
        else:
            lab.kill_node(holder)
        successor = lab.wait_holder("any", timeout=15, besides=holder)
        time.sleep(1.5)
    requests = [Request(float(s), bool(ok), str(e), float(d)) for s, ok, e, d in seen["requests"]]
    after = [r for r in requests if r.sent >= killed_at - 0.05]
    failed = [r for r in after if not r.ok]
    _, longest = longest_failure(requests, killed_at - 0.05)
    errors: dict[str, int] = {}
    for r in failed:
        errors[r.error] = errors.get(r.error, 0) + 1
    if kind == "node":
        lab.revive_node(holder)
        lab.start_daemon(holder)
    else:
        lab.start_apiserver(holder)
    lab.wait_apiserver(holder)
    return {
        "kind": kind,
        "holder": holder,
        "successor": successor,
        "requests": len(after),
        "failed": len(failed),
        "errors": errors,
        "longest_failure_s": round(longest, 3),
        "longest_silence_s": round(longest_silence(after, killed_at), 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def summary(runs: list[dict[str, object]]) -> dict[str, float]:
    gaps = [float(r["longest_failure_s"]) for r in runs]  # type: ignore[arg-type]
    silences = [float(r["longest_silence_s"]) for r in runs]  # type: ignore[arg-type]
    return {
        "runs": len(runs),
        "longest_failure_p50_s": round(statistics.median(gaps), 3),
        "longest_failure_p95_s": round(percentile(gaps, 95), 3),
        "longest_failure_max_s": round(max(gaps), 3),
        "longest_silence_p95_s": round(percentile(silences, 95), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="apiserver kills (default 20)")
    parser.add_argument("--node-runs", type=int, default=5, help="node kills (default 5)")
    args = parser.parse_args()
    lab = CpLab(Path(tempfile.mkdtemp(prefix="cp-bench-")))
    lab.up()
    runs: list[dict[str, object]] = []
    try:
        lab.start_daemons()
        for kind, count in (("apiserver", args.runs), ("node", args.node_runs)):
            for i in range(count):
                run = one_run(lab, kind)
                runs.append(run)
                print(f"{kind} run {i + 1}: longest failure {run['longest_failure_s']} s, "
                      f"{run['failed']} of {run['requests']} failed", flush=True)  # fmt: skip
    finally:
        lab.stop_daemons()
        lab.down()
    record = outage_record(
        targets={"longest_failure_p95_s": 1.0},
        apiserver_killed=summary([r for r in runs if r["kind"] == "apiserver"]),
        node_killed=summary([r for r in runs if r["kind"] == "node"]) if args.node_runs else None,
        runs=runs,
    )
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
