"""What clients see while a running ingress-nginx installation is moved to Traefik (and back):
a GET every 10 ms to each of seed 000's hosts through the ingress address, while
playbooks/ingress.yml converges the other controller on `make lab`.

The switch is the role's own: Traefik's Deployment is applied and waited for, then the Service
(the same object, so the same address) selects Traefik's pods, then ingress-nginx's objects are
deleted. In the lab ingress-nginx's Pod is a stand-in that answers 200 for any host (its nginx
cannot run here), so the run measures the address and the path through it, not nginx's routing;
Traefik routes the hosts for real.

Results: bench/results/ingress-switch.json (target: 0 failed requests). Run as root, on `make lab`:
.venv/bin/python bench/ingress_switch_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from kubernetes import client
from labkit import REPO, failure_runs, lab_up, outage_record, sh, start_stream, stop_stream

RESULTS = REPO / "bench" / "results" / "ingress-switch.json"
HOSTS = ("nginx.example.com", "httpd.example.com")
PLAYBOOK = str(REPO / "playbooks" / "ingress.yml")
INVENTORY = str(REPO / "inventories" / "lab")


def converge(controller: str) -> float:
    """Seconds playbooks/ingress.yml took to converge ``controller``."""
    started = time.monotonic()
    sh(".venv/bin/ansible-playbook", "-i", INVENTORY, PLAYBOOK, "-e", f"ingress_controller={controller}", timeout=900)
    return round(time.monotonic() - started, 1)


def address(api: client.ApiClient) -> str:
    svc = client.CoreV1Api(api).read_namespaced_service("ingress-nginx-controller", "ingress-nginx")
    return str(svc.status.load_balancer.ingress[0].ip)


def switch(api: client.ApiClient, to: str) -> dict[str, Any]:
    vip = address(api)
    probes = {host: (f"/run/stop-switch-{i}", start_stream(f"http://{vip}/", f"/run/stop-switch-{i}", host))
              for i, host in enumerate(HOSTS)}  # fmt: skip
    time.sleep(2.0)
    started = time.time()
    took = converge(to)
    time.sleep(3.0)
    out: dict[str, Any] = {"to": to, "converge_s": took, "address_before": vip, "address_after": address(api)}
    for host, (stop, probe) in probes.items():
        requests = stop_stream(probe, stop)
        during = [r for r in requests if r.sent >= started]
        out[host] = {
            "requests": len(during),
            "failed": sum(1 for r in during if not r.ok),
            "failure_runs": failure_runs(requests, started)[:10],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    api = lab_up()
    converge("ingress-nginx")  # the starting point: a running ingress-nginx installation
    runs = []
    for n in range(args.runs):
        for to in ("traefik", "ingress-nginx"):
            print(f"run {n + 1}: switch to {to}", flush=True)
            runs.append(switch(api, to))
    converge("traefik")  # the lab's own
    record = outage_record(targets={"failed_requests": 0}, runs=runs)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    for r in runs:
        print(r["to"], r["converge_s"], {h: r[h]["failed"] for h in HOSTS}, r["address_before"] == r["address_after"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
