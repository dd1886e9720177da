"""Speaker membership (speaker/layer2/members.py) at 3 to 500 speakers: what it costs per speaker
and how fast a killed speaker is noticed by the speakers that act on it.

All speakers run in this one process, each a `Members` with its own UDP socket on 127.0.0.1
(loopback: no traffic leaves the machine), signed, at the speaker's defaults. Each owns the
addresses the real election (`election.elect_with_successors`) gives it for 2 addresses per
speaker, ETP Cluster, one L2Advertisement, and watches the owners it succeeds, as `Layer2` does.

For each size: 3 s of warm-up, then `--window` s of counting (datagrams sent and received per
speaker, mean and busiest; this process's CPU divided by the speakers); then `--kills` times: an
owner is killed (socket closed, beats stopped), each of its successors' detection time is taken
(p50/p95/max over kills and successors), the other speakers' views are checked (they keep
counting it live: its Lease decides), then it comes back as a new incarnation and every watch is
recomputed, as the speakers do when the Lease view changes.

`--soak S --load L`: one size runs for S seconds while L busy processes keep the machine loaded;
every death declared in that time is a false detection (nobody is killed). Load average recorded.

Targets (issue 13): at 500 speakers <= 100 datagrams/s and <= 2 % of one core per speaker,
detection p95 <= 0.5 s, no false detection in 10 minutes at load >= 4.
Results: bench/results/membership.json.
Run: .venv/bin/python bench/membership_bench.py [--sizes 3,50,200,500] [--soak 600 --load 5 --sizes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from onprem_lb.speaker.layer2 import election  # noqa: E402
from onprem_lb.speaker.layer2.members import Members  # noqa: E402
from onprem_lb.speaker.view import Endpoints, NodeState, ServiceState  # noqa: E402

RESULTS = REPO / "bench" / "results" / "membership.json"
BASE_PORT = 42000
ADDRESSES_PER_SPEAKER = 2
SECRET = b"bench-secret"


class Counting(asyncio.DatagramProtocol):
    """Stands in front of a Members: counts what it sends and receives."""

    def __init__(self, members: Members) -> None:
        self.members = members
        self.sent = 0
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real = transport.sendto  # type: ignore[attr-defined]

        def sendto(data: bytes, addr: Any = None) -> None:
            self.sent += 1
            real(data, addr)

        transport.sendto = sendto  # type: ignore[attr-defined]
        self.members.connection_made(transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received += 1
        self.members.datagram_received(data, addr)


def _same(counter: Counting) -> Counting:
    return counter


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float | None:
    return round(values[max(0, int(len(values) * q + 0.5) - 1)], 3) if values else None


class Cluster:
    """N speakers, the addresses they own and whom they watch."""

    def __init__(self, size: int) -> None:
        self.names = [f"n{i:03d}" for i in range(size)]
        self.addresses = {n: ("127.0.0.1", BASE_PORT + i) for i, n in enumerate(self.names)}
        count = size * ADDRESSES_PER_SPEAKER
        self.services = [ServiceState(f"bench/s{i}", (f"198.18.{i // 250}.{i % 250 + 1}",)) for i in range(count)]
        self.inputs: dict[str, Any] = {
            "endpoints": {s.key: Endpoints(serving=True) for s in self.services},
            "nodes": {n: NodeState(n, {"kubernetes.io/hostname": n}) for n in self.names},
            "ads": [election.L2Ad("all")],
            "pool_of": lambda _ip: "bench",
        }
        self.members: dict[str, Members] = {}
        self.counters: dict[str, Counting] = {}
        self.transports: dict[str, asyncio.BaseTransport] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.owned: dict[str, set[str]] = {n: set() for n in self.names}
        self.watchers: dict[str, set[str]] = {}  # owner -> the speakers watching it

    async def start(self, name: str) -> None:
        m = Members(name, secret=SECRET)
        counter = Counting(m)
        self.members[name], self.counters[name] = m, counter
        loop = asyncio.get_running_loop()
        self.transports[name], _ = await loop.create_datagram_endpoint(
            functools.partial(_same, counter), local_addr=self.addresses[name]
        )
        m.set_addresses(self.addresses)
        self.tasks[name] = asyncio.create_task(m.run())

    def decide(self, live: set[str]) -> None:
        """The election every speaker runs (here once for all: their views agree)."""
        winners, successors = election.elect_with_successors(self.services, live=live, **self.inputs)
        for name in self.names:
            self.owned[name].clear()
        watch: dict[str, set[str]] = {n: set() for n in self.names}
        self.watchers = {}
        for ip, ann in winners.items():
            self.owned[ann.node].add(ip)
            successor = successors.get(ip)
            if successor is not None:
                watch[successor].add(ann.node)
                self.watchers.setdefault(ann.node, set()).add(successor)
        for name in live:
            self.members[name].say(owned=self.owned[name])
            self.members[name].set_watch(watch[name])

    async def kill(self, name: str) -> None:
        self.tasks.pop(name).cancel()
        self.transports.pop(name).close()
        await asyncio.sleep(0)

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for transport in self.transports.values():
            transport.close()


async def count(cluster: Cluster, window: float) -> dict[str, Any]:
    names = cluster.names
    sent0 = {n: cluster.counters[n].sent for n in names}
    recv0 = {n: cluster.counters[n].received for n in names}
    cpu0, t0 = cpu_seconds(), time.monotonic()
    lag = 0.0
    end = t0 + window
    while time.monotonic() < end:  # loop lag: how late a 50 ms sleep wakes up
        before = time.monotonic()
        await asyncio.sleep(0.05)
        lag = max(lag, time.monotonic() - before - 0.05)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    sent = [(cluster.counters[n].sent - sent0[n]) / elapsed for n in names]
    received = [(cluster.counters[n].received - recv0[n]) / elapsed for n in names]
    return {
        "datagrams_per_s_sent_per_speaker": {"mean": round(statistics.mean(sent), 1), "max": round(max(sent), 1)},
        "datagrams_per_s_received_per_speaker": {
            "mean": round(statistics.mean(received), 1),
            "max": round(max(received), 1),
        },
        "cpu_percent_of_one_core_per_speaker": round(100 * cpu / elapsed / len(names), 3),
        "process_cpu_percent": round(100 * cpu / elapsed, 1),
        "loop_lag_max_s": round(lag, 3),
        "watched_per_speaker_max": max(len(cluster.members[n].watching) for n in names),
    }


async def measure(size: int, kills: int, window: float) -> dict[str, Any]:
    cluster = Cluster(size)
    for name in cluster.names:
        await cluster.start(name)
    cluster.decide(set(cluster.names))
    await asyncio.sleep(3.0)
    result: dict[str, Any] = {"speakers": size, "addresses": len(cluster.services)}
    result.update(await count(cluster, window))
    detections: list[float] = []
    missed = others_changed = 0
    owners = sorted(n for n in cluster.names if cluster.watchers.get(n))
    phases = random.Random(size)  # noqa: S311  # kill moments, not secrets
    for k in range(kills):
        victim = owners[(k * 7919) % len(owners)]
        watchers = cluster.watchers[victim]
        others = [n for n in cluster.names if n != victim and n not in watchers]
        await asyncio.sleep(phases.uniform(0.0, Members("x").interval))  # any moment between two beats
        await cluster.kill(victim)
        killed = time.monotonic()
        pending = set(watchers)
        while pending and time.monotonic() < killed + 5.0:  # bounded: 5 s
            await asyncio.sleep(0.002)
            now = time.monotonic()
            for n in [n for n in pending if not cluster.members[n].alive(victim)]:
                detections.append(now - killed)
                pending.discard(n)
        missed += len(pending)
        others_changed += sum(1 for n in others if not cluster.members[n].alive(victim))
        await cluster.start(victim)  # back, as a new incarnation; the watches follow the election
        cluster.decide(set(cluster.names))
        await asyncio.sleep(0.5)
    await cluster.stop()
    detections.sort()
    result["detection_s"] = {
        "kills": kills,
        "observations": len(detections),
        "missed": missed,
        "p50": percentile(detections, 0.5),
        "p95": percentile(detections, 0.95),
        "max": round(detections[-1], 3) if detections else None,
    }
    result["non_watchers_that_dropped_the_victim"] = others_changed
    result["kept_up"] = result["loop_lag_max_s"] < Members("x").interval
    return result


async def soak(size: int, seconds: float, load: int) -> dict[str, Any]:
    """No kills: every death any speaker declares is false."""
    spin = f"import time\nend = time.time() + {seconds + 30}\nwhile time.time() < end: pass"  # bounded in time
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(load)]
    try:
        cluster = Cluster(size)
        for name in cluster.names:
            await cluster.start(name)
        cluster.decide(set(cluster.names))
        await asyncio.sleep(3.0)
        false: list[str] = []
        loads: list[float] = []
        lag = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            before = time.monotonic()
            await asyncio.sleep(0.5)
            lag = max(lag, time.monotonic() - before - 0.5)
            loads.append(os.getloadavg()[0])
            for name, m in cluster.members.items():
                false += [f"{name} dropped {p}" for p, peer in m.peers.items() if peer.dead]
            if false:
                break
        await cluster.stop()
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    return {
        "speakers": size,
        "seconds": seconds,
        "busy_processes": load,
        "load_average_1m": {"min": round(min(loads[20:] or loads), 2), "mean": round(statistics.mean(loads), 2)},
        "loop_lag_max_s": round(lag, 3),
        "false_detections": false[:10],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,50,200,500")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--window", type=float, default=10.0, help="seconds of counting")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of a loaded run without kills")
    parser.add_argument("--load", type=int, default=5, help="busy processes during --soak")
    parser.add_argument("--label", default="owners heartbeat their successors (issue 13 redesign)")
    args = parser.parse_args()
    defaults = Members("x")
    record: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "settings": {
            "interval_s": defaults.interval,
            "dead_after_s": defaults.dead_after,
            "refresh_s": defaults.refresh,
            "signed": True,
            "addresses_per_speaker": ADDRESSES_PER_SPEAKER,
        },
        "targets": {
            "at_500": {"datagrams_per_s": 100, "cpu_percent": 2.0},
            "detection_p95_s": 0.5,
            "soak": "no false detection in 600 s at load >= 4",
        },
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous = results.get(args.label, {})
    if args.soak:
        record["runs"] = previous.get("runs", [])
        record["soak"] = asyncio.run(soak(int(args.sizes.split(",")[0]), args.soak, args.load))
        print(json.dumps(record["soak"]), flush=True)
    else:
        record["runs"] = []
        for size in (int(s) for s in args.sizes.split(",")):
            result = asyncio.run(measure(size, args.kills, args.window))
            print(json.dumps(result), flush=True)
            record["runs"].append(result)
        if "soak" in previous:
            record["soak"] = previous["soak"]
    results[args.label] = record
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
