"""Fast failure detection between speakers: UDP heartbeats, no API writes, and traffic that does
not grow with the cluster.

The API server's per-speaker Leases stay the authority on who may announce (a speaker that
cannot renew goes quiet, and a dead one's Lease runs out); heartbeats only make *death* visible
quickly, and only to the speakers that act on it. When an address's owner dies, the one node
whose decision changes is the owner's *successor* for that address: the node the election picks
with the owner removed. So each speaker watches only the owners it succeeds (``watch``), and
every other speaker keeps counting those owners live until their Lease says otherwise. Views of
who is live may then differ, but only in nodes a speaker watched and saw die, and a node that
wins in its own view has seen every node ranked before it die, so two owners never coexist
longer than a false detection lasts (and the watch on a node seen dead goes on, so a node that
was only silent is heard again within a refresh).

The wire, per pair: a watcher sends a beat marked ``want`` to each node it watches every
``refresh`` seconds (a subscription that lapses after three refreshes); a node sends a beat every
``interval`` to each current subscriber, to each peer recently heard claiming an address it
now owns (so a handing-over owner learns that the new one answers), and, while it hands an
address over, to that address's new owner (which so knows the address is a speaker's, not a
conflicting host's). A watched node is dead when
it has been heard since the watch began and then not for ``dead_after``; a node never heard is
left to its Lease ("declare dead only after having heard"). Starting and leaving (a planned
stop) are told to every speaker once: they are rare, and the others' views must follow at once
(a node seen dead is back; a leaving node's addresses move).

A beat carries the addresses its sender announces, so a new owner knows the previous owner (no
conflict probe needed) and a leaving owner knows when it may go quiet. It also says when its
sender is fenced (cannot renew its Lease, so announces nothing): the watchers then take over at
once instead of waiting for that Lease to run out.

With a shared secret the datagrams carry an HMAC-SHA256 and unsigned ones are dropped. Replays
are refused twice: a beat must be newer than the last one heard from its sender (incarnation,
sequence), and its send time within ``max_skew`` of the receiver's clock, which bounds what a
captured datagram can do to a receiver that has just started and knows no sequence yet.

Per speaker, at any cluster size: (subscribers + watched) / ``interval`` datagrams/s, where
both counts are the owners it succeeds and the successors of what it owns (a handful). With
``watch`` set to every speaker (``--spread``, whose bounded load moves other addresses when one
node goes) it is the full mesh again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("onprem_lb.members")
MAC_LEN = 32
MAX_DATAGRAM = 65000
VERSION = 2


@dataclass
class Peer:
    node: str
    incarnation: int = 0
    seq: int = -1
    last_seen: float = 0.0  # monotonic; 0: never heard
    leaving: bool = False
    fenced: bool = False
    api: bool = False  # it reaches the API server and decides who is live by Leases
    dead: bool = False  # watched, heard, then silent for dead_after (until heard again)
    owned: frozenset[str] = field(default_factory=frozenset)


def encode(message: Mapping[str, object], secret: bytes | None) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return body + (hmac.new(secret, body, hashlib.sha256).digest() if secret else b"")


def decode(data: bytes, secret: bytes | None) -> dict[str, object] | None:
    if secret:
        body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
        if len(data) <= MAC_LEN or not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
            return None
    else:
        body = data
    try:
        message = json.loads(body)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class Members(asyncio.DatagramProtocol):
    def __init__(
        self,
        me: str,
        *,
        interval: float = 0.1,
        dead_after: float = 0.4,
        refresh: float = 1.0,
        max_skew: float = 10.0,
        secret: bytes | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < interval < dead_after:
            raise ValueError("need 0 < heartbeat interval < dead-after")
        self.me = me
        self.incarnation = time.time_ns()
        self.interval = interval
        self.dead_after = dead_after
        self.refresh = max(refresh, interval)
        self.max_skew = max_skew
        self.secret = secret
        # what this node's beats say about it (say(): its speaker tells it on every change)
        self.owned: frozenset[str] = frozenset()  # the addresses it announces
        self.fenced = False  # it announces nothing (cannot renew its Lease, no quorum)
        self.api = True  # it reaches the API server and decides who is live by Leases
        self.handing_to: frozenset[str] = frozenset()  # new owners of what it still answers for
        # a peer counts toward a quorum while heard within this window: shorter than dead_after, so
        # a node cut off from the others goes quiet before they declare it dead and take over
        self.quorum_window = max(interval, dead_after - interval)
        self.on_change = on_change
        self.clock = clock  # wall clock, for the send-time window only
        self.peers: dict[str, Peer] = {}
        self.addresses: dict[str, tuple[str, int]] = {}  # node -> heartbeat address (from Leases)
        self.watching: dict[str, float] = {}  # node -> monotonic time the watch began
        self._wanted: dict[str, float] = {}  # node -> when we last asked it for beats
        self.subscribers: dict[str, float] = {}  # node -> monotonic time its subscription lapses
        self.transport: asyncio.DatagramTransport | None = None
        self.leaving = False
        self._seq = 0
        self._down: frozenset[str] = frozenset()  # nodes with a heartbeat address that are not alive
        self._skew_warned = 0.0
        self._heard: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._unconfirmed: frozenset[str] = frozenset()
        self.counting = False  # while the API cannot be reached: who is heard decides, so tell each change

    # -- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        msg = decode(data, self.secret)
        if msg is None:
            log.debug("dropped a heartbeat from %s that is not ours or not signed", addr)
            return
        node, inc, seq, sent = msg.get("node"), msg.get("inc"), msg.get("seq"), msg.get("t")
        if not isinstance(node, str) or node == self.me or not isinstance(inc, int) or not isinstance(seq, int):
            return
        if not isinstance(sent, (int, float)) or abs(self.clock() - sent) > self.max_skew:
            self._warn_skew(node, sent)
            return
        peer = self.peers.setdefault(node, Peer(node))
        if inc < peer.incarnation or (inc == peer.incarnation and seq <= peer.seq):
            return  # replayed, reordered, or from a previous life
        now = time.monotonic()
        before = (peer.owned, peer.leaving, peer.fenced, peer.dead, peer.api)
        if inc != peer.incarnation:
            peer.leaving = False
        peer.incarnation, peer.seq, peer.last_seen, peer.dead = inc, seq, now, False
        peer.leaving = peer.leaving or bool(msg.get("leaving"))
        peer.fenced = bool(msg.get("fenced"))
        peer.api = msg.get("api") is not False  # a speaker of before this field renews its Lease
        owned = msg.get("owned")
        peer.owned = frozenset(str(a) for a in owned) if isinstance(owned, list) else frozenset()
        want = msg.get("want")
        if want is True:
            if node not in self.subscribers:
                self.subscribers[node] = now + 3 * self.refresh
                self._send({node}, want=False)  # answer at once: the watch starts now, not a tick later
            self.subscribers[node] = now + 3 * self.refresh
        if before != (peer.owned, peer.leaving, peer.fenced, peer.dead, peer.api) or (
            self.counting and node not in self._heard[0]
        ):
            self._changed()

    def _warn_skew(self, node: str, sent: object) -> None:
        now = time.monotonic()
        if now - self._skew_warned < 60.0 or not isinstance(sent, (int, float)):
            return
        self._skew_warned = now
        log.warning(
            "dropped heartbeats from %s sent %.1f s from this node's clock (more than %.0f s): "
            "synchronise the nodes' clocks (NTP); until then failures of that node wait for its Lease",
            node,
            sent - self.clock(),
            self.max_skew,
        )

    # -- queries

    def alive(self, node: str) -> bool:
        """A speaker with a heartbeat address that we did not see die, leave or fence itself."""
        return node in self.addresses and node not in self._down

    def _is_down(self, peer: Peer, now: float) -> bool:
        recent = now - peer.last_seen < self.dead_after
        return peer.dead or peer.leaving or (peer.fenced and recent)

    def _compute_down(self, now: float) -> frozenset[str]:
        return frozenset(n for n, p in self.peers.items() if n in self.addresses and self._is_down(p, now))

    def heard_within(self, window: float, now: float | None = None, quiet_too: bool = False) -> frozenset[str]:
        """Peers with a heartbeat address heard within ``window`` seconds that did not say they
        leave, nor (unless ``quiet_too``) that they announce nothing."""
        now = time.monotonic() if now is None else now
        return frozenset(
            n
            for n, p in self.peers.items()
            if n in self.addresses
            and now - p.last_seen < window
            and not (p.leaving or p.dead or (p.fenced and not quiet_too))
        )

    def heard_now(self) -> frozenset[str]:
        """Peers heard within ``dead_after``: the live ones while the API cannot tell."""
        return self._heard[1]

    def quorum_heard(self) -> frozenset[str]:
        """Peers heard within the quorum window, quiet ones too: a peer that announces nothing
        because it lacks a quorum is still on this side of any split, and counting it is how two
        quiet speakers that hear each other again regain one (quorum.py)."""
        return self._heard[0]

    def unconfirmed(self) -> frozenset[str]:
        """Peers not yet given ``dead_after`` to answer a watch: not watched, or watched for less
        than that and not heard since the watch began. While the Leases decided, this node watched
        only the owners it succeeds, so when the API stops answering it has not heard the others
        lately; they are not dead for that. Layer2.live counts them (with a valid Lease) until
        they had the time to answer, so that no speaker elects itself for the moment between the
        switch and the first beats."""
        return self._unconfirmed

    def _compute_unconfirmed(self, now: float) -> frozenset[str]:
        out = set()
        for node in self.addresses:
            if node == self.me:
                continue
            since, peer = self.watching.get(node), self.peers.get(node)
            # `now < since + dead_after`, the deadline check() wakes at: `now - since` rounds below it there
            if since is None or (now < since + self.dead_after and (peer is None or peer.last_seen < since)):
                out.add(node)
        return frozenset(out)

    def on_api(self, nodes: Iterable[str]) -> frozenset[str]:
        """Of ``nodes``, the peers whose last beat said they still renew their Lease."""
        return frozenset(n for n in nodes if n in self.peers and self.peers[n].api)

    def _compute_heard(self, now: float) -> tuple[frozenset[str], frozenset[str]]:
        return self.heard_within(self.quorum_window, now, quiet_too=True), self.heard_within(self.dead_after, now)

    def alive_peers(self) -> frozenset[str]:
        return frozenset(self.addresses).difference(self._down)

    def claimed_by(self, ip: str) -> list[str]:
        """Live peers heard lately (within dead_after) saying they announce ``ip``."""
        now = time.monotonic()
        return sorted(n for n, p in self.peers.items() if ip in p.owned and self._claims_lately(p, now))

    def _claims_lately(self, peer: Peer, now: float) -> bool:
        """Its claims count now: it is live and was heard within ``dead_after``."""
        return now - peer.last_seen < self.dead_after and self.alive(peer.node)

    def claims(self) -> tuple[dict[str, Peer], dict[str, frozenset[str]]]:
        """For every address claimed in a beat, at once: the peer most recently heard claiming it
        (``last_claim``) and the live peers heard lately claiming it (``claimed_by``)."""
        now = time.monotonic()
        last: dict[str, Peer] = {}
        claimed: dict[str, set[str]] = {}
        for node, peer in self.peers.items():
            recent = self._claims_lately(peer, now)
            for ip in peer.owned:
                before = last.get(ip)
                if before is None or peer.last_seen > before.last_seen:
                    last[ip] = peer
                if recent:
                    claimed.setdefault(ip, set()).add(node)
        return last, {ip: frozenset(nodes) for ip, nodes in claimed.items()}

    def last_claim(self, ip: str) -> Peer | None:
        """The peer (alive or not) most recently heard claiming ``ip``."""
        claims = [p for p in self.peers.values() if ip in p.owned]
        return max(claims, key=lambda p: p.last_seen) if claims else None

    # -- what to watch and where the others are

    def set_watch(self, nodes: Iterable[str]) -> None:
        """Watch these speakers closely (the owners this node succeeds); a node seen dead stays
        watched while its Lease lasts, so it is heard again if it was only silent."""
        now = time.monotonic()
        wanted = {n for n in nodes if n != self.me and n in self.addresses}
        wanted |= {n for n, p in self.peers.items() if p.dead and n in self.addresses}
        fresh = wanted - self.watching.keys()
        self.watching = {n: self.watching.get(n, now) for n in wanted}
        self._wanted = {n: t for n, t in self._wanted.items() if n in wanted}
        if fresh:
            self._send(fresh, want=True)
            for n in fresh:
                self._wanted[n] = now

    def set_addresses(self, addresses: Mapping[str, tuple[str, int]]) -> None:
        """The speakers with a valid Lease and where they hear heartbeats. A speaker that leaves
        this map is forgotten (its Lease ran out or was deleted)."""
        if dict(addresses) == self.addresses:
            return
        self.addresses = dict(addresses)
        for gone in [n for n in self.peers if n not in self.addresses]:
            del self.peers[gone]
        self.watching = {n: t for n, t in self.watching.items() if n in self.addresses}
        self.subscribers = {n: t for n, t in self.subscribers.items() if n in self.addresses}
        self._changed()

    def _changed(self) -> None:
        now = time.monotonic()
        self._down = self._compute_down(now)
        self._heard = self._compute_heard(now)
        self._unconfirmed = self._compute_unconfirmed(now)
        self.on_change()

    # -- sending

    def _message(self, want: bool) -> bytes:
        self._seq += 1
        msg: dict[str, object] = {
            "v": VERSION,
            "node": self.me,
            "inc": self.incarnation,
            "seq": self._seq,
            "t": round(self.clock(), 3),
            "fenced": self.fenced,
            "api": self.api,
            "owned": sorted(self.owned),
        }
        if self.leaving:
            msg["leaving"] = True
        if want:
            msg["want"] = True
        data = encode(msg, self.secret)
        if len(data) > MAX_DATAGRAM:  # keep the liveness signal even with very many addresses
            msg["owned"] = []
            data = encode(msg, self.secret)
        return data

    def _send(self, nodes: Iterable[str], *, want: bool) -> None:
        if self.transport is None:
            return
        data: bytes | None = None
        for node in nodes:
            addr = self.addresses.get(node)
            if addr is not None and node != self.me:
                data = data or self._message(want)
                self.transport.sendto(data, addr)

    def targets(self, now: float) -> tuple[set[str], set[str]]:
        """Who gets a beat now: (plain beats, beats that also ask for a watch)."""
        self.subscribers = {n: t for n, t in self.subscribers.items() if t > now}
        plain = set(self.subscribers) | self.handing_to
        mine = self.owned
        if mine:  # a peer lately heard claiming what we now own: tell it we answer (handover)
            plain |= {n for n, p in self.peers.items() if p.owned & mine and now - p.last_seen < self.dead_after}
        asking = {n for n in self.watching if n in plain or now - self._wanted.get(n, 0.0) >= self.refresh}
        for n in asking:
            self._wanted[n] = now
        return plain - asking, asking

    def say(
        self,
        *,
        owned: Iterable[str] | None = None,
        fenced: bool | None = None,
        api: bool | None = None,
        handing_to: Iterable[str] | None = None,
    ) -> None:
        """What this node's beats say from now on (what is not given stays as it was)."""
        if owned is not None:
            self.owned = frozenset(owned)
        if fenced is not None:
            self.fenced = fenced
        if api is not None:
            self.api = api
        if handing_to is not None:
            self.handing_to = frozenset(handing_to)

    def beat_now(self) -> None:
        """Send a beat at once to everyone who gets one (e.g. after taking an address, so a
        leaving owner learns it; after fencing, so the watchers take over)."""
        plain, asking = self.targets(time.monotonic())
        self._send(plain, want=False)
        self._send(asking, want=True)

    def check(self, now: float) -> float:
        """Declare the watched nodes that went silent dead; return when to check next."""
        next_check = now + self.interval
        died = []
        for node, since in self.watching.items():
            peer = self.peers.get(node)
            if peer is None or peer.dead or peer.last_seen < since:
                continue  # never heard since the watch began: its Lease decides
            deadline = peer.last_seen + self.dead_after
            if now >= deadline:
                peer.dead = True
                died.append(node)
            else:
                next_check = min(next_check, deadline)
        down = self._compute_down(now)
        heard = self._compute_heard(now)
        unconfirmed = self._compute_unconfirmed(now)
        for node in unconfirmed & self.watching.keys():  # when its time to answer the watch is up
            next_check = min(next_check, self.watching[node] + self.dead_after)
        if died:
            log.info("speaker(s) %s stopped answering heartbeats", ", ".join(sorted(died)))
        for window in (self.quorum_window, self.dead_after):  # when the next heard peer would drop out
            for n in heard[0] if window == self.quorum_window else heard[1]:
                next_check = min(next_check, self.peers[n].last_seen + window)
        news = down != self._down or (self.counting and (heard, unconfirmed) != (self._heard, self._unconfirmed))
        self._down, self._heard, self._unconfirmed = down, heard, unconfirmed
        if news:
            self.on_change()
        return next_check

    async def run(self) -> None:
        """Send heartbeats and notice deaths, until cancelled."""
        next_beat = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self.beat_now()
                next_beat = max(next_beat + self.interval, now + self.interval / 2)
            next_check = self.check(now)
            await asyncio.sleep(max(0.0, min(next_beat, next_check) - time.monotonic()))

    def hello(self) -> None:
        """Tell every speaker this life began (once, at start): a node that saw our previous
        life die watches us only once a second, and must not take a second to hear we are back."""
        self._send(list(self.addresses), want=False)

    async def leave(self, repeats: int = 3) -> None:
        """Tell every speaker we are going (a planned handover): rare, so everyone hears it."""
        self.leaving = True
        for _ in range(repeats):
            self._send(list(self.addresses), want=False)
            await asyncio.sleep(self.interval / 2)
