"""What a rolling upgrade of the speakers costs a client: the longest silence of a Service address.

On the lab (`make lab`: three podman nodes running the onprem-lb units that
playbooks/site.yml installed, a client container, the real control plane), a LoadBalancer
Service with a ready endpoint gets an address; then, N times, playbooks/lb_speaker.yml changes
the speakers' unit (log level debug <-> info), which makes the lb_speaker role restart the
speakers one node at a time with the SIGTERM handover. Meanwhile the client asks for the
address every 10 ms (lab/bin/l2probe); each run records the longest time without an answer and
the playbook's wall time.

Target (issue 10): an address is never silent longer than a planned handover (<= 100 ms).
Results: bench/results/rolling-restart.json.
Run as root: .venv/bin/python bench/rolling_restart_bench.py [--runs 10] [--keep]
(brings the lab up unless it is; about 1 minute per run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from kubernetes import client
from labkit import CLIENT, ENV, REPO, lab_up, sh

RESULTS = REPO / "bench" / "results" / "rolling-restart.json"


def service_address(api: client.ApiClient) -> str:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    core.create_namespaced_service(
        "default", {"metadata": {"name": "bench-web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    )
    discovery.create_namespaced_endpoint_slice(
        "default",
        {
            "metadata": {"name": "bench-web-lab", "labels": {"kubernetes.io/service-name": "bench-web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.2.20"], "nodeName": "onprem-lab-n2", "conditions": {"ready": True}}],
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    )
    for _ in range(100):  # bounded: the controller answers within a second
        ingress = core.read_namespaced_service("bench-web", "default").status.load_balancer.ingress
        if ingress:
            return str(ingress[0].ip)
        time.sleep(0.2)
    raise SystemExit("bench-web got no address")


def rolling_restart(ip: str, level: str) -> tuple[float, float]:
    """(longest silence, playbook wall time) of one rolling restart to log level `level`."""
    sh("podman", "exec", CLIENT, "rm", "-f", "/run/stop-probe")
    probe = subprocess.Popen(
        ["podman", "exec", CLIENT, "python3", "/usr/local/bin/l2probe", "watch", "eth0", ip,
         "--interval", "0.01", "--duration", "600", "--until-file", "/run/stop-probe"],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    time.sleep(1.0)
    started = time.monotonic()
    out = sh(
        "ansible-playbook", "-i", "inventories/lab", "playbooks/lb_speaker.yml", "-e", f"lb_speaker_log_level={level}"
    )
    wall = time.monotonic() - started
    time.sleep(1.0)
    sh("podman", "exec", CLIENT, "touch", "/run/stop-probe")
    result = json.loads(probe.communicate(timeout=60)[0])
    if "changed=0" in out.split("PLAY RECAP")[-1].split("\n")[1]:
        raise SystemExit("the playbook restarted nothing")
    times = [float(t) for t, _ in result["replies"]]
    silence = max([b - a for a, b in itertools.pairwise(times)] + [0.01]) if times else float("inf")
    return silence, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    api = lab_up()
    sh("podman", "cp", str(REPO / "lab" / "bin" / "l2probe"), f"{CLIENT}:/usr/local/bin/l2probe")
    ip = service_address(api)
    silences, walls = [], []
    try:
        for run, level in zip(range(args.runs), itertools.cycle(["debug", "info"])):
            silence, wall = rolling_restart(ip, level)
            silences.append(round(silence, 4))
            walls.append(round(wall, 1))
            print(f"run {run + 1}: longest silence {silence * 1000:.0f} ms, playbook {wall:.0f} s", flush=True)
    finally:
        client.CoreV1Api(api).delete_namespaced_service("bench-web", "default")
        client.DiscoveryV1Api(api).delete_namespaced_endpoint_slice("bench-web-lab", "default")
        if not args.keep:
            sh(str(REPO / "lab" / "bin" / "lab"), "down")
    ordered = sorted(silences)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "nodes": 3,
        "probe_interval_s": 0.01,
        "silence_s": silences,
        "silence_p50_s": statistics.median(ordered),
        "silence_max_s": ordered[-1],
        "playbook_wall_s": walls,
        "target_s": 0.1,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
