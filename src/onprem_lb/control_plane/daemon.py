"""The control-plane address's daemon: heartbeats, the readiness probe, the rule, the address.

It decides again whenever a beat changes what it hears, the probe flips, or ``interval`` has
passed (a bound, not the trigger). Taking the address: on loopback first (so the first packet
is delivered), then answered for by ARP/NDP with a gratuitous burst; giving it up: the other
way round, and a beat at once either way, so the next holder hears it without waiting. A stop
(SIGTERM) says "leaving" to every member, so the next one takes the address at once, and lets
go only once it hears that one claim it (``hand_over``); a crash is noticed ``dead_after``
after the last beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from onprem_lb.control_plane import owner
from onprem_lb.control_plane.health import Readiness
from onprem_lb.control_plane.settings import Settings
from onprem_lb.speaker.layer2.announcer import Announcer
from onprem_lb.speaker.layer2.members import Members

log = logging.getLogger("onprem_lb.control_plane")
LOOPBACK = "lo"
HANDOVER_TIMEOUT_S = 2.0  # a planned stop waits at most this long for the next holder's claim
DRAIN_S = 0.2  # and keeps the address on loopback this much longer, for packets on their way


class LocalAddress:
    """The address on this node's loopback interface while it holds it (iproute2's `ip`)."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self.addresses = tuple(addresses)

    @staticmethod
    def _prefix(address: str) -> str:
        return f"{address}/{ipaddress.ip_address(address).max_prefixlen}"

    async def _ip(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        return proc.returncode or 0, err.decode(errors="replace").strip()

    async def add(self) -> None:
        for address in self.addresses:
            code, err = await self._ip("address", "replace", self._prefix(address), "dev", LOOPBACK)
            if code:
                raise OSError(f"cannot put {address} on {LOOPBACK}: ip address replace: {err}")

    async def remove(self) -> None:
        for address in self.addresses:
            code, err = await self._ip("address", "del", self._prefix(address), "dev", LOOPBACK)
            if code and "not found" not in err.lower() and "cannot assign" not in err.lower():  # absent: fine
                log.warning("cannot take %s off %s: %s", address, LOOPBACK, err)


class ControlPlaneAddress:
    def __init__(
        self,
        settings: Settings,
        members: Members,
        announcer: Announcer,
        readiness: Readiness,
        state_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.state_file = state_file
        self.members = members
        self.announcer = announcer
        self.readiness = readiness
        self.local = LocalAddress(settings.addresses)
        self.names = frozenset(m.name for m in settings.members)
        self.key = settings.addresses[0]  # the election's address: one holder for both families
        self.holding = False
        self.reason = ""
        self._quorum_since: float | None = None
        self._written: tuple[str | None, str] | None = None
        self._wake = asyncio.Event()
        members.on_change = self._wake.set
        readiness.on_change = self._wake.set
        announcer.may_defend = lambda _ip: self.holding

    def _settled(self, now: float, has_quorum: bool) -> bool:
        if not has_quorum:
            self._quorum_since = None
            return False
        if self._quorum_since is None:
            self._quorum_since = now
        return now - self._quorum_since >= self.settings.dead_after

    def choose(self, now: float) -> owner.Choice:
        heard = self.members.quorum_heard()
        has_quorum = owner.majority(self.settings.node, self.names, heard).holds
        _, claimed = self.members.claims()
        return owner.choose(
            self.settings.node,
            self.names,
            self.key,
            ready=self.readiness.ready,
            holding=self.holding,
            settled=self._settled(now, has_quorum),
            heard=heard,
            heard_ready=self.members.heard_now(),
            claiming=claimed.get(self.key, frozenset()),
        )

    async def decide(self) -> float:
        """Apply the rule once; when the next check is due at the latest."""
        now = time.monotonic()
        choice = self.choose(now)
        if self.members.fenced == self.readiness.ready:  # tell the others at once: they elect on it
            self.members.say(fenced=not self.readiness.ready)
            self.members.beat_now()
        take = choice.holder == self.settings.node
        if take and not self.holding:
            await self.local.add()
            self.announcer.set_owned(dict.fromkeys(self.settings.addresses, self.settings.interfaces))
            self.holding = True
            self.members.say(owned=self.settings.addresses)
            log.info("holding %s (%s)", ", ".join(self.settings.addresses), choice.cause)
            self.members.beat_now()
        elif not take and self.holding:
            await self.release(choice.cause)
        elif choice.reason != self.reason and not take:
            log.info("not holding %s: %s (%s)", ", ".join(self.settings.addresses), choice.reason, choice.cause)
        if (choice.holder, choice.reason) != self._written:
            self.write_state(choice)
        self.reason = choice.reason
        wait = self.settings.heartbeat_interval
        if self._quorum_since is not None and choice.reason == owner.SETTLING:
            wait = min(wait, self._quorum_since + self.settings.dead_after - now)
        return max(0.0, wait)

    def write_state(self, choice: owner.Choice) -> None:
        """What this node holds and why, for operators and the role (replaced atomically)."""
        if self.state_file is None:
            return
        state = {
            "node": self.settings.node,
            "addresses": list(self.settings.addresses),
            "holding": self.holding,
            "holder": choice.holder,
            "reason": choice.reason,
            "cause": choice.cause,
            "ready": self.readiness.ready,
            "since": round(time.time(), 3),
        }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(state) + "\n")
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("cannot write the state file %s: %s", self.state_file, exc)
        self._written = (choice.holder, choice.reason)

    async def release(self, cause: str) -> None:
        self.announcer.set_owned({})
        await self.local.remove()
        self.holding = False
        self.members.say(owned=())
        log.info("gave up %s (%s)", ", ".join(self.settings.addresses), cause)
        self.members.beat_now()

    async def hand_over(self) -> None:
        """A planned stop, make before break: the others heard "leaving", so the next holder takes
        the address; this node keeps answering for it until that holder's beat claims it (or
        HANDOVER_TIMEOUT_S), so a client never sends into silence. Then it stops answering, and
        takes the address off loopback a moment later, for the packets already on their way."""
        deadline = time.monotonic() + HANDOVER_TIMEOUT_S
        cause = "stopping: handed over"
        while not set(self.members.claimed_by(self.key)) - {self.settings.node}:
            left = deadline - time.monotonic()
            if left <= 0:
                cause = f"stopping: nobody took it within {HANDOVER_TIMEOUT_S:.1f} s"
                break
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, self.settings.heartbeat_interval))
        self.announcer.set_owned({})
        await asyncio.sleep(DRAIN_S)
        await self.release(cause)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        members = self.members
        transport, _ = await loop.create_datagram_endpoint(lambda: members, local_addr=self.settings.me.heartbeat)
        await self.local.remove()  # left behind by a crash: nobody elected this node yet
        members.set_addresses({m.name: m.heartbeat for m in self.settings.members})
        members.counting = True
        members.say(api=False, fenced=True, owned=())
        members.set_watch(self.names)
        members.hello()
        tasks: list[asyncio.Task[object]] = [loop.create_task(members.run()), loop.create_task(self.readiness.run())]
        stopping: asyncio.Task[object] = loop.create_task(stop.wait())
        try:
            while not stop.is_set():
                wait = await self.decide()
                self._wake.clear()
                waking = loop.create_task(self._wake.wait())
                await asyncio.wait({waking, stopping, *tasks}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
                for task in tasks:
                    if task.done():
                        task.result()  # a failed probe or heartbeat loop ends the daemon with its error
        finally:
            await members.leave()
            if self.holding:
                await self.hand_over()
            if self.state_file is not None:
                self.write_state(owner.Choice(None, owner.STOPPED, "stopped"))
            for task in (*tasks, stopping):
                task.cancel()
            await asyncio.gather(*tasks, stopping, return_exceptions=True)
            self.announcer.close()
            transport.close()
