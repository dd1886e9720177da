"""Service created -> first successful request through its address, with 1,000 Services present.

On the lab (`make lab`): a pool `bench` (198.18.0.0/21, the benchmarking range, on the lab's
layer 2 segment only: the client gets an on-link route to it) with its L2Advertisement, three
nginx Pods (one per node) and 1,000 LoadBalancer Services selecting them, each with an address
from the pool, announced, and programmed by kube-proxy on every node. Then, one at a time,
N more Services are created, each asking for a known address of the pool
(`metallb.io/loadBalancerIPs`), while the client (lab/bin/httpprobe first) starts a GET every
10 ms at that address. The time from the create call to the first 200 covers the whole path:
the controller's allocation, the speaker's election, its RFC 5227 conflict probe and
announcement, kube-proxy's rules in the announcing node, the web server. The time until the
Service's status carries the address (the controller alone) and until the first ARP answer
(controller and speaker: election, conflict probe, announcement; lab/bin/l2probe asking every
10 ms) are recorded beside it; what remains is kube-proxy's (iptables mode, kubeadm's default
minSyncPeriod of 1 s) and the web server's.

Target (issue 11): p99 <= 1 s. Results: bench/results/service-ready.json (service-ready-arp.json
with --arp). Run as root: .venv/bin/python bench/service_ready_bench.py [--present 1000]
[--services 60] [--arp] [--kube-proxy-min-sync SECONDS --results PATH] (the last runs the nodes'
kube-proxies with another iptables.minSyncPeriod for the run, to separate kube-proxy's pacing
from ours)
(brings the lab up if it is not; about 5 minutes).
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from labkit import (
    CLIENT,
    ENV,
    LAB_DIR,
    NODES,
    REPO,
    fresh_namespace,
    lab_up,
    on,
    percentile,
    sh,
    wait_for,
    web_deployment,
)

RESULTS = REPO / "bench" / "results" / "service-ready.json"
# With --arp, the first ARP answer is watched too (lab/bin/l2probe, 100 probes/s): the observer
# costs CPU on this 2-core machine and slows everything it watches, so that run is kept apart.
RESULTS_ARP = REPO / "bench" / "results" / "service-ready-arp.json"
NS = "bench-ready"
POOL = ipaddress.IPv4Network("198.18.0.0/21")
METALLB = ("metallb.io", "v1beta1", "metallb-system")


def service(name: str, ip: str | None = None) -> dict[str, Any]:
    annotations = {"metallb.io/address-pool": "bench"}
    if ip:
        annotations["metallb.io/loadBalancerIPs"] = ip
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80}]},
    }


def set_up(api: client.ApiClient, present: int) -> None:
    custom, core, apps = client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)
    group, version, ns = METALLB
    custom.create_namespaced_custom_object(group, version, ns, "ipaddresspools", {
        "apiVersion": f"{group}/{version}", "kind": "IPAddressPool", "metadata": {"name": "bench"},
        "spec": {"addresses": [str(POOL)], "autoAssign": False},
    })  # fmt: skip
    custom.create_namespaced_custom_object(group, version, ns, "l2advertisements", {
        "apiVersion": f"{group}/{version}", "kind": "L2Advertisement", "metadata": {"name": "bench"},
        "spec": {"ipAddressPools": ["bench"]},
    })  # fmt: skip
    on(CLIENT, "ip", "route", "replace", str(POOL), "dev", "eth0")
    fresh_namespace(api, NS)
    for node in NODES:
        apps.create_namespaced_deployment(NS, web_deployment(f"web-{node[-2:]}", NS, node, {"app": "web"}))
    started = time.monotonic()
    for i in range(present):
        core.create_namespaced_service(NS, service(f"present-{i:04d}"))
    print(f"{present} Services created in {time.monotonic() - started:.1f} s", flush=True)

    def all_assigned() -> bool:
        items = core.list_namespaced_service(NS).items
        return sum(1 for s in items if s.status.load_balancer.ingress) >= present

    wait_for(f"{present} Services get addresses", all_assigned, timeout=600, interval=2.0)
    print(f"... and all have addresses after {time.monotonic() - started:.1f} s", flush=True)
    last = core.read_namespaced_service(f"present-{present - 1:04d}", NS).status.load_balancer.ingress[0].ip
    wait_for(f"the last of them ({last}) answers", lambda: on(CLIENT, "curl", "-s", "-m", "1", f"http://{last}/",
                                                          check=False), timeout=300)  # fmt: skip
    print(f"... and the last answers after {time.monotonic() - started:.1f} s", flush=True)


KUBE_PROXY_CONFIG = "/var/lib/kube-proxy/config.conf"


def set_kube_proxy_min_sync(seconds: float | None) -> None:
    """Restart every node's kube-proxy with iptables.minSyncPeriod `seconds` (None: the lab's own)."""
    for node in NODES:
        config = on(node, "cat", KUBE_PROXY_CONFIG).split("iptables:\n")[0]
        if seconds is not None:
            config += f"iptables:\n  minSyncPeriod: {seconds}s\n"
        on(node, "python3", "-c", f"open({KUBE_PROXY_CONFIG!r}, 'w').write({config!r})")
        on(node, "systemctl", "restart", "onprem-lab-kube-proxy")
    for node in NODES:
        wait_for(f"kube-proxy on {node} healthy", functools.partial(kube_proxy_healthy, node))


def kube_proxy_healthy(node: str) -> bool:
    url = "http://127.0.0.1:10256/healthz"
    return on(node, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url, check=False).strip() == "200"


def measure(api: client.ApiClient, name: str, ip: str, watch_arp: bool) -> tuple[float, float | None, float]:
    """(create -> address in status, -> first ARP answer if watched, -> first 200) in seconds."""
    core = client.CoreV1Api(api)
    arp = None
    if watch_arp:
        on(CLIENT, "rm", "-f", "/run/stop-l2probe")
        arp = subprocess.Popen(
            ["podman", "exec", CLIENT, "python3", "/usr/local/bin/l2probe", "watch", "eth0", ip,
             "--interval", "0.01", "--duration", "30", "--until-file", "/run/stop-l2probe"],
            stdout=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
    probe = subprocess.Popen(
        ["podman", "exec", CLIENT, "python3", "/usr/local/bin/httpprobe", "first", f"http://{ip}/",
         "--interval", "0.01", "--duration", "30"],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert probe.stdout is not None
    if probe.stdout.readline().strip() != "ready":
        raise SystemExit("httpprobe did not start")
    assigned: list[float] = []

    def watch_status() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if core.read_namespaced_service(name, NS).status.load_balancer.ingress:
                assigned.append(time.time())
                return
            time.sleep(0.01)

    created = time.time()
    core.create_namespaced_service(NS, service(name, ip))
    watcher = threading.Thread(target=watch_status)
    watcher.start()
    out, _ = probe.communicate(timeout=60)
    watcher.join(35)
    if probe.returncode != 0 or not assigned:
        raise SystemExit(f"{name} ({ip}): no answer within 30 s")
    to_arp = None
    if arp is not None:
        on(CLIENT, "touch", "/run/stop-l2probe")
        watched = json.loads(arp.communicate(timeout=60)[0])
        if watched["replies"]:
            to_arp = float(watched["started"]) + float(watched["replies"][0][0]) - created
    return assigned[0] - created, to_arp, float(out.strip().splitlines()[-1]) - created


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--present", type=int, default=1000)
    parser.add_argument("--services", type=int, default=60)
    parser.add_argument("--arp", action="store_true", help="also watch for the first ARP answer (slows the lab)")
    parser.add_argument("--results", type=Path, help="write the results here instead")
    parser.add_argument(
        "--kube-proxy-min-sync",
        type=float,
        default=1.0,
        help="run the lab's kube-proxies with this iptables.minSyncPeriod (default 1, kubeadm's; restored after)",
    )
    args = parser.parse_args()
    if args.present + args.services > POOL.num_addresses:
        raise SystemExit(f"the pool has {POOL.num_addresses} addresses")
    api = lab_up()
    sh("podman", "cp", str(REPO / "lab" / "bin" / "l2probe"), f"{CLIENT}:/usr/local/bin/l2probe")
    if args.kube_proxy_min_sync != 1.0:
        set_kube_proxy_min_sync(args.kube_proxy_min_sync)
    to_status: list[float] = []
    to_arp: list[float] = []
    to_answer: list[float] = []
    try:
        set_up(api, args.present)
        hosts = list(POOL)[-args.services :]
        for i, ip in enumerate(hosts):
            s, r, a = measure(api, f"new-{i:03d}", str(ip), args.arp)
            to_status.append(round(s, 4))
            to_answer.append(round(a, 4))
            if r is not None:
                to_arp.append(round(r, 4))
            arp_ms = f"ARP {r * 1000:.0f} ms, " if r is not None else ""
            print(f"new-{i:03d} {ip}: in status {s * 1000:.0f} ms, {arp_ms}200 {a * 1000:.0f} ms", flush=True)
    finally:
        core = client.CoreV1Api(api)
        core.delete_namespace(NS)
        for kind in ("l2advertisements", "ipaddresspools"):
            client.CustomObjectsApi(api).delete_namespaced_custom_object(*METALLB, kind, "bench")
        on(CLIENT, "ip", "route", "del", str(POOL), check=False)
        if args.kube_proxy_min_sync != 1.0:
            set_kube_proxy_min_sync(None)
    record: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "lab": str(LAB_DIR.relative_to(REPO)) if LAB_DIR.is_relative_to(REPO) else str(LAB_DIR),
        "services_present": args.present,
        "services_measured": len(to_answer),
        "target_p99_s": 1.0,
        "first_answer_s_p50": round(statistics.median(to_answer), 3),
        "first_answer_s_p99": round(percentile(to_answer, 99), 3),
        "first_answer_s_max": round(max(to_answer), 3),
        "address_in_status_s_p50": round(statistics.median(to_status), 3),
        "address_in_status_s_p99": round(percentile(to_status, 99), 3),
        "kube_proxy_min_sync_period_s": args.kube_proxy_min_sync,
        "arp_observer": args.arp,
        "first_answer_s": to_answer,
        "address_in_status_s": to_status,
    }
    if to_arp:
        record["first_arp_answer_s_p50"] = round(statistics.median(to_arp), 3)
        record["first_arp_answer_s_p99"] = round(percentile(to_arp, 99), 3)
        record["first_arp_answer_s"] = to_arp
    (args.results or (RESULTS_ARP if args.arp else RESULTS)).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if not isinstance(v, list)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
