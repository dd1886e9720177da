"""speaker/bgp/frr.py: FRR's configuration as text. Every rendering is checked by FRR's own
parser (``vtysh --dryrun``), and Service changes are shown to leave every session line alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onprem_lb.config import BFDProfile, BGPPeer
from onprem_lb.speaker.bgp.announce import Attributes
from onprem_lb.speaker.bgp.frr import render, route_map_name

VTYSH = shutil.which("vtysh") or "/usr/bin/vtysh"
FAST = BFDProfile("fast", receive_interval=300, transmit_interval=300, detect_multiplier=3)
IBGP = BGPPeer("r1", my_asn=64512, peer_asn=64512, peer_address="198.51.100.1", router_id="198.51.100.11",
               hold_time=9, keepalive_time=3, connect_time=5, bfd_profile="fast",
               enable_graceful_restart=True)  # fmt: skip
EBGP6 = BGPPeer("r1-v6", my_asn=64512, peer_asn=64500, peer_address="2001:db8:1::1", has_password=True,
                ebgp_multihop=True, source_address="2001:db8:1::11", peer_port=1179)  # fmt: skip
VRF = BGPPeer("r2", my_asn=64513, dynamic_asn="external", peer_address="198.51.100.2", vrf="red")
PEERS = [IBGP, EBGP6, VRF]


def frr_accepts(text: str, tmp_path: Path) -> None:
    conf = tmp_path / "frr.conf"
    conf.write_text(text)
    result = subprocess.run(
        [VTYSH, "--dryrun", "-f", str(conf)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + text


def lines_of(text: str, start: str) -> list[str]:
    """The lines of the block opening with ``start`` (up to its ``exit``)."""
    lines = text.splitlines()
    begin = lines.index(start)
    return lines[begin : lines.index("exit", begin) + 1]


def test_a_full_configuration_is_valid_frr(tmp_path: Path) -> None:
    routes = {
        "r1": {"192.0.2.10/32": Attributes(("65000:1", "large:1:2:3"), 200), "192.0.2.0/26": Attributes()},
        "r1-v6": {"2001:db8:a::10/128": Attributes(("65000:2",), 50)},
        "r2": {"192.0.2.10/32": Attributes()},
    }
    out = render(hostname="n1", peers=PEERS, routes=routes, passwords={"r1-v6": "s3cret!"}, bfd_profiles={"fast": FAST})
    assert out.skipped == {}
    frr_accepts(out.text, tmp_path)
    router = lines_of(out.text, "router bgp 64512")
    assert " neighbor 198.51.100.1 remote-as 64512" in router
    assert " neighbor 198.51.100.1 timers 3 9" in router and " neighbor 198.51.100.1 timers connect 5" in router
    assert " neighbor 198.51.100.1 bfd profile fast" in router and " neighbor 198.51.100.1 graceful-restart" in router
    assert " bgp graceful-restart" not in router  # per neighbour only: the others stay helpers
    assert " neighbor 2001:db8:1::1 port 1179" in router and " neighbor 2001:db8:1::1 password s3cret!" in router
    assert "  network 192.0.2.10/32" in router and "  network 2001:db8:a::10/128" in router
    assert lines_of(out.text, "router bgp 64513 vrf red")[4] == " neighbor 198.51.100.2 remote-as external"
    r1 = [line for line in out.text.splitlines() if "set " in line]
    assert " set local-preference 200" in r1  # internal peer: localPref sent
    assert " set local-preference 50" not in r1  # external peer: meaningless, left out
    assert " set community 65000:1 additive" in r1 and " set large-community 1:2:3 additive" in r1
    assert "  minimum-ttl" not in out.text and " profile fast" in out.text


@pytest.mark.parametrize(
    ("peer", "line"),
    [
        # the keepalive bgpd runs: at most a third of the hold time, none without one
        ({"hold_time": 30, "keepalive_time": 20}, " neighbor 198.51.100.9 timers 10 30"),
        ({"hold_time": 30, "keepalive_time": 5}, " neighbor 198.51.100.9 timers 5 30"),
        ({"keepalive_time": 60}, " neighbor 198.51.100.9 timers 30 90"),
        ({"hold_time": 0}, " neighbor 198.51.100.9 timers 0 0"),
        ({"hold_time": 0, "keepalive_time": 3}, " neighbor 198.51.100.9 timers 0 0"),
        ({"ebgp_multihop": True}, " neighbor 198.51.100.9 ebgp-multihop 255"),
        ({"ebgp_multihop": True, "peer_asn": 64512}, None),  # iBGP: FRR takes no ebgp-multihop
        ({"ebgp_multihop": True, "peer_asn": None, "dynamic_asn": "internal"}, None),
    ],
)
def test_session_lines_are_written_as_frr_shows_them(peer: dict, line: str | None) -> None:  # type: ignore[type-arg]
    """What bgpd would show differently from what we wrote, a reload would send again and again."""
    shape = {"my_asn": 64512, "peer_asn": 64500, "peer_address": "198.51.100.9", **peer}
    text = render(hostname="n1", peers=[BGPPeer("p", **shape)], routes={}, passwords={}, bfd_profiles={}).text
    got = [x for x in lines_of(text, "router bgp 64512") if " timers " in x or "multihop" in x]
    assert got == ([line] if line else [])


@pytest.mark.parametrize(
    ("peer", "passwords", "profiles", "why"),
    [
        (EBGP6, {}, {}, "password unknown"),
        (EBGP6, {"r1-v6": "two words"}, {}, "may not hold spaces"),
        (EBGP6, {"r1-v6": "x" * 81}, {}, "1 to 80 characters"),
        (IBGP, {}, {}, "BFD profile 'fast' does not exist"),
    ],
)
def test_a_peer_that_cannot_be_written_is_left_out_with_the_reason(
    peer: BGPPeer, passwords: dict[str, str], profiles: dict[str, BFDProfile], why: str, tmp_path: Path
) -> None:
    out = render(hostname="n1", peers=[peer, VRF], routes={}, passwords=passwords, bfd_profiles=profiles)
    assert why in out.skipped[peer.name] and list(out.skipped) == [peer.name]
    assert str(peer.peer_address) not in out.text and "198.51.100.2" in out.text
    frr_accepts(out.text, tmp_path)


def test_a_peer_with_no_routes_gets_only_the_final_deny() -> None:
    out = render(hostname="n1", peers=[VRF], routes={}, passwords={}, bfd_profiles={})
    name = route_map_name("r2")
    assert [line for line in out.text.splitlines() if line.startswith("route-map")] == [f"route-map {name} deny 65535"]


PREFIXES = st.sampled_from(["192.0.2.1/32", "192.0.2.2/32", "192.0.2.0/24", "2001:db8:a::1/128", "2001:db8::/64"])
ATTRS = st.builds(
    Attributes,
    st.lists(st.sampled_from(["65000:1", "65000:2", "large:1:2:3"]), unique=True).map(lambda c: tuple(sorted(c))),
    st.one_of(st.none(), st.integers(0, 1000)),
)
ROUTES = st.dictionaries(st.sampled_from(["r1", "r1-v6", "r2"]), st.dictionaries(PREFIXES, ATTRS, max_size=5))


def session_lines(text: str) -> list[str]:
    """What a Service change must not touch: every line inside router blocks but ``network``."""
    out, inside = [], False
    for line in text.splitlines():
        inside = inside or line.startswith("router bgp")
        if inside and not line.startswith("  network "):
            out.append(line)
        if line == "exit":
            inside = False
    return out


@settings(max_examples=60, deadline=None)
@given(before=ROUTES, after=ROUTES)
def test_service_changes_touch_no_session_line(before: dict, after: dict) -> None:  # type: ignore[type-arg]
    kw = {"hostname": "n1", "peers": PEERS, "passwords": {"r1-v6": "pw"}, "bfd_profiles": {"fast": FAST}}
    first, second = render(routes=before, **kw), render(routes=after, **kw)  # type: ignore[arg-type]
    assert session_lines(first.text) == session_lines(second.text)


@settings(max_examples=15, deadline=None)
@given(routes=ROUTES)
def test_every_rendering_is_valid_frr(routes: dict, tmp_path_factory: pytest.TempPathFactory) -> None:  # type: ignore[type-arg]
    out = render(hostname="n1", peers=PEERS, routes=routes, passwords={"r1-v6": "pw"}, bfd_profiles={"fast": FAST})
    frr_accepts(out.text, tmp_path_factory.mktemp("frr"))
