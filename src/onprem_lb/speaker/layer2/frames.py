"""ARP and IPv6 neighbour discovery frames, built and parsed by small pure functions (tested
without sockets): what the announcer (announcer.py) sends and reads on its raw sockets.

Requests and replies (RFC 826), gratuitous ARP in both forms, RFC 5227 probes; neighbour
solicitations and advertisements (RFC 4861), unsolicited advertisements, duplicate address
detection probes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ND_NS, ND_NA = 135, 136
ALL_NODES = ipaddress.IPv6Address("ff02::1").packed


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@dataclass(frozen=True)
class Arp:
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes
    eth_src: bytes


def parse_arp(frame: bytes) -> Arp | None:
    """An Ethernet/IPv4 ARP frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    return Arp(op, frame[22:28], frame[28:32], frame[32:38], frame[38:42], frame[6:12])


def build_arp(op: int, src_mac: bytes, spa: bytes, tha: bytes, tpa: bytes, *, dst_mac: bytes) -> bytes:
    eth = dst_mac + src_mac + b"\x08\x06"
    return eth + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + src_mac + spa + tha + tpa


def arp_reply(req: Arp, mac: bytes) -> bytes:
    """Our answer to a request for ``req.tpa``, sent straight back to the asker."""
    return build_arp(2, mac, req.tpa, req.sha, req.spa, dst_mac=req.sha)


def gratuitous_arp(mac: bytes, ip: bytes) -> list[bytes]:
    """Both forms (request and reply, sender = target = ip), broadcast: some hosts heed only one."""
    return [
        build_arp(1, mac, ip, ZERO_MAC, ip, dst_mac=BROADCAST),
        build_arp(2, mac, ip, BROADCAST, ip, dst_mac=BROADCAST),
    ]


def arp_probe(mac: bytes, ip: bytes) -> bytes:
    """RFC 5227 probe: sender address 0.0.0.0, target the address we want."""
    return build_arp(1, mac, b"\x00" * 4, ZERO_MAC, ip, dst_mac=BROADCAST)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv6_frame(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, icmp: bytes) -> bytes:
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    csum = _checksum(pseudo + icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    header = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + src + dst
    return dst_mac + src_mac + b"\x86\xdd" + header + icmp


def multicast_mac(group: bytes) -> bytes:
    return b"\x33\x33" + group[12:16]


def solicited_node(ip: bytes) -> bytes:
    return ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + ip[13:16]


@dataclass(frozen=True)
class Ndp:
    type: int
    eth_src: bytes
    src: bytes
    dst: bytes
    target: bytes
    flags: int  # NA: R S O bits in the top byte


def parse_ndp(frame: bytes) -> Ndp | None:
    """A neighbour solicitation or advertisement (hop limit 255, code 0), or None."""
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[21] != 255:
        return None
    icmp_type, code = frame[54], frame[55]
    if icmp_type not in (ND_NS, ND_NA) or code != 0:
        return None
    return Ndp(icmp_type, frame[6:12], frame[22:38], frame[38:54], frame[62:78], frame[58])


def neighbour_advert(
    mac: bytes, target: bytes, dst: bytes, dst_mac: bytes, *, solicited: bool, override: bool = True
) -> bytes:
    flags = (0x40 if solicited else 0) | (0x20 if override else 0)
    icmp = struct.pack("!BBHB3x", ND_NA, 0, 0, flags) + target + struct.pack("!BB", 2, 1) + mac
    return _ipv6_frame(mac, dst_mac, target, dst, icmp)


def na_reply(ns: Ndp, mac: bytes) -> bytes:
    """Answer to a solicitation: unicast to the asker, or to all-nodes when it asked from ::."""
    if ns.src == bytes(16):  # duplicate address detection by someone else: defend, to all nodes
        return neighbour_advert(mac, ns.target, ALL_NODES, multicast_mac(ALL_NODES), solicited=False)
    return neighbour_advert(mac, ns.target, ns.src, ns.eth_src, solicited=True)


def unsolicited_na(mac: bytes, target: bytes) -> bytes:
    return neighbour_advert(mac, target, ALL_NODES, multicast_mac(ALL_NODES), solicited=False)


def dad_probe(mac: bytes, target: bytes) -> bytes:
    """Duplicate address detection: NS from :: to the target's solicited-node group, no option."""
    group = solicited_node(target)
    icmp = struct.pack("!BBH4x", ND_NS, 0, 0) + target
    return _ipv6_frame(mac, multicast_mac(group), bytes(16), group, icmp)


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed
