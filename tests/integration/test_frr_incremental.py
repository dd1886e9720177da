"""FRR takes our route changes as vtysh commands and ends where frr-reload.py would: after any
sequence of changes, `frr-reload.py --test` finds nothing to add or delete. A real FRR (zebra,
bgpd, bfdd from the distribution) runs in a network namespace of its own, as pathspace
`olbfrr-it`."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onprem_lb.config import BFDProfile, BGPPeer
from onprem_lb.speaker.bgp.announce import Attributes
from onprem_lb.speaker.bgp.driver import RELOAD, Frr
from onprem_lb.speaker.bgp.frr import render

NAME = "olbfrr-it"  # netns and FRR pathspace; not olb-*, which lab/bin/netlab owns
FRR_BIN = Path("/usr/lib/frr")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (FRR_BIN / "bgpd").exists() or not Path(RELOAD).exists(),
    reason="needs root and FRR with frr-pythontools (make host-deps installs them)",
)
PEERS = [
    BGPPeer("r1", my_asn=64512, peer_asn=64500, peer_address="203.0.113.1", bfd_profile="fast", hold_time=9),
    BGPPeer("r6", my_asn=64512, peer_asn=64512, peer_address="2001:db8:b::1"),
]
PROFILES = {"fast": BFDProfile("fast"), "slow": BFDProfile("slow", receive_interval=1000, detect_multiplier=5)}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def frr() -> Iterator[Frr]:
    etc, var = Path("/etc/frr") / NAME, Path("/var/run/frr") / NAME
    run("ip", "netns", "add", NAME)
    try:
        run("ip", "-n", NAME, "link", "set", "lo", "up")
        for directory, mode in ((etc, "750"), (var, "755")):
            run("install", "-d", "-o", "frr", "-g", "frr", "-m", mode, str(directory))
        (etc / "vtysh.conf").write_text("service integrated-vtysh-config\n")
        (etc / "frr.conf").write_text("frr defaults traditional\n!\n")
        for daemon in ("zebra", "bgpd", "bfdd"):
            started = run("ip", "netns", "exec", NAME, str(FRR_BIN / daemon), "-d", "-N", NAME, "-A", "127.0.0.1")
            assert started.returncode == 0, started.stderr
        yield Frr(pathspace=NAME)
    finally:
        for daemon in ("zebra", "bgpd", "bfdd"):
            pid = var / f"{daemon}.pid"
            if pid.exists():
                run("kill", "-9", pid.read_text().strip())
        run("ip", "netns", "delete", NAME)
        shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(var, ignore_errors=True)


def hostname() -> str:
    return run("hostname").stdout.strip()


def leftover(frr: Frr) -> str:
    """What frr-reload.py would still change: the lines under its two headings."""
    return "\n".join(asyncio.run(frr.pending(frr.path)))


PREFIXES = st.sampled_from(["192.0.2.1/32", "192.0.2.2/32", "192.0.2.0/26", "198.18.0.7/32",
                            "2001:db8:a::1/128", "2001:db8:a::/120"])  # fmt: skip
ATTRS = st.builds(
    Attributes,
    st.lists(st.sampled_from(["65000:1", "65000:2", "large:1:2:3"]), unique=True).map(lambda c: tuple(sorted(c))),
    st.one_of(st.none(), st.sampled_from([100, 250])),
)
ROUTES = st.fixed_dictionaries({"r1": st.dictionaries(PREFIXES, ATTRS, max_size=4),
                                "r6": st.dictionaries(PREFIXES, ATTRS, max_size=3)})  # fmt: skip


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(ROUTES, min_size=2, max_size=4))
def test_route_changes_as_commands_end_where_a_reload_would(frr: Frr, steps: list[dict]) -> None:  # type: ignore[type-arg]
    host = hostname()

    async def apply_all() -> list[str]:
        hows: list[str] = []
        text = render(hostname=host, peers=PEERS, routes={}, passwords={}, bfd_profiles=PROFILES).text
        await frr.apply(text)  # a known start: a full reload
        for routes in steps:
            new = render(hostname=host, peers=PEERS, routes=routes, passwords={}, bfd_profiles=PROFILES).text
            hows.append(await frr.apply(new, text))
            text = new
        return hows

    hows = asyncio.run(apply_all())
    assert set(hows) == {"incremental"}
    assert leftover(frr) == ""


def peer_variants(name: str, address: str, asn: int) -> st.SearchStrategy[BGPPeer]:
    """One neighbour in every shape a BGPPeer the config model accepts can give it (keepalive
    shorter than a hold time; addresses and ASN kept: a different neighbour is a different
    session, not a change of this one)."""
    return st.builds(
        BGPPeer,
        name=st.just(name),
        my_asn=st.just(64512),
        peer_asn=st.just(asn),
        peer_address=st.just(address),
        peer_port=st.sampled_from([179, 1179]),
        hold_time=st.sampled_from([None, 0, 9, 30, 90]),
        keepalive_time=st.sampled_from([None, 0, 3, 10, 20, 60]),
        connect_time=st.sampled_from([None, 5]),
        ebgp_multihop=st.booleans(),
        has_password=st.booleans(),
        bfd_profile=st.sampled_from([None, "fast", "slow"]),
        enable_graceful_restart=st.booleans(),
    ).filter(lambda p: not (p.hold_time and p.keepalive_time is not None and p.keepalive_time >= p.hold_time))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(peer_variants("r1", "203.0.113.1", 64500), peer_variants("r6", "2001:db8:b::1", 64512)),
                      min_size=2, max_size=4))  # fmt: skip
def test_peer_changes_end_where_the_rendering_says(frr: Frr, steps: list[tuple[BGPPeer, BGPPeer]]) -> None:
    """A BGPPeer edited in any way (BFD profile on, off or another, password on or off, timers,
    graceful restart, multihop, ...) is in FRR as rendered once applied: nothing is left behind
    for the next reload to find, and no line FRR shows is missing from the rendering. (Found
    here: FRR shows "ebgp-multihop 255", drops it on iBGP, and caps the keepalive at a third of
    the hold time; frr-reload.py fails on a repeated "neighbor X graceful-restart" and turns BFD
    back on when it removes a profile.)"""
    host, routes = hostname(), {"r1": {"192.0.2.1/32": Attributes((), None)}}

    def text(peers: tuple[BGPPeer, BGPPeer]) -> str:
        passwords = {p.name: f"pw-{p.name}" for p in peers if p.has_password}
        return render(hostname=host, peers=peers, routes=routes, passwords=passwords, bfd_profiles=PROFILES).text

    async def apply_all() -> None:
        previous = None
        await frr.apply(render(hostname=host, peers=(), routes={}, passwords={}, bfd_profiles={}).text)  # none
        for peers in steps:
            new = text(peers)
            await frr.apply(new, previous)
            previous = new

    asyncio.run(apply_all())
    assert leftover(frr) == "", steps[-1]
