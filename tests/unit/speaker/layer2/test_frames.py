"""The speaker's frame builders/parsers and heartbeat codec, checked field by field."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from onprem_lb.speaker.layer2 import frames as l2

MAC = bytes.fromhex("0200000000aa")
ASKER = bytes.fromhex("0200000000bb")
VIP4 = ipaddress.IPv4Address("192.0.2.240").packed
VIP6 = ipaddress.IPv6Address("2001:db8:a::240").packed
CLIENT6 = ipaddress.IPv6Address("2001:db8:a::100").packed


def ones_complement_ok(frame: bytes) -> bool:
    """Independent ICMPv6 checksum check: pseudo-header + message sums to 0xffff."""
    src, dst, payload = frame[22:38], frame[38:54], frame[54:]
    data = src + dst + struct.pack("!I3xB", len(payload), 58) + payload
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_arp_request_reply_roundtrip() -> None:
    req = l2.build_arp(1, ASKER, ipaddress.IPv4Address("192.0.2.100").packed, bytes(6), VIP4, dst_mac=l2.BROADCAST)
    parsed = l2.parse_arp(req)
    assert parsed is not None and parsed.op == 1 and parsed.tpa == VIP4 and parsed.sha == ASKER
    reply = l2.parse_arp(l2.arp_reply(parsed, MAC))
    assert reply is not None
    assert (reply.op, reply.sha, reply.spa, reply.tha, reply.tpa) == (2, MAC, VIP4, ASKER, parsed.spa)
    assert l2.arp_reply(parsed, MAC)[:6] == ASKER  # unicast back to the asker
    assert len(req) == 42


def test_gratuitous_and_probe_forms() -> None:
    request, reply = (l2.parse_arp(f) for f in l2.gratuitous_arp(MAC, VIP4))
    assert request is not None and reply is not None
    assert (request.op, request.spa, request.tpa) == (1, VIP4, VIP4)
    assert (reply.op, reply.spa, reply.tpa, reply.tha) == (2, VIP4, VIP4, l2.BROADCAST)
    probe = l2.parse_arp(l2.arp_probe(MAC, VIP4))
    assert probe is not None and probe.spa == bytes(4) and probe.tpa == VIP4


@pytest.mark.parametrize("frame", [b"", b"\x00" * 41, b"\xff" * 12 + b"\x08\x00" + b"\x00" * 28])
def test_parse_arp_rejects_garbage(frame: bytes) -> None:
    assert l2.parse_arp(frame) is None


def test_solicited_node_group_and_mac() -> None:
    group = l2.solicited_node(VIP6)
    assert ipaddress.IPv6Address(group) == ipaddress.IPv6Address("ff02::1:ff00:240")
    assert l2.multicast_mac(group) == bytes.fromhex("3333ff000240")


def test_neighbour_advert_answers_a_solicitation() -> None:
    ns_frame = l2.neighbour_advert(ASKER, VIP6, CLIENT6, MAC, solicited=True)  # any valid NDP frame to parse
    assert ones_complement_ok(ns_frame)
    solicitation = l2.Ndp(l2.ND_NS, ASKER, CLIENT6, l2.solicited_node(VIP6), VIP6, 0)
    answer = l2.na_reply(solicitation, MAC)
    parsed = l2.parse_ndp(answer)
    assert parsed is not None and parsed.type == l2.ND_NA and parsed.target == VIP6
    assert parsed.src == VIP6 and parsed.dst == CLIENT6 and answer[:6] == ASKER
    assert parsed.flags & 0x40 and parsed.flags & 0x20 and not parsed.flags & 0x80  # S, O set; R clear
    assert answer[78:80] == b"\x02\x01" and answer[80:86] == MAC  # target link-layer address option
    assert ones_complement_ok(answer)


def test_duplicate_address_detection_is_defended_to_all_nodes() -> None:
    dad = l2.parse_ndp(l2.dad_probe(ASKER, VIP6))
    assert dad is not None and dad.src == bytes(16) and dad.dst == l2.solicited_node(VIP6)
    answer = l2.parse_ndp(l2.na_reply(dad, MAC))
    assert answer is not None and answer.dst == l2.ALL_NODES and not answer.flags & 0x40  # not "solicited"
    assert ones_complement_ok(l2.dad_probe(ASKER, VIP6))


def test_unsolicited_na_and_hop_limit_rule() -> None:
    frame = l2.unsolicited_na(MAC, VIP6)
    parsed = l2.parse_ndp(frame)
    assert parsed is not None and parsed.dst == l2.ALL_NODES and parsed.flags == 0x20
    forwarded = frame[:21] + b"\x40" + frame[22:]  # hop limit 64: came through a router, RFC 4861 says drop
    assert l2.parse_ndp(forwarded) is None
