"""Layer 2 announcing: answer ARP and IPv6 neighbour solicitations for owned addresses.

The packet edge of the speaker. Frames are built and parsed by the pure functions of
frames.py; ``Announcer`` owns the raw AF_PACKET sockets, one ARP and one IPv6 socket
per interface in use, each read by a thread of its own. It answers

- ARP requests (broadcast and unicast, probes included) whose target is an owned IPv4 address;
- neighbour solicitations (multicast to the solicited-node group, and unicast NUD probes)
  whose target is an owned IPv6 address, after joining the solicited-node group (the kernel
  then sends the MLD reports that snooping switches need);

only on the interfaces chosen for that address. On taking an address it sends a burst of
gratuitous ARP / unsolicited neighbour advertisements; before the first announcement of an
address nobody else claims, ``probe`` looks for another host answering (RFC 5227 / DAD).

An owned address that another host claims (its gratuitous ARP, an ARP reply or a neighbour
advertisement from another MAC) is defended (RFC 5227, 2.4 (b)): once the claim is over, the
announcement burst is sent again, at most once per ``defend_interval``, and only while
``may_defend`` says this node still owns the address (not while it hands it over). A speaker
that announced an address for a moment from a view not yet caught up, then let it go, has
moved every client that heard it to itself; without the defence those clients would keep
sending there, through that node's forwarding, until it died.

Interfaces are found with ioctls in the current network namespace (no /sys: that can show
another namespace's view).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import ipaddress
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from onprem_lb.speaker.layer2.frames import (
    ND_NA,
    ND_NS,
    arp_probe,
    arp_reply,
    dad_probe,
    gratuitous_arp,
    mac_text,
    na_reply,
    packed,
    parse_arp,
    parse_ndp,
    solicited_node,
    unsolicited_na,
)

log = logging.getLogger("onprem_lb.l2")

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40
SO_ATTACH_FILTER = 26

# Classic BPF on the IPv6 socket: keep ICMPv6 (next header 58) neighbour solicitations and
# advertisements (type 135/136, no extension headers: RFC 4861 forbids none, but NDP never
# carries them in practice), drop the rest in the kernel.
_NDP_FILTER = [
    (0x30, 0, 0, 20),  # ldb [20]: IPv6 next header
    (0x15, 0, 4, 58),  # ICMPv6? else drop
    (0x30, 0, 0, 54),  # ldb [54]: ICMPv6 type
    (0x15, 1, 0, ND_NS),
    (0x15, 0, 1, ND_NA),
    (0x06, 0, 0, 0xFFFF),  # accept
    (0x06, 0, 0, 0),  # drop
]


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    mac: bytes
    up: bool


def _ifreq(name: str) -> bytes:
    return struct.pack("16s24x", name.encode()[:15])


def links() -> dict[str, Link]:
    """Non-loopback interfaces of this network namespace."""
    out: dict[str, Link] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for index, name in socket.if_nameindex():
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _ifreq(name)), 16)[0]
                hw = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, _ifreq(name))
            except OSError:
                continue  # gone meanwhile
            if flags & IFF_LOOPBACK:
                continue
            mac = hw[18:24]
            out[name] = Link(name, index, mac, bool(flags & IFF_UP and flags & IFF_RUNNING))
    return out


# ---------------------------------------------------------------- sockets


class _Port:
    """The sockets of one interface, each read by a thread of its own.

    Answers leave from the reader thread, not from the asyncio loop: the loop also parses
    watch events and talks TLS to the API server, and a reply must not wait behind that.
    The owned-address table is only read here (dict lookups are atomic under the GIL).
    """

    READ_TIMEOUT = 0.5  # how long close() may wait for a reader to notice

    def __init__(self, link: Link, loop: asyncio.AbstractEventLoop, on_frame: Callable[[_Port, bytes], None]) -> None:
        self.link = link
        self.loop = loop
        self.on_frame = on_frame
        self.arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.arp.bind((link.name, ETH_P_ARP))
        self.ndp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
        self._filter = _attach_filter(self.ndp, _NDP_FILTER)
        self.ndp.bind((link.name, ETH_P_IPV6))
        self.mcast = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.groups: dict[bytes, int] = {}  # solicited-node group -> owned addresses using it
        self._stop = threading.Event()
        self._readers = []
        for sock, kind in ((self.arp, "arp"), (self.ndp, "ndp")):
            sock.setblocking(False)
            _drain(sock)
            sock.settimeout(self.READ_TIMEOUT)
            reader = threading.Thread(target=self._read, args=(sock,), name=f"l2-{link.name}-{kind}", daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = sock.recvfrom(2048)
            except socket.timeout:  # = TimeoutError from Python 3.10; its own OSError subclass on 3.9
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("receive on %s failed: %s", self.link.name, exc)
                self._stop.wait(0.1)
                continue
            if addr[2] != PACKET_OUTGOING:
                try:
                    self.on_frame(self, frame)
                except Exception:  # a bad frame must not end the reader
                    log.exception("handling a frame on %s failed", self.link.name)

    def send(self, frame: bytes) -> None:
        try:
            (self.ndp if frame[12:14] == b"\x86\xdd" else self.arp).send(frame)
        except OSError as exc:
            log.warning("send on %s failed: %s", self.link.name, exc)

    def join(self, ip: bytes) -> None:
        group = solicited_node(ip)
        self.groups[group] = self.groups.get(group, 0) + 1
        if self.groups[group] == 1:
            self._membership(socket.IPV6_JOIN_GROUP, group)

    def leave(self, ip: bytes) -> None:
        group = solicited_node(ip)
        left = self.groups.get(group, 0) - 1
        if left > 0:
            self.groups[group] = left
            return
        self.groups.pop(group, None)
        self._membership(socket.IPV6_LEAVE_GROUP, group)

    def _membership(self, option: int, group: bytes) -> None:
        try:
            self.mcast.setsockopt(socket.IPPROTO_IPV6, option, group + struct.pack("@I", self.link.index))
        except OSError as exc:
            log.warning("multicast group change on %s failed: %s", self.link.name, exc)

    def close(self) -> None:
        self._stop.set()
        for reader in self._readers:
            reader.join(self.READ_TIMEOUT * 2)
        for sock in (self.arp, self.ndp, self.mcast):
            sock.close()


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> ctypes.Array[ctypes.c_char]:
    code = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
    return buf  # keep alive with the socket


def _drain(sock: socket.socket) -> None:
    for _ in range(10000):  # frames that arrived before the filter was attached
        try:
            sock.recv(2048)
        except (BlockingIOError, InterruptedError):
            return


class Announcer:
    """Answers for the owned addresses on their interfaces; sends announcements and probes."""

    def __init__(
        self,
        *,
        garp_count: int = 3,
        garp_interval: float = 0.2,
        on_request: Callable[[str], None] | None = None,
        on_reply: Callable[[str], None] | None = None,
        on_gratuitous: Callable[[str], None] | None = None,
        on_foreign_claim: Callable[[str], None] | None = None,
        defend_interval: float = 2.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.garp_count = garp_count
        self.garp_interval = garp_interval
        self.defend_interval = defend_interval
        self.may_defend: Callable[[str], bool] = lambda _ip: True  # the protocol's: owner, not handing over
        self._defended: dict[bytes, float] = {}  # address -> when a defence was last started
        self.ports: dict[str, _Port] = {}
        self.links: dict[str, Link] = {}
        self.owned: dict[bytes, tuple[str, ...]] = {}  # address -> interfaces (empty: all)
        self._probing: dict[bytes, asyncio.Future[str]] = {}
        self._bursts: set[asyncio.Task[None]] = set()
        self._on_request = on_request or (lambda _f: None)
        self._on_reply = on_reply or (lambda _f: None)
        self._on_gratuitous = on_gratuitous or (lambda _f: None)
        self._on_foreign_claim = on_foreign_claim or (lambda _f: None)

    # -- interfaces

    def refresh_links(self) -> None:
        self.links = links()
        for name in list(self.ports):
            link = self.links.get(name)
            if link is None or link.mac != self.ports[name].link.mac:
                self.ports.pop(name).close()

    def resync_links(self) -> bool:
        """Look at the interfaces again; when they changed, answer and announce on the new set."""
        before = self.links
        self.refresh_links()
        if before == self.links:
            return False
        owned = {_text(k): v for k, v in self.owned.items()}
        self.set_owned({})
        self.set_owned(owned)  # joins groups on new ports and announces there
        return True

    def _selected(self, wanted: tuple[str, ...]) -> list[_Port]:
        names = wanted or tuple(n for n, link in self.links.items() if link.up)
        out = []
        for name in names:
            link = self.links.get(name)
            if link is None or not link.up:
                continue
            port = self.ports.get(name)
            if port is None:
                try:
                    port = self.ports[name] = _Port(link, self.loop, self._frame)
                except OSError as exc:
                    log.warning("cannot open raw sockets on %s: %s", name, exc)
                    continue
            out.append(port)
        return out

    def interfaces_for(self, ip: str) -> list[str]:
        wanted = self.owned.get(packed(ip))
        return [] if wanted is None else [p.link.name for p in self._selected(wanted)]

    # -- ownership

    def set_owned(self, desired: Mapping[str, tuple[str, ...]]) -> tuple[list[str], list[str]]:
        """Answer for exactly ``desired`` (address -> interfaces) from now on; announce the new ones.

        Returns (added, removed) addresses.
        """
        want = {packed(ip): tuple(ifaces) for ip, ifaces in desired.items()}
        removed = [k for k in self.owned if k not in want]
        added = [k for k, v in want.items() if self.owned.get(k) != v]
        for key in removed:
            self._unjoin(key, self.owned.pop(key))
            self._defended.pop(key, None)
        for key in added:
            old = self.owned.get(key)
            if old is not None:
                self._unjoin(key, old)
            self.owned[key] = want[key]
            if len(key) == 16:
                for port in self._selected(want[key]):
                    port.join(key)
            self._burst(key)
        return [_text(k) for k in added], [_text(k) for k in removed]

    def _unjoin(self, key: bytes, ifaces: tuple[str, ...]) -> None:
        if len(key) == 16:
            for port in self._selected(ifaces):
                port.leave(key)

    def _burst(self, key: bytes, after: float = 0.0, defending: bool = False) -> None:
        task = self.loop.create_task(self._announce(key, after, defending))
        self._bursts.add(task)
        task.add_done_callback(self._bursts.discard)

    async def _announce(self, key: bytes, after: float = 0.0, defending: bool = False) -> None:
        if after:
            await asyncio.sleep(after)
        if defending and not self.may_defend(_text(key)):
            return  # handed over meanwhile: the claim was the new owner's
        for i in range(self.garp_count):
            ifaces = self.owned.get(key)
            if ifaces is None:
                return  # given up meanwhile
            for port in self._selected(ifaces):
                frames = gratuitous_arp(port.link.mac, key) if len(key) == 4 else [unsolicited_na(port.link.mac, key)]
                for frame in frames:
                    port.send(frame)
                self._on_gratuitous("arp" if len(key) == 4 else "ndp")
            if i + 1 < self.garp_count:
                await asyncio.sleep(self.garp_interval)

    async def probe(self, ip: str, interfaces: tuple[str, ...], timeout: float = 0.3) -> str | None:
        """Ask whether another host answers for ``ip``; its MAC when one does, else None."""
        key = packed(ip)
        if key in self._probing:
            return await asyncio.shield(self._probing[key])
        fut: asyncio.Future[str] = self.loop.create_future()
        self._probing[key] = fut
        try:
            ports = self._selected(interfaces)
            deadline = time.monotonic() + timeout
            for _ in range(2):
                for port in ports:
                    port.send(arp_probe(port.link.mac, key) if len(key) == 4 else dad_probe(port.link.mac, key))
                try:
                    wait = max(0.0, min(timeout / 2, deadline - time.monotonic()))
                    return await asyncio.wait_for(asyncio.shield(fut), wait) or None
                except asyncio.TimeoutError:  # = TimeoutError from Python 3.11, not before
                    continue
            return None
        finally:
            self._probing.pop(key, None)
            if not fut.done():
                fut.set_result("")

    def _claimed_elsewhere(self, key: bytes, mac: bytes) -> None:
        """Another host said it has ``key``, which we announce: defend it once its claim is over
        (its own burst, ``garp_count`` rounds ``garp_interval`` apart), at most once per
        ``defend_interval``."""
        now = time.monotonic()
        if key not in self.owned or now - self._defended.get(key, -self.defend_interval) < self.defend_interval:
            return
        self._defended[key] = now
        ip = _text(key)
        log.warning("%s: host %s claimed it while this node announces it: announcing it again", ip, mac_text(mac))
        self._on_foreign_claim("arp" if len(key) == 4 else "ndp")
        self._burst(key, self.garp_count * self.garp_interval + 0.1, defending=True)

    # -- receive path

    def _frame(self, port: _Port, frame: bytes) -> None:
        if frame[12:14] == b"\x08\x06":
            arp = parse_arp(frame)
            if arp is None:
                return
            if self._probing and arp.sha != port.link.mac:
                self.loop.call_soon_threadsafe(self._conflict, arp.spa, arp.sha)
            # a claim: its gratuitous ARP (sender = target) or a reply naming itself for our address
            if arp.sha != port.link.mac and (arp.op == 2 or arp.spa == arp.tpa) and self._answers(arp.spa, port):
                self.loop.call_soon_threadsafe(self._claimed_elsewhere, arp.spa, arp.sha)
            if arp.op != 1:
                return
            self._on_request("arp")
            if self._answers(arp.tpa, port) and arp.spa != arp.tpa:  # not someone's own gratuitous ARP
                port.send(arp_reply(arp, port.link.mac))
                self._on_reply("arp")
            return
        ndp = parse_ndp(frame)
        if ndp is None:
            return
        if ndp.type == ND_NA:
            if self._probing and ndp.eth_src != port.link.mac:
                self.loop.call_soon_threadsafe(self._conflict, ndp.target, ndp.eth_src)
            if ndp.eth_src != port.link.mac and self._answers(ndp.target, port):
                self.loop.call_soon_threadsafe(self._claimed_elsewhere, ndp.target, ndp.eth_src)
            return
        self._on_request("ndp")
        if self._answers(ndp.target, port):
            port.send(na_reply(ndp, port.link.mac))
            self._on_reply("ndp")

    def _answers(self, ip: bytes, port: _Port) -> bool:
        ifaces = self.owned.get(ip)
        return ifaces is not None and (not ifaces or port.link.name in ifaces)

    def _conflict(self, ip: bytes, mac: bytes) -> None:
        fut = self._probing.get(ip)
        if fut is not None and not fut.done():
            fut.set_result(mac_text(mac))

    def close(self) -> None:
        self.set_owned({})
        for task in self._bursts:
            task.cancel()
        for port in self.ports.values():
            port.close()
        self.ports.clear()


def _text(key: bytes) -> str:
    return str(ipaddress.ip_address(key))
