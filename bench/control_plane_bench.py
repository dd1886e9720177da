"""The control-plane address under failure: what a client of the Kubernetes API feels.

In the netns lab of the e2e tests (tests/support/cplab.py: three control-plane nodes, a real
kube-apiserver each on one shared etcd, `onprem-lb control-plane` on each), the client sends
GET /readyz through the address every 10 ms (each on its own TLS connection and thread, 1 s
timeout; lab/bin/httpprobe) while the holder's kube-apiserver is SIGKILLed (and, with
--node-runs, while the holder's whole node dies: daemon and apiserver killed, links down). The
daemons keep running across runs, as on a cluster: the address moves to a survivor, the killed
apiserver is started again, and the next run kills the new holder's.

--engine kube-vip runs the same runs with kube-vip (lab/kube-vip/build.sh) in control-plane ARP
mode on each node in place of our daemon, at its default Lease timings, IPv4 only (KubeVipLab).

Per run: the longest run of failed requests (first failed request sent to the next successful
one), the longest silence (no successful answer arriving), and who answered ARP for the address
when (lab/bin/l2probe from the client, every 20 ms: the old holder's last answer, the new one's
first, and how long both answered). Target (issue 26): longest failure p95 <= 1 s over 20 runs.
Results: bench/results/control-plane-address.json (kube-vip: control-plane-address-kube-vip.json).
Run as root: PYTHONPATH=src .venv/bin/python bench/control_plane_bench.py [--runs 20] [--node-runs 5]
[--engine kube-vip]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labkit import REPO, Request, failure_runs, longest_failure, longest_silence, outage_record, percentile, wait_for

from tests.support.controlplane import CONTROLPLANE
from tests.support.cplab import ADDRESS_V4, CpLab, url
from tests.support.l2lab import CLIENT, L2PROBE, NODES, in_ns

RESULTS = REPO / "bench" / "results"
ARP_INTERVAL_S = 0.02


def kube_vip_version() -> str:
    lines = (REPO / "lab" / "kube-vip" / "versions.env").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith("KUBE_VIP_VERSION="))


KUBE_VIP = REPO / ".cache" / "kube-vip" / f"kube-vip-{kube_vip_version()}" / "bin" / "kube-vip"


def kube_vip_flags(node: str, kubeconfig: str) -> list[str]:
    """`kube-vip manager` on ``node``: control-plane mode, ARP, the Lease at its defaults (lease
    5 s, renew deadline 3 s, retry 1 s: `kube-vip manager --help`), spelled out for the record."""
    return ["manager", "--controlplane", "--arp", "--address", ADDRESS_V4, "--interface", "eth0",
            "--leaderElection", "--leaseDuration", "5", "--leaseRenewDuration", "3", "--leaseRetry", "1",
            "--nodeName", node, "--k8sConfigPath", kubeconfig]  # fmt: skip


class KubeVipLab(CpLab):
    """kube-vip in place of `onprem-lb control-plane`, as its documentation runs it beside kubeadm
    (a static Pod on each control-plane node): talking to that node's own kube-apiserver, electing
    the holder through the Lease kube-system/plndr-cp-lock; the elected one puts the address on
    its interface (the kernel answers ARP for it; kube-vip sends gratuitous ARP).

    It exits when it loses the Lease (v1.0.0 panics in its OnStoppedLeading, after deleting the
    address), counting on the kubelet to start its static Pod again; here lab/bin/controlplane
    supervise does that (after 1, 2, 5, 10 s when runs are short; the kubelet has its own crash
    back-off). Only the node that lost the Lease restarts, so the failover does not wait for it.

    v1.0.0's manager ignores --k8sConfigPath (only its manifest generator reads it): it reads
    /etc/kubernetes/admin.conf, else $HOME/.kube/config with its server as written. So each node
    gets a HOME whose config is the lab's admin kubeconfig (system:masters) pointed at
    https://127.0.0.1:6443, its own apiserver."""

    def daemon_command(self, node: str) -> list[str]:
        home = self.workdir / f"kube-vip-home-{node}"
        config = self.admin_kubeconfig(url("127.0.0.1", ""), home / ".kube" / "config")
        supervised = [sys.executable, str(CONTROLPLANE), "supervise", str(KUBE_VIP), *kube_vip_flags(node, str(config))]
        return ["env", f"HOME={home}", *supervised]

    def running(self, node: str) -> bool:
        """kube-vip itself (not only its supervisor) runs for ``node``."""
        wanted = b"%s\0manager\0" % bytes(KUBE_VIP), b"\0--nodeName\0%s\0" % node.encode()
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                argv = cmdline.read_bytes()
                if argv.startswith(wanted[0]) and wanted[1] in argv:
                    return True
        return False

    def revive_node(self, node: str) -> None:
        # a SIGKILLed kube-vip leaves the address on eth0; a node that rebooted would not have it
        in_ns(f"olb-{node}", "ip", "address", "del", f"{ADDRESS_V4}/32", "dev", "eth0", check=False)
        super().revive_node(node)

    def exits(self, node: str) -> int:
        """How many times kube-vip exited on ``node`` (its supervisor's lines in the logs)."""
        logs = self.workdir.glob(f"daemon-{node}-*.log")
        return sum(p.read_text(errors="replace").count("controlplane supervise: kube-vip exited") for p in logs)


@contextlib.contextmanager
def arp_answers(lab: CpLab, duration: float = 60) -> Iterator[dict[str, Any]]:
    """Who answers ARP for the address at the client while the block runs: the dict gets
    ``replies`` ([time.time(), node] each) when the block ends."""
    stop = lab.workdir / f"arp-stop-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", CLIENT, sys.executable, str(L2PROBE), "watch", "eth0", ADDRESS_V4,
         "--interval", str(ARP_INTERVAL_S), "--duration", str(duration), "--until-file", str(stop)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    result: dict[str, Any] = {}
    try:
        yield result
    finally:
        stop.write_text("")
        out = json.loads(proc.communicate(timeout=duration + 30)[0])
        stop.unlink(missing_ok=True)
    by_mac = {lab.mac(n): n for n in NODES}
    result["replies"] = [(out["started"] + t, by_mac.get(mac, mac)) for t, mac in out["replies"]]


def arp_timeline(
    replies: list[tuple[float, str]], killed_at: float, holder: str, successor: str | None
) -> dict[str, Any]:
    """Seconds after the kill: the old holder's last ARP answer, the successor's first, how long
    both answered (split brain: the client's ARP cache may hold either), the longest time nobody did."""
    after = [(t - killed_at, who) for t, who in replies if t >= killed_at]
    old = [t for t, who in after if who == holder]
    new = [t for t, who in after if who == successor]
    times = [0.0, *sorted(t for t, _ in after)]
    last_old, first_new = (max(old) if old else None), (min(new) if new else None)
    both = max(0.0, last_old - first_new) if last_old is not None and first_new is not None else 0.0
    return {
        "holder_last_answer_s": round(last_old, 3) if last_old is not None else None,
        "successor_first_answer_s": round(first_new, 3) if first_new is not None else None,
        "both_answered_s": round(both, 3),
        "nobody_answered_s": round(max(b - a for a, b in itertools.pairwise(times)) if after else 0.0, 3),
        "answered_by": sorted({who for _, who in after}),
    }


def one_run(lab: CpLab, kind: str) -> dict[str, object]:
    holder = lab.wait_holder("any")
    assert holder is not None
    exits_before = lab.exits(holder) if isinstance(lab, KubeVipLab) else 0
    with arp_answers(lab) as arp, lab.stream(duration=60) as seen:
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
    run: dict[str, object] = {"kind": kind, "holder": holder, "successor": successor}
    if isinstance(lab, KubeVipLab) and kind == "apiserver":
        run["holder_kube_vip_exited"] = lab.exits(holder) > exits_before  # it lost the Lease
    if kind == "node":
        lab.revive_node(holder)
        lab.start_daemon(holder)
    else:
        lab.start_apiserver(holder)
    lab.wait_apiserver(holder)
    if isinstance(lab, KubeVipLab):  # started again by its supervisor, and following the Lease
        wait_for(f"kube-vip running on {holder}", lambda: lab.running(holder), 30, 0.2)
        time.sleep(2)
    return run | {
        "requests": len(after),
        "failed": len(failed),
        "errors": errors,
        "longest_failure_s": round(longest, 3),
        "longest_silence_s": round(longest_silence(after, killed_at), 3),
        "failure_runs": [  # at_s: after the kill
            spell | {"at_s": round(float(spell["at_s"]) - 0.05, 3)}  # type: ignore[arg-type]
            for spell in failure_runs(requests, killed_at - 0.05)
        ],
        "arp": arp_timeline(arp["replies"], killed_at, holder, successor),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def summary(runs: list[dict[str, object]]) -> dict[str, float]:
    gaps = [float(r["longest_failure_s"]) for r in runs]  # type: ignore[arg-type]
    silences = [float(r["longest_silence_s"]) for r in runs]  # type: ignore[arg-type]
    both = [float(r["arp"]["both_answered_s"]) for r in runs]  # type: ignore[index]
    return {
        "runs": len(runs),
        "longest_failure_p50_s": round(statistics.median(gaps), 3),
        "longest_failure_p95_s": round(percentile(gaps, 95), 3),
        "longest_failure_max_s": round(max(gaps), 3),
        "longest_silence_p95_s": round(percentile(silences, 95), 3),
        "runs_with_both_answering_arp": sum(1 for b in both if b > 0),
        "both_answering_arp_max_s": round(max(both), 3),
    }


def engine_record(engine: str) -> dict[str, object]:
    if engine == "onprem-lb":
        return {"engine": "onprem-lb control-plane (defaults), IPv4 measured, both families held"}
    return {
        "engine": f"kube-vip {kube_vip_version()} (lab/kube-vip/build.sh), control-plane ARP mode, IPv4 only",
        "build": (KUBE_VIP.parent.parent / "BUILD-INFO").read_text().split(),
        "command": " ".join(["kube-vip", *kube_vip_flags("NODE", "HOME/.kube/config")]),
        "kubeconfig": "the lab's admin kubeconfig (system:masters), server https://127.0.0.1:6443 (the node's own)",
        "restarted_by": "lab/bin/controlplane supervise (the kubelet's part: kube-vip exits when it loses the Lease)",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="apiserver kills (default 20)")
    parser.add_argument("--node-runs", type=int, default=5, help="node kills (default 5)")
    parser.add_argument("--engine", choices=("onprem-lb", "kube-vip"), default="onprem-lb")
    parser.add_argument("--out", type=Path, help="results file (default: the engine's in bench/results/)")
    args = parser.parse_args()
    suffix = "" if args.engine == "onprem-lb" else f"-{args.engine}"
    out = args.out or RESULTS / f"control-plane-address{suffix}.json"
    if args.engine == "kube-vip":
        if not KUBE_VIP.is_file():
            raise SystemExit(f"{KUBE_VIP} not found: lab/kube-vip/build.sh {KUBE_VIP.parent.parent} first")
        if Path("/etc/kubernetes/admin.conf").exists():  # kube-vip would prefer it to the node's own kubeconfig
            raise SystemExit("/etc/kubernetes/admin.conf exists on this host: kube-vip would use it, not the lab's")
    lab = (KubeVipLab if args.engine == "kube-vip" else CpLab)(Path(tempfile.mkdtemp(prefix="cp-bench-")))
    lab.up()
    runs: list[dict[str, object]] = []
    try:
        lab.start_daemons()
        for kind, count in (("apiserver", args.runs), ("node", args.node_runs)):
            for i in range(count):
                run = one_run(lab, kind)
                runs.append(run)
                print(f"{kind} run {i + 1}: longest failure {run['longest_failure_s']} s, "
                      f"{run['failed']} of {run['requests']} failed, ARP {run['arp']}", flush=True)  # fmt: skip
    finally:
        lab.stop_daemons()
        lab.down()
    loads = [float(r["load_average_1m"]) for r in runs]  # type: ignore[arg-type]
    record = outage_record(
        **engine_record(args.engine),
        targets={"longest_failure_p95_s": 1.0},
        apiserver_killed=summary([r for r in runs if r["kind"] == "apiserver"]) if args.runs else None,
        node_killed=summary([r for r in runs if r["kind"] == "node"]) if args.node_runs else None,
        load_average_1m_range=[min(loads), max(loads)],
        runs=runs,
    )
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
