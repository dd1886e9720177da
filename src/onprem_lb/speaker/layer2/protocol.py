"""Layer 2 behind the speaker's protocol interface: election, handover, membership, the
announcer, and the ServiceL2Status objects.

Liveness: the agent keeps this speaker's Lease ``speaker-<node>`` (the authority while the API
server answers); layer 2 adds UDP heartbeats (``members``) between each owner and its successors
(the node the election would pick for an address without its owner). A peer is live while its
Lease is valid (or it is heard now) and this node has not seen it die, leave or fence itself.

Without the API (the agent's membership mode) this node watches every speaker it last knew, a
peer is live while it is heard, and once its own Lease is not renewed this node keeps announcing
only as ``quorum.decide`` allows: while it hears a majority of those speakers and none of them
still reaches the API. A speaker that may not hold announces nothing (self-fencing): the others
take over - at once if they hear its "fenced" beat, or when its Lease runs out, or (without the
API) when they stop hearing it, which is later than it stops hearing them.

Handover: a speaker that loses an address keeps answering until the new owner's heartbeat
claims it (or the handover timeout passes); on SIGTERM it tells its peers it is leaving, waits
for them to claim its addresses, then goes quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lightkube import ApiError, AsyncClient

from onprem_lb import address_states, hostport, metrics
from onprem_lb.k8s import TRANSIENT, EventRecorder, Informer, ServiceL2Status
from onprem_lb.speaker import statuses
from onprem_lb.speaker.layer2 import election, handover, quorum
from onprem_lb.speaker.layer2.announcer import Announcer
from onprem_lb.speaker.layer2.members import Members
from onprem_lb.speaker.statuses import NODE_LABEL, SVC_NAME_LABEL, SVC_NS_LABEL
from onprem_lb.speaker.view import View

log = logging.getLogger("onprem_lb.speaker")
HEARTBEAT_ANNOTATION = "onprem-lb.io/heartbeat-address"


def status_name(svc_key: str, node: str) -> str:
    """Deterministic ServiceL2Status name per (Service, node): one writer per object."""
    return "l2-" + hashlib.sha256(f"{svc_key}#{node}".encode()).hexdigest()[:16]


class Layer2:
    name = "layer2"

    def __init__(
        self,
        client: AsyncClient,
        *,
        node: str,
        namespace: str,
        heartbeat: tuple[str, int],
        members: Members,
        announcer: Announcer,
        events: EventRecorder,
        spread: bool = False,
        handover_timeout: float = 2.0,
        probe: bool = True,
    ) -> None:
        self.client = client
        self.node = node
        self.namespace = namespace
        self.heartbeat = heartbeat
        self.members = members
        self.announcer = announcer
        self.events = events
        self.spread = spread
        self.handover_timeout = handover_timeout
        self.probe_first = probe
        self.statuses = Informer(
            client, ServiceL2Status, statuses.convert, self._touch, namespace=namespace, name="servicel2statuses"
        )
        self.may_announce = False  # from the last view: its Lease is renewed, or it holds by membership
        self.api_recent = True  # from the last view: its last renewal is recent
        self.membership = False  # from the last view: who is heard decides who is live
        self.lease_ok = True
        self.known: frozenset[str] | None = None  # the speakers last seen with a valid Lease, itself included
        self._prepared = False
        self._regaining_since: float | None = None  # quiet, then a majority again: beating before announcing
        self.leaving = False
        self.leased: frozenset[str] = frozenset()
        self.current: dict[str, election.Announcement] = {}  # our announcements (address -> decision)
        self.winners: Mapping[str, election.Announcement] = {}
        self.states: dict[str, str] = {}  # address -> handover state or reason (reported on change)
        self._published = address_states.Publisher("layer2")  # self.states, on our Lease
        self._state_counts: dict[str, int] = {}
        self.releasing: dict[str, float] = {}  # address -> monotonic deadline while handing over
        self.blocked: dict[str, float] = {}  # address -> retry time after a conflict
        self.probing: set[str] = set()
        self.announced_once: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status_dirty = asyncio.Event()
        self._wake: Callable[[], None] = lambda: None
        self._transport: asyncio.BaseTransport | None = None
        self._tell_members()
        # another host's claim on an address we announce is answered only while it is still ours
        announcer.may_defend = self._ours_to_defend

    def _tell_members(self) -> None:
        """What our beats say, from what this node now announces and why (members.Members.say):
        called wherever one of these changes, before any beat that must carry it."""
        self.members.say(
            owned=self.current,
            # a speaker regaining a quorum beats as live before it announces (hold())
            fenced=not self.may_announce and self._regaining_since is None,
            # "my Leases decide who is live": a node whose Lease lapsed then yields to this one; a
            # node just back from an outage (membership mode) still counts who it hears
            api=self.lease_ok and not self.membership,
            handing_to={self.winners[ip].node for ip in self.releasing if ip in self.winners},
        )

    def _ours_to_defend(self, ip: str) -> bool:
        won = self.winners.get(ip)
        return (
            self.may_announce
            and ip in self.current
            and ip not in self.releasing
            and won is not None
            and won.node == self.node
        )

    # -- the protocol interface ------------------------------------------------------------------

    def informers(self) -> Sequence[Informer[Any]]:
        return [self.statuses]

    def lease_annotations(self) -> Mapping[str, str]:
        return {HEARTBEAT_ANNOTATION: hostport.join(*self.heartbeat), **self._published.annotations(self.states)}

    async def start(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self.members.on_change = wake
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self.members, local_addr=self.heartbeat)

    async def prepare(self, view: View) -> None:
        """Say we are here, then hear the others before deciding anything, or we would claim
        what they announce (an owner handing an address back to us claims it in its beats)."""
        self._follow(view)
        self.members.hello()
        await asyncio.sleep(self.members.dead_after)
        self._prepared = True
        log.info("layer 2 ready: %d live speakers (%s)", len(self.live()), ", ".join(sorted(self.live())))

    async def run(self, view: Callable[[], View]) -> None:
        await asyncio.gather(self.members.run(), self._status_writer(), self._link_watch())

    def apply(self, view: View) -> None:
        """Bring the announcer in line with the election, handing over gently (handover.plan)."""
        now = time.monotonic()
        fenced_now = self.may_announce and not view.may_announce
        self._follow(view)
        decision = self._decide(view)
        self.winners = decision.winners
        # forget what no longer matters: an address gone from every Service is probed again if it returns
        self.blocked = {ip: t for ip, t in self.blocked.items() if t > now and ip in self.winners}
        self.announced_once &= self.winners.keys() | self.current.keys()

        quiet = view.quiet_reason or handover.FENCED
        step = handover.plan(
            me=self.node,
            winners=self.winners,
            not_eligible=decision.not_eligible,
            current={ip: a.interfaces for ip, a in self.current.items()},
            lease_ok=view.may_announce,
            now=now,
            releasing=self.releasing,
            blocked=self.blocked,
            probing=self.probing,
            announced_once=self.announced_once,
            probe_first=self.probe_first,
            handover_timeout=self.handover_timeout,
            heard=self._heard(),
        )
        if not view.may_announce:  # fenced, or without a quorum: say which
            step.states.update({ip: quiet for ip, st in step.states.items() if st == handover.FENCED})
        elif not view.lease_ok:  # announced by membership, not by Lease
            step.states.update({ip: handover.HOLDING for ip, st in step.states.items() if st == handover.ANNOUNCING})
        handing_over = step.releasing.keys() - self.releasing.keys()
        self.releasing = step.releasing
        for ip in step.probe:
            self._spawn(self._probe_then_take(ip, self.winners[ip]))
        for seconds in step.reannounce_after:
            metrics.reannounce_seconds.observe(seconds)
        self._report_states(step.states)
        mine = {ip: a for ip, a in self.winners.items() if a.node == self.node} if view.may_announce else {}
        self._set(step.announce, mine)
        if fenced_now or handing_over:
            # fenced: quiet first, then tell the watchers, who take over without waiting for our Lease;
            # handing over: the new owner learns at once that a speaker, not another host, answers now
            self.members.beat_now()

    async def stop(self, view: Callable[[], View]) -> None:
        """Planned stop: peers take our addresses first, then we go quiet."""
        self.leaving = True
        owned = set(self.current)
        log.info("stopping: handing over %d addresses", len(owned))
        await self.members.leave()
        deadline = time.monotonic() + self.handover_timeout
        while owned and time.monotonic() < deadline:
            self.winners = self._decide(view()).winners
            self._tell_members()
            pending = {
                ip for ip in owned if ip in self.winners and self.winners[ip].node not in self.members.claimed_by(ip)
            }
            if not pending:
                break
            await asyncio.sleep(0.02)
        self.announcer.set_owned({})
        self.current = {}
        self._tell_members()
        metrics.owned_addresses.set(0)
        with contextlib.suppress(asyncio.TimeoutError):  # the API may be gone: they are stale, not wrong
            await asyncio.wait_for(self._delete_own_statuses(), self.handover_timeout)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.announcer.close()
        if self._transport is not None:
            self._transport.close()

    # -- liveness --------------------------------------------------------------------------------

    def _follow(self, view: View) -> None:
        """Take the Leases' news: who holds a valid Lease, where their heartbeats go."""
        was_allowed = self.may_announce
        self.may_announce = view.may_announce
        self.lease_ok = view.lease_ok
        self.api_recent = view.api_recent
        self.membership = view.membership
        self.members.counting = view.membership
        self.leased = view.leased
        if not view.membership and view.lease_ok:  # the API answers and is caught up: who it knows
            self.known = frozenset(view.leased | {self.node})
        addresses: dict[str, tuple[str, int]] = {}
        for node, published in view.lease_annotations.items():
            try:
                addresses[node] = hostport.parse(published.get(HEARTBEAT_ANNOTATION, ""))
            except ValueError:
                continue  # no heartbeat address: never counted live (members hears nobody there)
        self.members.set_addresses(addresses)
        self._tell_members()
        if view.may_announce and not was_allowed:
            self.members.beat_now()

    def hold(self) -> quorum.Hold:
        """Whether this node, its Lease not renewed, may keep announcing (quorum.decide).

        A node that was quiet and now hears a majority again (two quiet halves of a healed split,
        say) first beats as live for ``dead_after`` (quorum.REGAINING): speakers regaining with it
        hear it, and it them, before any of them elects, so none elects without the others and two
        never take the same address."""
        if not self._prepared or self.leaving:
            self._regaining(None)
            return quorum.decide(self.node, None, (), ())
        known = self.known or frozenset({self.node})
        heard = self.members.quorum_heard() & known
        decision = quorum.decide(self.node, known, heard, self.members.on_api(heard))
        if not decision.holds or self.may_announce:
            self._regaining(None)
            return decision
        now = time.monotonic()
        since = self._regaining_since
        if since is None:
            since = now
            self._regaining(since)
            self.members.beat_now()
        if now - since < self.members.dead_after:
            return quorum.regaining(decision)
        return decision

    def _regaining(self, since: float | None) -> None:
        if since != self._regaining_since:
            self._regaining_since = since
            self._tell_members()  # regaining beats as live, not fenced

    def live(self) -> set[str]:
        heard = self.members.heard_now()
        if self.membership:
            # the Leases are stale: who is heard and announces (or will: regaining), known or not -
            # a holder that knew fewer speakers still elects from the same live set as the others;
            # and, for dead_after after the switch, a peer with a valid Lease that this node did
            # not watch (members.unconfirmed): it had no reason to hear it while the Leases decided
            pending = self.members.unconfirmed() & self.leased
            out = {n for n in self.members.alive_peers() if n in heard or n in pending}
        else:
            out = {n for n in self.members.alive_peers() if n in self.leased or n in heard}
        if self.may_announce and not self.leaving:
            out.add(self.node)
        return out

    # -- the decision ----------------------------------------------------------------------------

    def _heard(self) -> handover.Heard:
        """The heartbeats' news for handover.plan, frozen."""
        last, claimed = self.members.claims()
        claims = {ip: handover.Claim(peer.node, peer.last_seen) for ip, peer in last.items()}
        return handover.Heard(claims, claimed, self.members.alive_peers())

    def _decide(self, view: View) -> election.Decision:
        """The election's answer now (address -> owner), and why this node may not announce the
        addresses it does not win."""
        live = self.live()
        metrics.live_speakers.set(len(live))
        inputs: dict[str, Any] = {
            "endpoints": view.endpoints,
            "nodes": view.nodes,
            "live": live,
            "ads": view.config.l2_advertisements,
            "pool_of": view.config.pool_of,
            "pool_labels": view.config.pool_labels,
        }
        not_eligible = election.why_not_eligible(view.services, self.node, **inputs)
        winners, successors = election.elect_with_successors(view.services, spread=self.spread, **inputs)
        if self.spread:  # bounded load: one node going moves others' addresses, so everyone watches everyone
            watch: set[str] = set(live)
        else:  # the owners whose addresses this node would take: the only deaths that change its decision
            watch = {winners[ip].node for ip, successor in successors.items() if successor == self.node}
        if self.membership:  # without the API every speaker with a heartbeat address is watched
            watch |= self.members.addresses.keys()
        self.members.set_watch(watch)
        metrics.watched_speakers.set(len(self.members.watching))
        return election.Decision(winners, not_eligible)

    def _report_states(self, states: Mapping[str, str]) -> None:
        """Log each address whose state changed (why it is not announced, if it is not) and count
        addresses per state in onprem_lb_speaker_addresses{state}."""
        for ip, state in sorted(states.items()):
            before = self.states.get(ip)
            if before == state:
                continue
            quiet = state == handover.NOT_OWNER or (before is None and state == handover.ANNOUNCING)
            (log.debug if quiet else log.info)("%s: %s (was %s)", ip, state, before or "unknown")
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        for state in set(counts) | set(self._state_counts):
            metrics.address_states.labels(state=state).set(counts.get(state, 0))
        self._state_counts = counts
        self.states = dict(states)

    def _set(self, desired: Mapping[str, tuple[str, ...]], mine: Mapping[str, election.Announcement]) -> None:
        added, removed = self.announcer.set_owned(desired)
        for ip in added:
            if ip not in self.current:
                metrics.owner_changes.labels("taken").inc()
                self.announced_once.add(ip)
                log.info("announcing %s on %s", ip, ", ".join(self.announcer.interfaces_for(ip)) or "no interface")
        for ip in removed:
            metrics.owner_changes.labels("given_up").inc()
            log.info("stopped announcing %s", ip)
        new_current = {ip: mine.get(ip) or self.current[ip] for ip in desired}
        for ip, ann in new_current.items():
            if ip not in self.current:
                for svc in ann.services:
                    message = f'announcing from node "{self.node}" with protocol "layer2"'
                    self._event(svc, "Normal", "nodeAssigned", message)
        self.current = new_current
        self._tell_members()
        metrics.owned_addresses.set(len(self.current))
        if added or removed:
            self.members.beat_now()
            self._status_dirty.set()
        if self.releasing:
            self._later(0.1)

    async def _probe_then_take(self, ip: str, ann: election.Announcement) -> None:
        self.probing.add(ip)
        try:
            other = await self.announcer.probe(ip, ann.interfaces)
        finally:
            self.probing.discard(ip)
        if other and await self._handed_over_by_a_speaker(ip):
            log.debug("%s answered by %s: a speaker handing it over to us, not a conflict", ip, other)
            other = None
        if other:
            metrics.conflicts.inc()
            self.blocked[ip] = time.monotonic() + 30.0
            log.warning("not announcing %s: host %s already answers for it", ip, other)
            for svc in ann.services:
                self._event(
                    svc,
                    "Warning",
                    "AddressConflict",
                    f"{ip} is already in use by another host (MAC {other}) on the network; not announced "
                    "from this node. Remove the address from that host or from the pool; retrying in 30 s",
                )
            self._later(30.0)
            return
        self.announced_once.add(ip)
        self._wake()

    async def _handed_over_by_a_speaker(self, ip: str) -> bool:
        """Whether the host that answered our probe is a live speaker still answering for ``ip``
        during a handover: its claim comes with its beats, which may follow its ARP reply by as
        long as it takes that speaker to see the election change (bounded: a handover ends by
        its timeout, so no claim by then means another host)."""
        deadline = time.monotonic() + self.handover_timeout
        while True:
            if self.members.claimed_by(ip):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.members.interval / 4)

    def _later(self, delay: float) -> None:
        async def wake() -> None:
            await asyncio.sleep(delay)
            self._wake()

        self._spawn(wake())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _touch(self, *_args: Any) -> None:
        self._wake()

    async def _link_watch(self, period: float = 5.0) -> None:
        """Interfaces come and go (a VLAN added, a NIC replaced): follow them."""
        while True:
            await asyncio.sleep(period)
            if self.announcer.resync_links():
                log.info("interfaces changed: now %s", ", ".join(sorted(self.announcer.links)) or "(none)")
                self._status_dirty.set()

    # -- events and status -----------------------------------------------------------------------

    def _event(self, svc_key: str, kind: str, reason: str, message: str) -> None:
        ns, _, name = svc_key.partition("/")
        self.events.record({"namespace": ns, "name": name}, kind, reason, message)

    def _desired_statuses(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ip, ann in self.current.items():
            ifaces = self.announcer.interfaces_for(ip)
            for svc in ann.services:
                ns, _, name = svc.partition("/")
                key = status_name(svc, self.node)
                entry = out.setdefault(
                    key,
                    {
                        "labels": {NODE_LABEL: self.node, SVC_NAME_LABEL: name, SVC_NS_LABEL: ns},
                        "status": {"node": self.node, "serviceName": name, "serviceNamespace": ns, "interfaces": []},
                    },
                )
                names = {i["name"] for i in entry["status"]["interfaces"]} | set(ifaces)
                entry["status"]["interfaces"] = [{"name": n} for n in sorted(names)]
        return out

    async def _status_writer(self) -> None:
        """ServiceL2Status objects: ours for what we announce; stale ones of dead nodes removed."""
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            await asyncio.sleep(0.2)  # coalesce bursts
            if not self.lease_ok or not self.api_recent:  # no API to write to: written when it answers
                self._status_dirty.set()
                await asyncio.sleep(1.0)
                continue
            try:
                await self._write_statuses()
            except (ApiError, *TRANSIENT) as exc:
                log.warning("writing ServiceL2Status failed (%s); retrying", getattr(exc, "status", exc))
                self._status_dirty.set()
                await asyncio.sleep(1.0)

    async def _write_statuses(self) -> None:
        desired = self._desired_statuses()
        live = self.live()
        mine_services = {(e["labels"][SVC_NS_LABEL], e["labels"][SVC_NAME_LABEL]) for e in desired.values()}
        for key, have in list(self.statuses.items.items()):
            name = have["name"]
            owner = have["labels"].get(NODE_LABEL)
            svc = (have["labels"].get(SVC_NS_LABEL), have["labels"].get(SVC_NAME_LABEL))
            stale_mine = owner == self.node and name not in desired
            stale_dead = owner != self.node and owner not in live and svc in mine_services
            if stale_mine or stale_dead:
                with contextlib.suppress(ApiError):
                    await self.client.delete(ServiceL2Status, name, namespace=self.namespace)
                self.statuses.items.pop(key, None)
        writes = [
            self._write_status(name, entry, self.statuses.items.get(f"{self.namespace}/{name}"))
            for name, entry in desired.items()
        ]
        limit = asyncio.Semaphore(8)  # a few requests in flight: 1,000 objects in seconds, not minutes

        async def bounded(write: Any) -> None:
            async with limit:
                await write

        results = await asyncio.gather(*(bounded(w) for w in writes), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _write_status(self, name: str, entry: dict[str, Any], have: dict[str, Any] | None) -> None:
        await statuses.put(self.client, ServiceL2Status, self.namespace, name=name, entry=entry, have=have)

    async def _delete_own_statuses(self) -> None:
        await statuses.delete_own(self.client, ServiceL2Status, self.namespace, self.node, self.statuses.items.values())
