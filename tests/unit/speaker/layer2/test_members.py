"""speaker/layer2/members.py: heartbeats between owners and their successors, liveness, leaving,
replays. The wire is observed through a transport that records what is sent; one test runs real
sockets on loopback."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from onprem_lb.speaker.layer2 import members

ADDR = {"n1": ("127.0.0.1", 1), "n2": ("127.0.0.1", 2), "n3": ("127.0.0.1", 3)}
WALL = 1_800_000_000.0


class Wire:
    """A datagram transport that keeps what is sent: (decoded message, destination node)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret
        self.sent: list[tuple[dict[str, object], str]] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        msg = members.decode(data, self.secret)
        assert msg is not None
        node = next(n for n, a in ADDR.items() if a == addr)
        self.sent.append((msg, node))

    def take(self) -> list[tuple[dict[str, object], str]]:
        out, self.sent = self.sent, []
        return out


def make(me: str = "n1", **kwargs: Any) -> tuple[members.Members, Wire, list[int]]:
    changes: list[int] = []
    m = members.Members(me, on_change=lambda: changes.append(1), clock=lambda: WALL, **kwargs)
    wire = Wire(kwargs.get("secret"))
    m.connection_made(wire)  # type: ignore[arg-type]  # only sendto is used
    m.set_addresses(ADDR)
    wire.take()
    return m, wire, changes


def beat(m: members.Members, node: str, inc: int, seq: int, *, t: float = WALL, **extra: object) -> None:
    msg = {"v": 2, "node": node, "inc": inc, "seq": seq, "t": t, **extra}
    m.datagram_received(members.encode(msg, m.secret), ("127.0.0.1", 9))


def test_heartbeat_codec_signed_and_plain() -> None:
    msg = {"node": "n1", "inc": 1, "seq": 2, "owned": ["192.0.2.240"]}
    assert members.decode(members.encode(msg, None), None) == msg
    signed = members.encode(msg, b"s3cret")
    assert members.decode(signed, b"s3cret") == msg
    assert members.decode(signed, b"other") is None
    assert members.decode(signed[:-1] + bytes([signed[-1] ^ 1]), b"s3cret") is None
    assert members.decode(members.encode(msg, None), b"s3cret") is None  # unsigned when a secret is set
    assert members.decode(b"not json", None) is None


def test_claims_at_once_are_last_claim_and_claimed_by_for_every_address() -> None:
    m, _wire, _changes = make(interval=0.1, dead_after=0.4)
    a, b, c = "192.0.2.240", "192.0.2.241", "2001:db8::1"
    beat(m, "n2", 1, 1, owned=[a, b])
    beat(m, "n3", 1, 1, owned=[b, c])
    beat(m, "n9", 1, 1, owned=[c])  # no Lease names it: heard, never live
    m.peers["n2"].last_seen -= 1.0  # n2 heard a second ago: its claims are old
    last, claimed = m.claims()
    for ip in (a, b, c, "192.0.2.99"):
        assert last.get(ip) is m.last_claim(ip), ip
        assert claimed.get(ip, frozenset()) == set(m.claimed_by(ip)), ip
    assert last[b].node == "n3" and claimed == {b: {"n3"}, c: {"n3"}}


def test_order_incarnation_flags_and_addresses() -> None:
    m, _wire, changes = make()
    assert m.alive("n2")  # never heard: its Lease decides, so it counts as live
    beat(m, "n2", 10, 1, owned=["192.0.2.240"])
    assert m.alive("n2") and m.claimed_by("192.0.2.240") == ["n2"]
    beat(m, "n2", 10, 1, owned=[])  # a replayed/reordered datagram changes nothing
    assert m.claimed_by("192.0.2.240") == ["n2"]
    beat(m, "n2", 9, 50, owned=[])  # an older incarnation neither
    assert m.claimed_by("192.0.2.240") == ["n2"]
    beat(m, "n2", 10, 2, leaving=True, owned=["192.0.2.240"])
    assert not m.alive("n2") and m.claimed_by("192.0.2.240") == []
    beat(m, "n2", 10, 3)  # leaving is for the rest of that life
    assert not m.alive("n2")
    beat(m, "n2", 11, 1)  # restarted: alive again
    assert m.alive("n2")
    beat(m, "n2", 11, 2, fenced=True)  # cannot renew its Lease: not a candidate, at once
    assert not m.alive("n2")
    beat(m, "n2", 11, 3)
    assert m.alive("n2")
    assert m.last_claim("192.0.2.240") is None  # its new life claims nothing yet
    beat(m, "n9", 1, 1)
    assert not m.alive("n9")  # no Lease names it: heard, but not a member
    assert changes
    m.set_addresses({"n3": ADDR["n3"]})  # n2's Lease ran out: forgotten
    assert not m.alive("n2") and "n2" not in m.peers
    with pytest.raises(ValueError, match="interval"):
        members.Members("n1", interval=1.0, dead_after=0.5)


def test_a_fenced_flag_lapses_when_no_longer_heard() -> None:
    m, _wire, _changes = make()
    beat(m, "n2", 1, 1, fenced=True)
    assert not m.alive("n2")
    m.check(time.monotonic() + m.dead_after)  # not watched: an old "fenced" is the Lease's business
    assert m.alive("n2")


@pytest.mark.parametrize("offset", [-10.5, 10.5, 1e9, -1e9])
def test_send_time_outside_the_window_is_dropped(offset: float) -> None:
    m, _wire, _changes = make()
    beat(m, "n2", 1, 1, t=WALL + offset, leaving=True)
    assert m.alive("n2") and "n2" not in m.peers
    beat(m, "n2", 1, 1, t=WALL + (9.5 if offset > 0 else -9.5), leaving=True)  # within 10 s
    assert not m.alive("n2")


@pytest.mark.parametrize("t", [None, "now", [1]])
def test_beats_without_a_usable_send_time_are_dropped(t: object) -> None:
    m, _wire, _changes = make()
    msg = {"v": 2, "node": "n2", "inc": 1, "seq": 1, "t": t, "leaving": True}
    m.datagram_received(members.encode(msg, None), ("127.0.0.1", 9))
    assert m.alive("n2")


def test_watching_asks_at_once_then_every_refresh() -> None:
    m, wire, _changes = make(refresh=1.0)
    m.set_watch({"n2", "n9", "n1"})  # n9 has no Lease, n1 is us: only n2
    assert [(msg["want"], to) for msg, to in wire.take()] == [(True, "n2")]
    now = time.monotonic()
    m.beat_now()
    assert wire.take() == []  # nobody subscribed to us, and n2 was asked just now
    plain, asking = m.targets(now + 1.01)
    assert (plain, asking) == (set(), {"n2"})
    m.set_watch(set())
    assert m.targets(now + 5) == (set(), set())


def test_a_subscriber_gets_beats_at_once_until_its_subscription_lapses() -> None:
    m, wire, _changes = make(refresh=1.0)
    beat(m, "n3", 1, 1, want=True)
    (msg, to), *rest = wire.take()
    assert to == "n3" and not rest and "want" not in msg and msg["node"] == "n1" and msg["t"] == WALL
    now = time.monotonic()
    assert m.targets(now + 2.9) == ({"n3"}, set())
    assert m.targets(now + 3.1) == (set(), set())


def test_a_peer_that_claimed_what_we_own_hears_our_claim() -> None:
    m, _wire, _changes = make()
    beat(m, "n2", 1, 1, owned=["192.0.2.240"])
    now = time.monotonic()
    assert m.targets(now) == (set(), set())
    m.say(owned={"192.0.2.240"})  # we took it over: the previous owner must learn, to go quiet
    assert m.targets(now) == ({"n2"}, set())
    assert m.targets(now + m.dead_after) == (set(), set())  # not heard lately: no more


def test_a_watched_node_is_dead_only_after_being_heard_then_silent() -> None:
    m, _wire, changes = make(interval=0.1, dead_after=0.4)
    m.set_watch({"n2", "n3"})
    beat(m, "n2", 1, 1)
    now = time.monotonic()
    assert m.check(now) <= now + 0.4
    changes.clear()
    m.check(now + 0.45)
    assert not m.alive("n2") and changes  # heard, then silent: dead
    assert m.alive("n3")  # never heard since the watch began: its Lease decides
    m.set_watch(set())
    assert "n2" in m.watching  # a node seen dead stays watched while its Lease lasts
    beat(m, "n2", 1, 2)
    assert m.alive("n2")  # only silent: heard again
    m.set_watch(set())
    assert m.watching == {}


def test_a_peer_is_unconfirmed_until_watched_for_dead_after_or_heard_since() -> None:
    m, _wire, changes = make(interval=0.1, dead_after=0.4)
    beat(m, "n2", 1, 1)  # heard before any watch
    assert m.unconfirmed() == {"n2", "n3"}  # neither watched yet
    m.set_watch({"n2", "n3"})
    now = time.monotonic()
    assert m.check(now) <= m.watching["n3"] + 0.4  # the check comes back when their time is up
    assert m.unconfirmed() == {"n2", "n3"}  # n2's beat came before the watch began
    beat(m, "n2", 1, 2)
    m.check(time.monotonic())
    assert m.unconfirmed() == {"n3"}  # heard since the watch began
    m.counting = True
    changes.clear()
    m.check(m.watching["n3"] + 0.41)
    assert m.unconfirmed() == frozenset() and changes  # n3 had its time: told while counting
    assert m.alive("n3")  # not dead: never heard, so its Lease (or, without the API, silence) decides


def test_unwatched_silence_is_not_death() -> None:
    m, _wire, _changes = make()
    beat(m, "n2", 1, 1)
    m.check(time.monotonic() + 60)
    assert m.alive("n2")


def test_starting_is_told_to_every_speaker() -> None:
    m, wire, _changes = make()
    m.hello()
    assert sorted(to for _msg, to in wire.take()) == ["n2", "n3"]


def test_leaving_is_told_to_every_speaker() -> None:
    m, wire, _changes = make(interval=0.02, dead_after=0.1)
    asyncio.run(m.leave(repeats=2))
    sent = wire.take()
    assert sorted(to for _msg, to in sent) == ["n2", "n2", "n3", "n3"]
    assert all(msg["leaving"] is True for msg, _to in sent)


def test_real_sockets_only_the_watcher_sees_the_death() -> None:
    """Three speakers on loopback: n2 watches n1, n3 watches nobody. n1 stops: n2 calls it dead
    within dead_after (plus scheduling), n3 still counts it live (its Lease would decide)."""

    async def scenario() -> tuple[float, bool, bool]:
        loop = asyncio.get_running_loop()
        nodes = ["n1", "n2", "n3"]
        ms = {n: members.Members(n, interval=0.05, dead_after=0.2, secret=b"k") for n in nodes}
        transports: dict[str, asyncio.DatagramTransport] = {}
        for n in nodes:
            transports[n], _ = await loop.create_datagram_endpoint(
                functools.partial(ms.__getitem__, n), local_addr=("127.0.0.1", 0)
            )
        addresses = {n: transports[n].get_extra_info("sockname")[:2] for n in nodes}
        for m in ms.values():
            m.set_addresses(addresses)
        ms["n2"].set_watch({"n1"})
        tasks = {n: asyncio.create_task(m.run()) for n, m in ms.items()}
        try:
            for _ in range(100):  # bounded: the first answer comes within a tick
                await asyncio.sleep(0.01)
                if ms["n2"].peers.get("n1") and "n2" in ms["n1"].subscribers:
                    break
            assert "n3" not in ms["n1"].subscribers and "n1" not in ms["n3"].peers
            tasks["n1"].cancel()
            transports["n1"].close()
            stopped = time.monotonic()
            while ms["n2"].alive("n1") and time.monotonic() - stopped < 3:
                await asyncio.sleep(0.005)
            return time.monotonic() - stopped, ms["n2"].alive("n1"), ms["n3"].alive("n1")
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            for transport in transports.values():
                transport.close()

    took, n2_sees_n1, n3_sees_n1 = asyncio.run(scenario())
    assert not n2_sees_n1 and 0.1 < took < 1.5  # dead_after minus at most one interval, plus scheduling
    assert n3_sees_n1


@settings(max_examples=200)
@given(since=st.floats(min_value=0, max_value=1e7, allow_nan=False), dead_after=st.sampled_from([0.2, 0.4, 1.5]))
@example(since=1000.5, dead_after=0.4)  # (1000.5 + 0.4) - 1000.5 < 0.4 in floats
def test_a_watched_silent_peer_is_unconfirmed_no_longer_at_the_deadline_check_wakes_at(
    since: float, dead_after: float
) -> None:
    m, _, _ = make(dead_after=dead_after)
    m.watching["n3"] = since
    assert "n3" in m._compute_unconfirmed(since)
    assert "n3" not in m._compute_unconfirmed(since + dead_after)
