"""Speaker membership (speaker/layer2/members.py) at 3 to 500 speakers: what it costs and how fast a
killed speaker is noticed. The baseline the membership redesign of issue 13 must beat.

All speakers run in this one process, each with its own UDP socket on 127.0.0.1 (loopback: no
traffic leaves the machine), at the speaker's defaults (a heartbeat every 0.2 s, dead after 1.0 s).
For each size: after 3 s of warm-up, 10 s of counting (datagrams sent and received per speaker,
this process's CPU divided by the speakers); then 5 kills of a speaker (its socket closed, its
heartbeats stopped), each observed by every other speaker: detection time p50/p95/max over
observers and kills. A size whose loop cannot keep up (heartbeats late by more than an interval)
is reported as such: the design's cost grows with N^2 in one process, N per speaker.

Targets (issue 13): at 500 speakers <= 100 datagrams/s and <= 2 % of one core per speaker,
detection p95 <= 0.5 s. Results: bench/results/membership.json.
Run: .venv/bin/python bench/membership_bench.py [--sizes 3,50,200,500]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from onprem_lb.speaker.layer2.members import Members  # noqa: E402

RESULTS = REPO / "bench" / "results" / "membership.json"
BASE_PORT = 42000


class Counting(asyncio.DatagramProtocol):
    """Wraps a Members: counts what it sends and receives."""

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


async def measure(size: int, kills: int, window: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    names = [f"n{i:03d}" for i in range(size)]
    addresses = {n: ("127.0.0.1", BASE_PORT + i) for i, n in enumerate(names)}
    members: dict[str, Members] = {}
    counters: dict[str, Counting] = {}
    transports: dict[str, asyncio.BaseTransport] = {}
    tasks: dict[str, asyncio.Task[None]] = {}
    for n in names:
        m = Members(n, secret=b"bench-secret")
        members[n] = m
        counters[n] = Counting(m)
        counter = counters[n]
        transports[n], _ = await loop.create_datagram_endpoint(
            functools.partial(_same, counter), local_addr=addresses[n]
        )
    for n in names:
        members[n].set_addresses(addresses)
        tasks[n] = asyncio.create_task(members[n].run())
    await asyncio.sleep(3.0)
    sent0 = {n: counters[n].sent for n in names}
    recv0 = {n: counters[n].received for n in names}
    cpu0, t0 = cpu_seconds(), time.monotonic()
    lag = 0.0
    end = t0 + window
    while time.monotonic() < end:  # loop lag: how late a 50 ms sleep wakes up
        before = time.monotonic()
        await asyncio.sleep(0.05)
        lag = max(lag, time.monotonic() - before - 0.05)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    sent = statistics.mean((counters[n].sent - sent0[n]) / elapsed for n in names)
    received = statistics.mean((counters[n].received - recv0[n]) / elapsed for n in names)
    detections: list[float] = []
    alive_names = list(names)
    for k in range(min(kills, size - 2)):
        victim = alive_names.pop(k % len(alive_names))
        observers = [n for n in alive_names if members[n].alive(victim)]
        tasks[victim].cancel()
        transports[victim].close()
        killed = time.monotonic()
        pending = set(observers)
        deadline = killed + 10.0
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            for n in list(pending):
                if not members[n].alive(victim):
                    detections.append(now - killed)
                    pending.discard(n)
        detections += [float("inf")] * len(pending)
        await asyncio.sleep(0.3)
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    for tr in transports.values():
        tr.close()
    detections.sort()
    finite = [d for d in detections if d != float("inf")]
    return {
        "speakers": size,
        "datagrams_per_s_sent_per_speaker": round(sent, 1),
        "datagrams_per_s_received_per_speaker": round(received, 1),
        "cpu_percent_of_one_core_per_speaker": round(100 * cpu / elapsed / size, 3),
        "process_cpu_percent": round(100 * cpu / elapsed, 1),
        "loop_lag_max_s": round(lag, 3),
        "kept_up": lag < members[names[0]].interval,
        "detection_s": {
            "observations": len(detections),
            "missed": len(detections) - len(finite),
            "p50": round(finite[len(finite) // 2], 3) if finite else None,
            "p95": round(finite[max(0, int(len(finite) * 0.95) - 1)], 3) if finite else None,
            "max": round(finite[-1], 3) if finite else None,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,50,200,500")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--window", type=float, default=10.0, help="seconds of counting")
    parser.add_argument("--label", default="current design: everyone heartbeats everyone")
    args = parser.parse_args()
    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = asyncio.run(measure(size, args.kills, args.window))
        print(json.dumps(result), flush=True)
        runs.append(result)
    record = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "settings": {"interval_s": 0.2, "dead_after_s": 1.0, "signed": True},
        "runs": runs,
        "targets": {"at_500": {"datagrams_per_s": 100, "cpu_percent": 2.0}, "detection_p95_s": 0.5},
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = record
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
