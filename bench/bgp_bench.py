"""onprem-lb speaker in BGP mode, measured at the router (BIRD 2 in the lab; tests/support/bgplab.py).

1. Service create -> route at the router: a LoadBalancer Service (ETP Cluster) is created; the
   time until BIRD holds its /32 with a next hop per node. N runs, one Service at a time.
2. Withdraw on node failure: the node dies (speaker SIGKILLed, links down; FRR left running but
   cut off); the time until BIRD drops its next hop from the /32. The IPv4 sessions, with BFD
   (300 ms x 3), then again with the BGPPeer's bfdProfile removed: the hold time (9 s) decides.
   (The IPv6 sessions announce graceful restart: a dead node's routes stay at the router as
   stale for the restart time, 120 s, which is what graceful restart is for; not measured.)
3. Session resets during churn: 100 Services created and deleted; BIRD's sessions' "since"
   (to half a second: BIRD prints it from a monotonic clock) and FRR's connectionsDropped.

Targets (issue 14): route <= 1 s, withdraw <= 1 s with BFD, 0 resets.
Results: bench/results/bgp.json. Run as root: .venv/bin/python bench/bgp_bench.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.bgplab import BgpLab, resets  # noqa: E402
from tests.support.l2lab import NODES, service_manifest  # noqa: E402

RESULTS = REPO / "bench" / "results" / "bgp.json"


def wait_until(check: Any, timeout: float) -> float | None:
    """Seconds until check() is true, polling every 10 ms; None past the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def require(what: str, check: Any, timeout: float) -> None:
    """A measurement's precondition: holds within the timeout, or the bench stops saying which."""
    if wait_until(check, timeout) is None:
        raise RuntimeError(f"bgp_bench: {what} did not hold within {timeout:.0f} s")


def summary(values: list[float | None]) -> dict[str, Any]:
    got = sorted(v for v in values if v is not None)
    return {
        "runs": len(values),
        "missed": len(values) - len(got),
        "p50_s": round(statistics.median(got), 3) if got else None,
        "p95_s": round(got[max(0, int(len(got) * 0.95 + 0.5) - 1)], 3) if got else None,
        "max_s": round(got[-1], 3) if got else None,
    }


def route_latency(lab: BgpLab, runs: int) -> dict[str, Any]:
    lab.l2.kubectl("create", "namespace", "bench-route")
    latencies: list[float | None] = []
    want = {f"203.0.113.{11 + i}" for i in range(len(NODES))}
    for i in range(runs):
        started = time.monotonic()
        lab.l2.apply(service_manifest("bench-route", f"r{i}"))
        (ip,) = lab.l2.service_ips("bench-route", f"r{i}")
        waited = wait_until(lambda ip=ip: lab.next_hops(f"{ip}/32") == want, 15)
        latencies.append(None if waited is None else time.monotonic() - started)
        time.sleep(0.3)
    lab.l2.kubectl("delete", "namespace", "bench-route", "--wait=false")
    return summary(latencies)


def withdraw(lab: BgpLab, runs: int, bfd: bool) -> dict[str, Any]:
    """IPv4: the node's next hop gone from the router after the node dies, with or without BFD."""
    name = "bench-bfd" if bfd else "bench-nobfd"
    reset_by_the_edit = None
    if not bfd:  # the peer without its BFD profile; BIRD's side of BFD then never comes up
        before = lab.wait_established()
        lab.set_bfd_profile(None)
        require("no BFD session up at the router", lambda: "Up" not in lab.birdc("show bfd sessions"), 30)
        time.sleep(2)
        reset_by_the_edit = len(resets(before, lab.wait_established()))
    lab.l2.kubectl("create", "namespace", name)
    lab.l2.apply(service_manifest(name, "web"))
    (ip,) = lab.l2.service_ips(name, "web")
    prefix = f"{ip}/32"
    times: list[float | None] = []
    for i in range(runs):
        victim = NODES[i % len(NODES)]
        hop = f"203.0.113.{11 + NODES.index(victim)}"
        require(f"{prefix} via every node", lambda: len(lab.next_hops(prefix)) == len(NODES), 60)
        started = time.monotonic()
        lab.l2.kill_node(victim)
        waited = wait_until(lambda hop=hop: hop not in lab.next_hops(prefix), 20)
        times.append(None if waited is None else time.monotonic() - started)
        lab.revive(victim)
    require(f"{prefix} via every node again", lambda: len(lab.next_hops(prefix)) == len(NODES), 60)
    lab.l2.kubectl("delete", "namespace", name, "--wait=false")
    if reset_by_the_edit is None:
        return summary(times)
    return {**summary(times), "sessions_reset_by_removing_the_bfd_profile": reset_by_the_edit}


def churn(lab: BgpLab, count: int) -> dict[str, Any]:
    lab.l2.apply(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: churn, namespace: metallb-system}\n"
        "spec: {addresses: [198.18.100.0/24], autoAssign: false}\n---\napiVersion: metallb.io/v1beta1\n"
        "kind: BGPAdvertisement\nmetadata: {name: churn, namespace: metallb-system}\nspec: {ipAddressPools: [churn]}\n"
    )
    lab.l2.kubectl("create", "namespace", "bench-churn")
    before, drops = lab.wait_established(), lab.frr_drops()
    pool = '{"metallb.io/address-pool": churn}'
    started = time.monotonic()
    lab.l2.apply("\n---\n".join(service_manifest("bench-churn", f"c{i}", annotations=pool) for i in range(count)))
    last = lab.l2.service_ips("bench-churn", f"c{count - 1}", timeout=60)[0]
    require(
        f"the last of {count} Services routed via every node",
        lambda: len(lab.next_hops(f"{last}/32")) == len(NODES),
        60,
    )
    all_routed = time.monotonic() - started
    lab.l2.kubectl("delete", "namespace", "bench-churn", "--wait=false")
    require(f"the last of {count} Services withdrawn", lambda: not lab.next_hops(f"{last}/32"), 60)
    after = lab.wait_established()
    dropped = lab.frr_drops()
    return {
        "services": count,
        "sessions": len(before),
        "resets": len(resets(before, after)),
        "frr_sessions_dropped": sum(dropped[node] - drops[node] for node in drops),
        "create_to_last_route_s": round(all_routed, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--label", default="frr-reload.py per change, debounce 0.1 s")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bgp_bench: run as root (network namespaces)", file=sys.stderr)
        return 2
    lab = BgpLab(Path(tempfile.mkdtemp(prefix="bgp-bench-")))
    lab.up()
    try:
        lab.start_speakers()
        lab.wait_established()
        record: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"),
            "route_after_create": route_latency(lab, args.runs),
            "withdraw_node_failure_bfd_v4": withdraw(lab, args.runs, bfd=True),
            "churn": churn(lab, 100),
            "withdraw_node_failure_no_bfd_v4": withdraw(lab, max(3, args.runs // 3), bfd=False),
            "targets": {"route_s": 1.0, "withdraw_with_bfd_s": 1.0, "resets": 0},
        }
    finally:
        lab.down()
    print(json.dumps(record, indent=2))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = record
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
