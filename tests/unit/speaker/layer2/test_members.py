"""speaker/layer2/members.py: heartbeats, liveness, leaving."""

from __future__ import annotations

import time

import pytest

from onprem_lb.speaker.layer2 import members


def test_heartbeat_codec_signed_and_plain() -> None:
    msg = {"node": "n1", "inc": 1, "seq": 2, "owned": ["192.0.2.240"]}
    assert members.decode(members.encode(msg, None), None) == msg
    signed = members.encode(msg, b"s3cret")
    assert members.decode(signed, b"s3cret") == msg
    assert members.decode(signed, b"other") is None
    assert members.decode(signed[:-1] + bytes([signed[-1] ^ 1]), b"s3cret") is None
    assert members.decode(members.encode(msg, None), b"s3cret") is None  # unsigned when a secret is set
    assert members.decode(b"not json", None) is None


def test_membership_liveness_order_and_leaving() -> None:
    changes: list[int] = []
    m = members.Members("n1", interval=0.05, dead_after=0.2, on_change=lambda: changes.append(1))
    m.set_addresses({"n2": ("192.0.2.12", 7946)})

    def beat(inc: int, seq: int, **extra: object) -> None:
        m.datagram_received(members.encode({"node": "n2", "inc": inc, "seq": seq, **extra}, None), ("x", 1))

    beat(10, 1, owned=["192.0.2.240"])
    assert m.alive("n2") and m.claimed_by("192.0.2.240") == ["n2"]
    beat(10, 1, owned=[])  # a replayed/reordered datagram changes nothing
    assert m.claimed_by("192.0.2.240") == ["n2"]
    beat(9, 50, owned=[])  # an older incarnation neither
    assert m.claimed_by("192.0.2.240") == ["n2"]
    beat(10, 2, leaving=True, owned=["192.0.2.240"])
    assert not m.alive("n2") and m.claimed_by("192.0.2.240") == []
    beat(11, 1)  # restarted: alive again
    assert m.alive("n2")
    beat(11, 2, fenced=True)  # cannot renew its Lease: not a candidate, at once
    assert not m.alive("n2")
    beat(11, 3)
    assert m.alive("n2")
    assert m.last_claim("192.0.2.240") is None  # its new life claims nothing yet
    time.sleep(0.25)
    assert not m.alive("n2")  # silent for longer than dead_after
    m.datagram_received(members.encode({"node": "n9", "inc": 1, "seq": 1}, None), ("x", 1))
    assert not m.alive("n9")  # no Lease names it: heard, but not a member
    assert changes
    with pytest.raises(ValueError, match="interval"):
        members.Members("n1", interval=1.0, dead_after=0.5)
