"""What clients see while the control plane is down: HTTP every 10 ms through every LoadBalancer
address of the lab (`make lab`: the demo's and one of our own) while kube-apiserver is stopped.

kube-apiserver is stopped with SIGSTOP (every request hangs, as when its node is gone or a route
is blackholed) and continued after the outage; the real kube-proxy on each node keeps its rules,
the speakers hold by membership (src/onprem_lb/speaker/layer2/quorum.py).

1. ``outage``: the API server stopped for ``--outage`` seconds (60 by default; 600 with
   ``--outage 600``): failed requests per address (target 0).
2. ``kill``: the API server stopped, and 30 s into the outage the node announcing our own
   Service (ETP Local, backends on n2 and n3) killed (`podman kill -s KILL`): longest silence
   after the kill, per run (target p95 <= 0.5 s).
3. After each outage: seconds from the API's return to every speaker's Lease renewed, and to
   the controller handling a Service created then (no address moved: checked per address).

Results: bench/results/api-outage.json. Run as root:
.venv/bin/python bench/api_outage_bench.py [--outage 60 --outage 600] [--kill-runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import time
from typing import Any

from http_failover_bench import BACKENDS, node_healthy, set_up
from kubernetes import client
from labkit import (
    CLIENT,
    LAB_DIR,
    NODES,
    REPO,
    arp_owner,
    failure_runs,
    lab_up,
    longest_silence,
    node_macs,
    on,
    outage_record,
    percentile,
    sh,
    start_stream,
    stop_stream,
    wait_for,
)

RESULTS = REPO / "bench" / "results" / "api-outage.json"
# the Host a Service's requests carry: the ingress controller (Traefik) routes seed 000's host to
# nginx, and answers 404 to a request for no host it serves
HOSTS = {"ingress-nginx/ingress-nginx-controller": "nginx.example.com"}


def api_pid() -> int:
    state = json.loads((LAB_DIR / "controlplane" / "state.json").read_text())
    return int(state["pids"]["kube-apiserver"])


def addresses(api: client.ApiClient) -> dict[str, str]:
    """namespace/name -> first address, of every LoadBalancer Service with one."""
    out = {}
    for svc in client.CoreV1Api(api).list_service_for_all_namespaces().items:
        ingress = (svc.status.load_balancer.ingress or []) if svc.status.load_balancer else []
        if svc.spec.type == "LoadBalancer" and ingress and ingress[0].ip:
            out[f"{svc.metadata.namespace}/{svc.metadata.name}"] = str(ingress[0].ip)
    return out


def backend_nodes(api: client.ApiClient, key: str) -> list[str]:
    """The nodes of the Service's ready endpoints (its EndpointSlices), before the outage: an
    address whose only backends are on the killed node cannot answer until the API is back and
    the endpoints are gone (kube-proxy keeps its rules), whatever announces it."""
    namespace, name = key.split("/", 1)
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}"
    )
    return sorted({
        str(e.node_name)
        for s in slices.items
        for e in (s.endpoints or [])
        if e.node_name and (e.conditions is None or e.conditions.ready is not False)
    })  # fmt: skip


def client_neighbour(ip: str, macs: dict[str, str]) -> str | None:
    """The node the client's own neighbour entry for ``ip`` sends to (its kernel's cache, not an
    arping's answer): an entry kept on a node that no longer announces the address (traffic
    through that node's kube-proxy keeps confirming it) goes dark when that node dies."""
    out = on(CLIENT, "ip", "neigh", "show", ip, check=False)
    found = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return macs.get(found.group(1).lower(), found.group(1)) if found else None


def after_return(api: client.ApiClient, returned: float, before: dict[str, str]) -> dict[str, Any]:
    """Leases renewed, a new Service handled, and no address moved, after the API came back."""
    coord = client.CoordinationV1Api(api)

    def all_renewed() -> bool:
        leases = {item.metadata.name: item for item in coord.list_namespaced_lease("metallb-system").items}
        return all(
            (lease := leases.get(f"speaker-{n}")) is not None and lease.spec.renew_time.timestamp() > returned
            for n in NODES
            if on(n, "systemctl", "is-active", "onprem-lb-speaker", check=False).strip() == "active"
        )

    wait_for("every Lease renewed", all_renewed, timeout=60, interval=0.1)
    renewed = time.time() - returned
    core = client.CoreV1Api(api)
    name = f"after-{int(returned)}"
    spec = {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80}]}
    core.create_namespaced_service("bench-failover", {"metadata": {"name": name}, "spec": spec})

    def allocated() -> bool:
        svc = core.read_namespaced_service(name, "bench-failover")
        return bool(svc.status.load_balancer and svc.status.load_balancer.ingress)

    wait_for("a Service created after the return gets its address", allocated, timeout=60, interval=0.05)
    handled = time.time() - returned
    core.delete_namespaced_service(name, "bench-failover")
    now = addresses(api)
    moved = sorted(k for k, ip in before.items() if now.get(k) != ip)
    return {"leases_renewed_s": round(renewed, 2), "new_service_handled_s": round(handled, 2), "moved": moved}


def outage(api: client.ApiClient, seconds: float, kill_at: float | None = None) -> dict[str, Any]:
    before = addresses(api)
    mine = before["bench-failover/web"]
    macs = node_macs()
    owner = wait_for(f"{mine} announced by a backend", lambda: o if (o := arp_owner(mine, macs)) in BACKENDS else None)
    backends = {key: backend_nodes(api, key) for key in before}
    announcers = {key: arp_owner(ip, macs) for key, ip in before.items()}
    neighbours = {key: client_neighbour(ip, macs) for key, ip in before.items()}
    probes = {key: (ip, start_stream(f"http://{ip}/", f"/run/stop-outage-{i}", HOSTS.get(key), seconds + 60))
              for i, (key, ip) in enumerate(sorted(before.items()))}  # fmt: skip
    time.sleep(2.0)
    pid = api_pid()
    load = os.getloadavg()[0]
    stopped = time.time()
    os.killpg(pid, signal.SIGSTOP)
    killed = None
    try:
        if kill_at is not None:
            time.sleep(kill_at)
            killed = time.time()
            sh("podman", "kill", "-s", "KILL", owner)
            time.sleep(seconds - kill_at)
        else:
            time.sleep(seconds)
    finally:
        os.killpg(pid, signal.SIGCONT)
    returned = time.time()
    time.sleep(3.0)
    results: dict[str, Any] = {"load_average_1m": round(load, 2), "outage_s": seconds}
    per_address = {}
    for i, (key, (ip, probe)) in enumerate(sorted(probes.items())):
        requests = stop_stream(probe, f"/run/stop-outage-{i}")
        during = [r for r in requests if stopped <= r.sent <= returned]
        per_address[key] = {
            "address": ip,
            "announced_by": announcers[key],
            "client_sends_to": neighbours[key],
            "backends_on": backends[key],
            "requests_during_outage": len(during),
            "failed_during_outage": sum(1 for r in during if not r.ok),
            "failure_runs": failure_runs(requests, stopped)[:10],
        }
        if killed is not None and key == "bench-failover/web":
            results["killed"] = owner
            results["silence_after_kill_s"] = round(
                longest_silence([r for r in requests if r.sent <= returned], killed), 3
            )
    results["addresses"] = per_address
    if killed is not None:  # the node back before measuring the return, as an operator would
        sh("podman", "start", owner)
        wait_for(f"{owner} boots", lambda: on(owner, "systemctl", "is-system-running", "--wait", check=False).strip()
                 in ("running", "degraded"), timeout=120)  # fmt: skip
        wait_for(f"{owner}'s speaker is back", lambda: node_healthy(api, owner, returned), timeout=120)
    results["after_return"] = after_return(api, returned, before)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--outage", type=float, action="append", help="seconds the API server is stopped (repeatable; default 60)"
    )
    parser.add_argument("--kill-runs", type=int, default=5, help="outages with the owner killed 30 s in")
    parser.add_argument("--no-plain", action="store_true", help="skip the outage without a kill")
    args = parser.parse_args()
    api = lab_up()
    set_up(api)
    record = outage_record(targets={"failed_requests": 0, "silence_after_kill_p95_s": 0.5})
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record["outages"] = previous.get("outages", {})
    try:
        for seconds in [] if args.no_plain else args.outage or [60.0]:
            run = outage(api, seconds)
            record["outages"][f"{seconds:g}s"] = run
            print(json.dumps(run, indent=1), flush=True)
        kills = []
        for i in range(args.kill_runs):
            run = outage(api, 60.0, kill_at=30.0)
            kills.append(run)
            print(f"kill run {i + 1}: silence {run['silence_after_kill_s']} s, {run['after_return']}", flush=True)
        if kills:
            silences = [float(r["silence_after_kill_s"]) for r in kills]
            record["kill_30s_into_60s"] = {
                "summary": {
                    "runs": len(kills),
                    "silence_p50_s": round(statistics.median(silences), 3),
                    "silence_p95_s": round(percentile(silences, 95), 3),
                    # the other addresses, apart by whether a backend died with the killed node
                    # (kube-proxy keeps sending connections there until the API is back)
                    "failed_other_addresses_backend_killed": sum(
                        a["failed_during_outage"]
                        for r in kills
                        for k, a in r["addresses"].items()
                        if k != "bench-failover/web" and r["killed"] in a["backends_on"]
                    ),
                    "failed_other_addresses_backends_alive": sum(
                        a["failed_during_outage"]
                        for r in kills
                        for k, a in r["addresses"].items()
                        if k != "bench-failover/web" and r["killed"] not in a["backends_on"]
                    ),
                },
                "runs": kills,
            }
        elif "kill_30s_into_60s" in previous:
            record["kill_30s_into_60s"] = previous["kill_30s_into_60s"]
    finally:
        client.CoreV1Api(api).delete_namespace("bench-failover")
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
