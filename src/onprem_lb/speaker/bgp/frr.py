"""FRR's configuration for this node, as text: a pure function of the peers and the routes.

The shape keeps sessions up while Services come and go: the ``router bgp`` block, its neighbours
and their address families depend only on the BGPPeers (and BFD profiles); a Service changes
only ``network`` lines, prefix lists and route-map entries, which frr-reload.py applies without
touching a session (outbound policy changes are sent as updates). Each neighbour gets one
outbound route map, ``onprem-<peer>-out``: one entry per set of attributes (communities,
localPref) matching a prefix list of the prefixes that carry them, then a final deny, so a
peer receives exactly what the advertisements give it.

Names derive from the BGPPeer's name (an RFC 1123 subdomain, so safe in FRR's words) and the
attributes' digest, so they do not move when unrelated prefixes come or go.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from onprem_lb.config import BFDProfile, BGPPeer
from onprem_lb.speaker.bgp.announce import Attributes

HEADER = "! onprem-lb speaker: generated, do not edit (applied with frr-reload.py)"


class RenderError(ValueError):
    """A peer that cannot be written into FRR's configuration (said per peer, not raised through)."""


@dataclass(frozen=True)
class Rendered:
    text: str
    skipped: Mapping[str, str]  # peer name -> why it was left out


def route_map_name(peer: str) -> str:
    return f"onprem-{peer}-out"


def _family(peer: BGPPeer) -> int | None:
    return ipaddress.ip_address(peer.peer_address).version if peer.peer_address else None


def _neighbor(peer: BGPPeer) -> str:
    return peer.peer_address or peer.interface or ""


def _digest(attrs: Attributes) -> str:
    text = ",".join(attrs.communities) + f"|{attrs.local_pref}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _seq(prefix: str, used: set[int]) -> int:
    """A prefix's sequence number in its list, from the prefix itself: stable while other
    prefixes come and go (entries are all ``permit``, so their order means nothing)."""
    seq = 1 + int.from_bytes(hashlib.sha256(prefix.encode()).digest()[:4], "big") % 4_000_000_000
    while seq in used:  # a collision (rare): the next free number
        seq += 1
    used.add(seq)
    return seq


def _check_password(password: str) -> str | None:
    if not password or len(password) > 80:
        return "the BGP password must be 1 to 80 characters"
    if any(c.isspace() or not c.isprintable() for c in password):
        return "the BGP password may not hold spaces or control characters (FRR reads it as one word)"
    return None


def writable(
    peers: Sequence[BGPPeer], passwords: Mapping[str, str], bfd_profiles: Mapping[str, BFDProfile]
) -> tuple[list[BGPPeer], dict[str, str]]:
    """The peers that can go into FRR's configuration (by name), and why each other one cannot."""
    skipped: dict[str, str] = {}
    usable: list[BGPPeer] = []
    for peer in sorted(peers, key=lambda p: p.name):
        problem = None
        if peer.has_password:
            problem = _check_password(passwords.get(peer.name, "")) if peer.name in passwords else "password unknown"
        if peer.bfd_profile and peer.bfd_profile not in bfd_profiles:
            problem = f"BFD profile {peer.bfd_profile!r} does not exist"
        if problem:
            skipped[peer.name] = problem
        else:
            usable.append(peer)
    return usable, skipped


def render(
    *,
    hostname: str,
    peers: Sequence[BGPPeer],
    routes: Mapping[str, Mapping[str, Attributes]],
    passwords: Mapping[str, str],
    bfd_profiles: Mapping[str, BFDProfile],
) -> Rendered:
    """``peers``: the BGPPeers selecting this node; ``routes``: peer name -> prefix -> attributes;
    ``passwords``: peer name -> its password (resolved from the object or its Secret)."""
    usable, skipped = writable(peers, passwords, bfd_profiles)
    # the system's host name, as FRR shows it: another one would be set again on every reload
    lines = [HEADER, "frr defaults traditional", f"hostname {hostname}", "!"]
    lines += _policies(usable, routes)
    routers: dict[tuple[int, str], list[BGPPeer]] = {}
    for peer in usable:
        routers.setdefault((peer.my_asn, peer.vrf), []).append(peer)
    for (asn, vrf), members in sorted(routers.items()):
        lines += _router(asn, vrf, members, routes, passwords)
    used = sorted({p.bfd_profile for p in usable if p.bfd_profile})
    if used:
        lines.append("bfd")
        for name in used:
            lines += _bfd_profile(bfd_profiles[name])
        lines += ["exit", "!"]
    lines.append("end")
    return Rendered("\n".join(lines) + "\n", skipped)


def _policies(peers: Sequence[BGPPeer], routes: Mapping[str, Mapping[str, Attributes]]) -> list[str]:
    lines: list[str] = []
    for peer in peers:
        groups: dict[tuple[int, Attributes], list[str]] = {}
        for prefix, attrs in routes.get(peer.name, {}).items():
            family: int = ipaddress.ip_network(prefix).version
            groups.setdefault((family, attrs), []).append(prefix)
        entries: list[list[str]] = []
        for (family, attrs), prefixes in sorted(groups.items(), key=lambda g: (g[0][0], _digest(g[0][1]))):
            name = f"onprem-{peer.name}-v{family}-{_digest(attrs)}"
            kind = "ip" if family == 4 else "ipv6"
            used: set[int] = set()
            for prefix in sorted(prefixes, key=ipaddress.ip_network):
                lines.append(f"{kind} prefix-list {name} seq {_seq(prefix, used)} permit {prefix}")
            entry = [f" match {kind} address prefix-list {name}"]
            standard = [c for c in attrs.communities if not c.startswith(("large:", "ext:"))]
            large = [c.removeprefix("large:") for c in attrs.communities if c.startswith("large:")]
            if standard:
                entry.append(f" set community {' '.join(standard)} additive")
            if large:
                entry.append(f" set large-community {' '.join(large)} additive")
            internal = peer.peer_asn == peer.my_asn or peer.dynamic_asn == "internal"
            if attrs.local_pref is not None and internal:  # localPref means nothing to an external peer
                entry.append(f" set local-preference {attrs.local_pref}")
            entries.append(entry)
        if lines and lines[-1] != "!":
            lines.append("!")
        name = route_map_name(peer.name)
        for seq, entry in enumerate(entries, start=1):
            lines += [f"route-map {name} permit {seq * 10}", *entry, "exit"]
        lines += [f"route-map {name} deny 65535", "exit", "!"]
    return lines


def _router(
    asn: int,
    vrf: str,
    peers: Sequence[BGPPeer],
    routes: Mapping[str, Mapping[str, Attributes]],
    passwords: Mapping[str, str],
) -> list[str]:
    lines = [f"router bgp {asn}" + (f" vrf {vrf}" if vrf else "")]
    router_id = next((p.router_id for p in peers if p.router_id), None)
    if router_id:
        lines.append(f" bgp router-id {router_id}")
    lines += [" no bgp ebgp-requires-policy", " no bgp default ipv4-unicast", " no bgp network import-check"]
    for peer in peers:
        n = _neighbor(peer)
        remote = str(peer.peer_asn) if peer.peer_asn is not None else (peer.dynamic_asn or "external")
        lines.append(f" neighbor {n} {'interface ' if peer.interface else ''}remote-as {remote}")
        if peer.peer_port != 179:
            lines.append(f" neighbor {n} port {peer.peer_port}")
        if peer.keepalive_time is not None or peer.hold_time is not None:
            hold = peer.hold_time if peer.hold_time is not None else 90
            # bgpd runs (and shows) a keepalive of at most a third of the hold time, none without
            # one: written as it runs, a reload finds nothing to redo
            keepalive = min(peer.keepalive_time if peer.keepalive_time is not None else hold, hold // 3)
            lines.append(f" neighbor {n} timers {keepalive} {hold}")
        if peer.connect_time is not None:
            lines.append(f" neighbor {n} timers connect {peer.connect_time}")
        if peer.has_password:
            lines.append(f" neighbor {n} password {passwords[peer.name]}")
        if peer.source_address:
            lines.append(f" neighbor {n} update-source {peer.source_address}")
        if peer.ebgp_multihop and not _internal(peer):  # iBGP is multihop anyway: FRR drops the line
            lines.append(f" neighbor {n} ebgp-multihop 255")  # as FRR shows it: a reload finds it in place
        if peer.bfd_profile:  # both lines, as FRR shows them (else each reload drops BFD)
            lines += [f" neighbor {n} bfd", f" neighbor {n} bfd profile {peer.bfd_profile}"]
        # without it, no GR capability at all: bgpd's default (helper) still offers one, and a
        # router that takes it keeps a dead node's routes as stale for the restart time (120 s)
        lines.append(f" neighbor {n} graceful-restart" + ("" if peer.enable_graceful_restart else "-disable"))
    for family in (4, 6):
        members = [p for p in peers if _family(p) in (family, None)]
        if not members:
            continue
        prefixes = sorted(
            {
                prefix
                for p in members
                for prefix in routes.get(p.name, {})
                if ipaddress.ip_network(prefix).version == family
            },
            key=ipaddress.ip_network,
        )
        lines.append(f" address-family ipv{family} unicast")
        lines += [f"  network {prefix}" for prefix in prefixes]
        for peer in members:
            n = _neighbor(peer)
            lines += [f"  neighbor {n} activate", f"  neighbor {n} route-map {route_map_name(peer.name)} out"]
        lines.append(" exit-address-family")
    lines += ["exit", "!"]
    return lines


def _internal(peer: BGPPeer) -> bool:
    return peer.peer_asn == peer.my_asn if peer.peer_asn is not None else peer.dynamic_asn == "internal"


def _bfd_profile(profile: BFDProfile) -> list[str]:
    """Only what differs from bfdd's defaults: FRR does not show defaults, and a line it does
    not show is one frr-reload.py sends again on every reload."""
    lines = [f" profile {profile.name}"]
    if profile.detect_multiplier != 3:
        lines.append(f"  detect-multiplier {profile.detect_multiplier}")
    if profile.receive_interval != 300:
        lines.append(f"  receive-interval {profile.receive_interval}")
    if profile.transmit_interval != 300:
        lines.append(f"  transmit-interval {profile.transmit_interval}")
    if profile.echo_mode:
        lines.append("  echo-mode")
        if profile.echo_interval != 50:
            lines.append(f"  echo receive-interval {profile.echo_interval}")
    if profile.passive_mode:
        lines.append("  passive-mode")
    if profile.minimum_ttl != 254:
        lines.append(f"  minimum-ttl {profile.minimum_ttl}")
    lines.append(" exit")
    return lines
