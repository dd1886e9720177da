"""speaker/bgp/incremental.py: route changes as vtysh commands, anything else left to
frr-reload.py. tests/integration/test_frr_incremental.py applies them to a running FRR."""

from __future__ import annotations

from onprem_lb.config import BGPPeer
from onprem_lb.speaker.bgp.announce import Attributes
from onprem_lb.speaker.bgp.frr import render
from onprem_lb.speaker.bgp.incremental import commands, vtysh_argv

R1 = BGPPeer("r1", my_asn=64512, peer_asn=64500, peer_address="203.0.113.1")


def text(routes: dict[str, dict[str, Attributes]], peers: list[BGPPeer] | None = None) -> str:
    return render(hostname="n1", peers=peers or [R1], routes=routes, passwords={}, bfd_profiles={}).text


def test_nothing_changed_is_no_command() -> None:
    same = text({"r1": {"192.0.2.1/32": Attributes()}})
    assert commands(same, same) == []


def test_a_new_route_then_its_withdrawal() -> None:
    empty, one = text({}), text({"r1": {"192.0.2.1/32": Attributes()}})
    added = commands(empty, one)
    assert added is not None
    prefix_list = next(line for line in added if line.startswith("ip prefix-list"))
    assert prefix_list.endswith("permit 192.0.2.1/32")
    assert added.index(prefix_list) < added.index("network 192.0.2.1/32")  # the filter first, then the route
    assert added[added.index("network 192.0.2.1/32") - 2 :][:2] == ["router bgp 64512", "address-family ipv4 unicast"]
    assert "route-map onprem-r1-out permit 10" in added
    removed = commands(one, empty)
    assert removed is not None
    assert removed.index("no network 192.0.2.1/32") < removed.index(f"no {prefix_list}")  # the route first
    assert "no route-map onprem-r1-out permit 10" in removed


def test_other_routes_keep_their_sequence_numbers() -> None:
    a = text({"r1": {"192.0.2.1/32": Attributes(), "192.0.2.9/32": Attributes()}})
    b = text({"r1": {"192.0.2.1/32": Attributes(), "192.0.2.5/32": Attributes(), "192.0.2.9/32": Attributes()}})
    got = commands(a, b)
    assert got is not None and [line for line in got if "prefix-list" in line and "seq" in line] == [
        next(line for line in b.splitlines() if line.endswith("permit 192.0.2.5/32"))
    ]


def test_anything_but_routes_is_left_to_frr_reload() -> None:
    base = text({"r1": {"192.0.2.1/32": Attributes()}})
    timers = BGPPeer("r1", my_asn=64512, peer_asn=64500, peer_address="203.0.113.1", hold_time=9)
    assert commands(base, text({"r1": {"192.0.2.1/32": Attributes()}}, [timers])) is None
    second = BGPPeer("r2", my_asn=64512, peer_asn=64500, peer_address="203.0.113.2")
    assert commands(base, text({"r1": {"192.0.2.1/32": Attributes()}}, [R1, second])) is None
    other_router = BGPPeer("r1", my_asn=64513, peer_asn=64500, peer_address="203.0.113.1")
    assert commands(base, text({}, [other_router])) is None


def test_vtysh_argv() -> None:
    assert vtysh_argv("vtysh", "n1", ["router bgp 1", "exit"]) == [
        "vtysh", "-N", "n1", "-c", "configure terminal", "-c", "router bgp 1", "-c", "exit"
    ]  # fmt: skip
    assert vtysh_argv("vtysh", "", [])[:3] == ["vtysh", "-c", "configure terminal"]
