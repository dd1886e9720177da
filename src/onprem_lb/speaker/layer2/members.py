"""Fast failure detection between speakers: UDP heartbeats, no API writes.

The API server's per-speaker Leases stay the authority on who may announce (a speaker that
cannot renew goes quiet); heartbeats only make *death* visible quickly. Each speaker sends a
small datagram every ``interval`` to every peer whose Lease names a heartbeat address; a peer
not heard from for ``dead_after`` is dead. Failover speed is set by these two numbers and
costs no API writes at all.

A heartbeat carries the addresses its sender announces right now, so a new owner knows the
previous owner (no conflict probe needed) and a leaving owner knows when it may go quiet. It
also says when its sender is fenced (cannot renew its Lease, so announces nothing): the others
then take over at once instead of waiting for that Lease to run out.
With a shared secret the datagrams carry an HMAC-SHA256 and unsigned ones are dropped.
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


@dataclass
class Peer:
    node: str
    incarnation: int = 0
    seq: int = -1
    last_seen: float = 0.0
    leaving: bool = False
    fenced: bool = False
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
        interval: float = 0.2,
        dead_after: float = 1.0,
        secret: bytes | None = None,
        owned: Callable[[], Iterable[str]] = lambda: (),
        fenced: Callable[[], bool] = lambda: False,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        if not 0 < interval < dead_after:
            raise ValueError("need 0 < heartbeat interval < dead-after")
        self.me = me
        self.incarnation = time.time_ns()
        self.interval = interval
        self.dead_after = dead_after
        self.secret = secret
        self.owned = owned
        self.fenced = fenced
        self.on_change = on_change
        self.peers: dict[str, Peer] = {}
        self.addresses: dict[str, tuple[str, int]] = {}  # node -> heartbeat address (from Leases)
        self.transport: asyncio.DatagramTransport | None = None
        self.leaving = False
        self._seq = 0
        self._alive: frozenset[str] = frozenset()

    # -- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        msg = decode(data, self.secret)
        if msg is None:
            log.debug("dropped a heartbeat from %s that is not ours or not signed", addr)
            return
        node, inc, seq = msg.get("node"), msg.get("inc"), msg.get("seq")
        if not isinstance(node, str) or node == self.me or not isinstance(inc, int) or not isinstance(seq, int):
            return
        peer = self.peers.setdefault(node, Peer(node))
        if inc < peer.incarnation or (inc == peer.incarnation and seq <= peer.seq):
            return  # reordered or from a previous life
        was_alive = self.alive(node)
        before = (peer.owned, peer.leaving, peer.fenced)
        peer.incarnation, peer.seq, peer.last_seen = inc, seq, time.monotonic()
        peer.leaving = bool(msg.get("leaving"))
        peer.fenced = bool(msg.get("fenced"))
        owned = msg.get("owned")
        peer.owned = frozenset(str(a) for a in owned) if isinstance(owned, list) else frozenset()
        if was_alive != self.alive(node) or before != (peer.owned, peer.leaving, peer.fenced):
            self._alive = self._compute_alive()
            self.on_change()

    # -- queries

    def alive(self, node: str) -> bool:
        peer = self.peers.get(node)
        return (
            peer is not None
            and not peer.leaving
            and not peer.fenced
            and node in self.addresses
            and time.monotonic() - peer.last_seen < self.dead_after
        )

    def _compute_alive(self) -> frozenset[str]:
        return frozenset(n for n in self.peers if self.alive(n))

    def alive_peers(self) -> frozenset[str]:
        return self._alive

    def claimed_by(self, ip: str) -> list[str]:
        """Alive peers that say they announce ``ip``."""
        return sorted(n for n in self._alive if ip in self.peers[n].owned)

    def last_claim(self, ip: str) -> Peer | None:
        """The peer (alive or not) most recently heard claiming ``ip``."""
        claims = [p for p in self.peers.values() if ip in p.owned]
        return max(claims, key=lambda p: p.last_seen) if claims else None

    # -- sending

    def _send_all(self) -> None:
        if self.transport is None:
            return
        self._seq += 1
        msg = {
            "v": 1,
            "node": self.me,
            "inc": self.incarnation,
            "seq": self._seq,
            "leaving": self.leaving,
            "fenced": self.fenced(),
            "owned": sorted(self.owned()),
        }
        data = encode(msg, self.secret)
        if len(data) > MAX_DATAGRAM:  # keep the liveness signal even with very many addresses
            msg["owned"] = []
            data = encode(msg, self.secret)
        for node, addr in self.addresses.items():
            if node != self.me:
                self.transport.sendto(data, addr)

    async def run(self) -> None:
        """Send heartbeats and notice deaths, until cancelled."""
        while True:
            self._send_all()
            now_alive = self._compute_alive()
            if now_alive != self._alive:
                gone = sorted(self._alive - now_alive)
                if gone:
                    log.info("speaker(s) %s stopped answering heartbeats", ", ".join(gone))
                self._alive = now_alive
                self.on_change()
            await asyncio.sleep(self.interval)

    def set_addresses(self, addresses: Mapping[str, tuple[str, int]]) -> None:
        if dict(addresses) != self.addresses:
            self.addresses = dict(addresses)
            self._alive = self._compute_alive()
            self.on_change()

    async def leave(self, repeats: int = 3) -> None:
        """Tell every peer we are going (a planned handover)."""
        self.leaving = True
        for _ in range(repeats):
            self._send_all()
            await asyncio.sleep(self.interval / 4)

    def beat_now(self) -> None:
        """Send a heartbeat at once (e.g. after taking an address, so a leaving owner learns it)."""
        self._send_all()
