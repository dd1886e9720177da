"""What clients behind a BGP router see while the control plane is down: HTTP every 10 ms from the
far client, through BIRD's ECMP routes, to two Service addresses while kube-apiserver is stopped.

The BGP lab (tests/support/bgplab.py): three node namespaces, each with FRR (driven by its
speaker), the real kube-proxy (iptables mode) and a backend; BIRD 2 as the router (BFD 300 ms x 3
on the IPv4 sessions, hash policy L4, so each new connection picks a next hop); the far client
behind it. Two Services: ``local`` (ETP Local, endpoints on n1, n2, n3) and ``cluster`` (ETP
Cluster, endpoints on n2 and n3). Speakers run with the engine's defaults.

1. ``outage``: the API server stopped (SIGSTOP) for ``--outage`` seconds: failed requests per
   address (target 0), BGP sessions reset (target none), next hops at the router throughout.
2. ``kill``: the API server stopped for 60 s, and 30 s in node n1 killed (speaker SIGKILLed,
   links down): BFD withdraws its next hop. Per run: longest silence (no answer arriving at all,
   target p95 <= 0.5 s), failed requests (the connections hashed to n1 before the withdrawal)
   and the time from the kill to the last of them (the dead node's flows' interruption).
3. After each outage: seconds from the API's return to every speaker's Lease renewed and to a
   Service created then getting its address; no address moved; sessions of live nodes not reset.

Results: bench/results/api-outage-bgp.json. Run as root, with no other lab up:
.venv/bin/python bench/bgp_api_outage_bench.py [--outage 60 --outage 600] [--kill-runs 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labkit import Request, failure_runs, longest_silence, outage_record, percentile  # noqa: E402

from tests.support.bgplab import FAR, BgpLab, resets  # noqa: E402
from tests.support.controlplane import wait_for  # noqa: E402
from tests.support.l2lab import NODES, service_manifest  # noqa: E402

RESULTS = REPO / "bench" / "results" / "api-outage-bgp.json"
HTTPPROBE = REPO / "lab" / "bin" / "httpprobe"
NS = "bench-bgp-outage"
SERVICES = {"local": (NODES, "externalTrafficPolicy: Local"), "cluster": (NODES[1:], "")}
VICTIM = NODES[0]


def stream(url: str, stop_file: Path, duration: float) -> subprocess.Popen[str]:
    stop_file.unlink(missing_ok=True)
    return subprocess.Popen(
        ["ip", "netns", "exec", FAR, sys.executable, str(HTTPPROBE), "stream", url, "--interval", "0.01",
         "--timeout", "1", "--duration", str(duration), "--until-file", str(stop_file)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def collect(probe: subprocess.Popen[str], stop_file: Path) -> list[Request]:
    stop_file.touch()
    out, _ = probe.communicate(timeout=120)
    return [Request(float(s), bool(ok), str(err), float(d)) for s, ok, err, d in json.loads(out)["requests"]]


def addresses(lab: BgpLab) -> dict[str, str]:
    return {name: lab.l2.service_ips(NS, name)[0] for name in SERVICES}


def answers(lab: BgpLab, ip: str) -> bool:
    return not lab.fetch(f"http://{ip}/").startswith("error")


def after_return(lab: BgpLab, returned: float, before: dict[str, str]) -> dict[str, Any]:
    """Leases renewed, a new Service handled, and no address moved, after the API came back."""

    def all_renewed() -> bool:
        leases = {i["metadata"]["name"]: i for i in lab.l2.get("leases", "-n", "metallb-system")["items"]}
        return all(
            (lease := leases.get(f"speaker-{n}")) is not None
            and dt.datetime.fromisoformat(lease["spec"]["renewTime"]).timestamp() > returned
            for n, spk in lab.l2.speakers.items()
            if spk.alive()
        )

    wait_for("every live speaker's Lease renewed", all_renewed, 60, 0.1)
    renewed = time.time() - returned
    name = f"after-{int(returned)}"
    lab.l2.apply(service_manifest(NS, name, nodes=NODES[1:]))
    lab.l2.service_ips(NS, name, timeout=60)
    handled = time.time() - returned
    lab.l2.kubectl("delete", "service", "-n", NS, name, "--wait=false")
    now = addresses(lab)
    return {
        "leases_renewed_s": round(renewed, 2),
        "new_service_handled_s": round(handled, 2),
        "moved": sorted(k for k, ip in before.items() if now.get(k) != ip),
    }


def outage(lab: BgpLab, workdir: Path, seconds: float, kill_at: float | None = None) -> dict[str, Any]:
    before = addresses(lab)
    for ip in before.values():
        lab.wait_next_hops(f"{ip}/32", set(NODES), timeout=30)
    sessions_before = lab.wait_established()
    stops = {name: workdir / f"stop-{name}" for name in before}
    probes = {name: stream(f"http://{ip}/", stops[name], seconds + 60) for name, ip in before.items()}
    time.sleep(2.0)
    load = os.getloadavg()[0]
    stopped = time.time()
    lab.l2.stop_api()
    killed = None
    hops_seen: dict[str, set[frozenset[str]]] = {name: set() for name in before}
    try:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if kill_at is not None and killed is None and time.time() - stopped >= kill_at:
                killed = time.time()
                lab.l2.kill_node(VICTIM)
            for name, ip in before.items():
                hops_seen[name].add(frozenset(lab.next_hops(f"{ip}/32")))
            time.sleep(min(1.0, max(left, 0.0)))
    finally:
        lab.l2.start_api()
    returned = time.time()
    time.sleep(3.0)
    results: dict[str, Any] = {"load_average_1m": round(load, 2), "outage_s": seconds}
    per_address = {}
    for name, probe in probes.items():
        requests = collect(probe, stops[name])
        during = [r for r in requests if stopped <= r.sent <= returned]
        entry: dict[str, Any] = {
            "address": before[name],
            "requests_during_outage": len(during),
            "failed_during_outage": sum(1 for r in during if not r.ok),
            "next_hop_sets_seen": sorted(sorted(hops) for hops in hops_seen[name]),
            "failure_runs": failure_runs(requests, stopped)[:10],
        }
        if killed is not None:
            after_kill = [r for r in during if r.sent >= killed]
            failed = [r for r in after_kill if not r.ok]
            entry["silence_after_kill_s"] = round(longest_silence(after_kill, killed), 3)
            entry["failed_after_kill"] = len(failed)
            entry["last_failure_after_kill_s"] = round(max((r.sent for r in failed), default=killed) - killed, 3)
        per_address[name] = entry
    results["addresses"] = per_address
    live = [n for n in NODES if n != VICTIM] if killed is not None else list(NODES)
    results["sessions_reset"] = [s for s in resets(sessions_before, lab.sessions()) if s.removesuffix("v6") in live]
    if killed is not None:
        results["killed"] = VICTIM
        lab.revive(VICTIM)
        lab.wait_established(timeout=60)
    results["after_return"] = after_return(lab, returned, before)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, action="append", help="seconds the API is stopped (default 60)")
    parser.add_argument("--kill-runs", type=int, default=5, help="outages with n1 killed 30 s in")
    parser.add_argument("--no-plain", action="store_true", help="skip the outages without a kill")
    args = parser.parse_args()
    targets = {"failed_requests": 0, "silence_after_kill_p95_s": 0.5, "sessions_reset": 0}
    record = outage_record(bfd="300 ms x 3", targets=targets)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record["outages"] = previous.get("outages", {})
    with tempfile.TemporaryDirectory(prefix="bgp-outage-") as tmp:
        workdir = Path(tmp)
        lab = BgpLab(workdir)
        try:
            lab.up()
            lab.start_speakers()
            lab.wait_established()
            lab.start_data_path()
            lab.l2.kubectl("create", "namespace", NS)
            for name, (nodes, extra) in SERVICES.items():
                lab.l2.apply(service_manifest(NS, name, nodes=nodes, extra=extra))
            for name, ip in addresses(lab).items():
                lab.wait_next_hops(f"{ip}/32", set(NODES))
                wait_for(f"{name} answers the far client", functools.partial(answers, lab, ip), 20, 0.2)
            for seconds in [] if args.no_plain else args.outage or [60.0]:
                run = outage(lab, workdir, seconds)
                record["outages"][f"{seconds:g}s"] = run
                print(json.dumps(run, indent=1), flush=True)
            kills = []
            for i in range(args.kill_runs):
                run = outage(lab, workdir, 60.0, kill_at=30.0)
                kills.append(run)
                got = {k: (a["silence_after_kill_s"], a["failed_after_kill"]) for k, a in run["addresses"].items()}
                print(f"kill run {i + 1}: (silence s, failed) {got}, {run['after_return']}", flush=True)
            if kills:
                silences = [float(a["silence_after_kill_s"]) for r in kills for a in r["addresses"].values()]
                flows = [float(a["last_failure_after_kill_s"]) for r in kills for a in r["addresses"].values()]
                record["kill_30s_into_60s"] = {
                    "summary": {
                        "runs": len(kills),
                        "silence_p50_s": round(statistics.median(silences), 3),
                        "silence_p95_s": round(percentile(silences, 95), 3),
                        "dead_node_flows_interrupted_p95_s": round(percentile(flows, 95), 3),
                        "sessions_reset": sum(len(r["sessions_reset"]) for r in kills),
                    },
                    "runs": kills,
                }
            elif "kill_30s_into_60s" in previous:
                record["kill_30s_into_60s"] = previous["kill_30s_into_60s"]
        finally:
            lab.down()
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
