"""The fast path for the common change: Services came or went, so only routes changed.

Between two renderings (``frr.render``) that differ only in prefix-list lines, route-map
entries and ``network`` lines, the vtysh commands that take FRR from one to the other are
few and known, and sending them is one vtysh call (tens of milliseconds) where frr-reload.py
reads and diffs the whole running configuration (about a second). Anything else (a peer, a
timer, a BFD profile, the router) returns None: frr-reload.py does it. Pure: text in, commands
out; the driver sends them and falls back to frr-reload.py if FRR refuses one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class _Parsed:
    prefix_lists: list[str] = field(default_factory=list)  # "ip prefix-list ..." lines, in order
    route_maps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # entry header -> its lines
    # "router bgp ..." -> (lines without network lines, {address-family header: network lines})
    routers: dict[str, tuple[tuple[str, ...], dict[str, list[str]]]] = field(default_factory=dict)
    rest: list[str] = field(default_factory=list)  # everything else, in order


def _parse(text: str) -> _Parsed:
    out = _Parsed()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(("ip prefix-list ", "ipv6 prefix-list ")):
            out.prefix_lists.append(line)
        elif line.startswith("route-map "):
            body = []
            i += 1
            while i < len(lines) and lines[i] != "exit":
                body.append(lines[i])
                i += 1
            out.route_maps[line] = tuple(body)
        elif line.startswith("router bgp "):
            kept: list[str] = []
            networks: dict[str, list[str]] = {}
            family = ""
            i += 1
            while i < len(lines) and lines[i] != "exit":
                inner = lines[i]
                if inner.startswith(" address-family "):
                    family = inner.strip()
                    networks.setdefault(family, [])
                if inner.startswith("  network "):
                    networks[family].append(inner.strip())
                else:
                    kept.append(inner)
                i += 1
            out.routers[line] = (tuple(kept), networks)
        elif line not in ("!", ""):
            out.rest.append(line)
        i += 1
    return out


def commands(old: str, new: str) -> list[str] | None:
    """vtysh commands (after ``configure terminal``) from ``old`` to ``new``, or None when more
    than routes changed."""
    before, after = _parse(old), _parse(new)
    if before.rest != after.rest or before.routers.keys() != after.routers.keys():
        return None
    if any(before.routers[r][0] != after.routers[r][0] for r in after.routers):
        return None  # a neighbour, a timer, an address family: not ours to patch
    out: list[str] = []
    # first what new routes need (lists, then the route-map entries matching them) ...
    old_lists = set(before.prefix_lists)
    out += [line for line in after.prefix_lists if line not in old_lists]
    for header, body in after.route_maps.items():
        if before.route_maps.get(header) != body:
            if header in before.route_maps:
                out.append(f"no {header}")
            out += [header, *[b.strip() for b in body], "exit"]
    # ... then the routes themselves, added and withdrawn ...
    for router, (_kept, families) in after.routers.items():
        old_families = before.routers[router][1]
        changes: list[str] = []
        for family in sorted(set(families) | set(old_families)):
            new_nets, old_nets = families.get(family, []), old_families.get(family, [])
            lines = [n for n in new_nets if n not in old_nets] + [f"no {n}" for n in old_nets if n not in new_nets]
            if lines:
                changes += [family, *lines, "exit-address-family"]
        if changes:
            out += [router, *changes, "exit"]
    # ... then what nothing refers to any more
    out += [f"no {header}" for header in before.route_maps if header not in after.route_maps]
    new_lists = set(after.prefix_lists)
    out += [f"no {line}" for line in before.prefix_lists if line not in new_lists]
    return out


def vtysh_argv(vtysh: str, pathspace: str, lines: Sequence[str]) -> list[str]:
    argv = [vtysh, *(["-N", pathspace] if pathspace else []), "-c", "configure terminal"]
    for line in lines:
        argv += ["-c", line]
    return argv
