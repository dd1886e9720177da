"""Who announces which address in layer 2 mode: a pure function, no I/O.

Every speaker runs the same function on the same inputs (config, Services, EndpointSlices,
Nodes, the set of live speakers) and so reaches the same answer without talking to the others.

A node is *eligible* for a Service address when
  its speaker is live ∧ an L2Advertisement that selects the address's pool selects the node
  ∧ the node is not excluded (label node.kubernetes.io/exclude-from-external-load-balancers,
  or condition NetworkUnavailable=True)
  ∧ the Service has at least one serving endpoint
  ∧ (externalTrafficPolicy Local ⇒ a ready endpoint on that node).

Among eligible nodes the default order is MetalLB's: ascending sha256 of ``node#ip``, so a
mixed MetalLB/onprem-lb reading of the same cluster elects the same node. An address shared
by several Services elects one node: the one eligible for the most of them, ties by that order.

With ``spread`` the addresses are balanced: each address (taken in sha256 order of the address)
goes to the first node of its own order that holds fewer than ceil(addresses / nodes) — the
"bounded load" variant of rendezvous hashing. Hash order alone is lumpy with few nodes.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from onprem_lb import config
from onprem_lb.speaker.view import EXCLUDE_LABEL, Endpoints, NodeState, ServiceState

# The L2Advertisement as the config model reads it (one type for the controller, the speaker
# and the modules); the agent's view of Services, endpoints and nodes, used by every protocol.
L2Ad = config.L2Advertisement
__all__ = ["EXCLUDE_LABEL", "Endpoints", "L2Ad", "NodeState", "ServiceState"]


@dataclass(frozen=True)
class Announcement:
    ip: str
    node: str
    interfaces: tuple[str, ...]  # empty: every interface
    services: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """One election, as a node sees it: the owner of each address it elects, and why this node
    may not announce the addresses of its Services that it does not win (why_not_eligible)."""

    winners: Mapping[str, Announcement]
    not_eligible: Mapping[str, str]


def order_key(node: str, ip: str) -> bytes:
    """MetalLB's layer 2 order: the node with the smallest sha256(node#ip) announces."""
    return hashlib.sha256(f"{node}#{ip}".encode()).digest()


# Why a node does not announce an address it could: the reasons a user sees (log lines, the
# speaker's onprem_lb_speaker_addresses{state} metric). MetalLB's speaker names some of the same.
NOT_IN_ANY_POOL = "notInAnyPool"
NO_SERVING_ENDPOINTS = "noServingEndpoints"
SPEAKER_NOT_LIVE = "speakerNotLive"
NODE_UNKNOWN = "nodeUnknown"
NODE_EXCLUDED = "nodeExcluded"
NO_MATCHING_ADVERTISEMENT = "noMatchingAdvertisement"
NODE_NOT_SELECTED = "nodeNotSelected"
NO_LOCAL_ENDPOINT = "noLocalEndpoint"


def _selecting(
    svc: ServiceState,
    ip: str,
    pool_of: Callable[[str], str | None],
    pool_labels: Mapping[str, Mapping[str, str]],
    ads: Sequence[L2Ad],
) -> tuple[str | None, list[L2Ad]]:
    pool = svc.pool or pool_of(ip)
    if pool is None:
        return None, []
    labels = pool_labels.get(pool, {})
    return pool, [ad for ad in ads if ad.selects_pool(pool, labels)]


def _verdict(
    svc: ServiceState, selecting: Sequence[L2Ad], node: NodeState | None, endpoints: Endpoints
) -> str | tuple[str, ...]:
    """For one live node: the interfaces it would announce on (empty tuple: all), or why not."""
    if node is None:
        return NODE_UNKNOWN
    if node.excluded:
        return NODE_EXCLUDED
    if not selecting:
        return NO_MATCHING_ADVERTISEMENT
    mine = [ad for ad in selecting if ad.selects_node(node.labels)]
    if not mine:
        return NODE_NOT_SELECTED
    if svc.local and node.name not in endpoints.ready_nodes:
        return NO_LOCAL_ENDPOINT
    if any(not ad.interfaces for ad in mine):
        return ()
    return tuple(sorted({i for ad in mine for i in ad.interfaces}))


def _eligible(
    svc: ServiceState,
    ip: str,
    *,
    pool_of: Callable[[str], str | None],
    pool_labels: Mapping[str, Mapping[str, str]],
    ads: Sequence[L2Ad],
    nodes: Mapping[str, NodeState],
    live: Iterable[str],
    endpoints: Endpoints,
) -> dict[str, tuple[str, ...]]:
    """Eligible node → interfaces (empty tuple: all) for one address of one Service."""
    pool, selecting = _selecting(svc, ip, pool_of, pool_labels, ads)
    if pool is None or not endpoints.serving:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for name in live:
        verdict = _verdict(svc, selecting, nodes.get(name), endpoints)
        if isinstance(verdict, tuple):
            out[name] = verdict
    return out


def why_not_eligible(
    services: Iterable[ServiceState],
    node: str,
    *,
    endpoints: Mapping[str, Endpoints],
    nodes: Mapping[str, NodeState],
    live: Iterable[str],
    ads: Sequence[L2Ad],
    pool_of: Callable[[str], str | None],
    pool_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Address → why ``node`` may not announce it, for every address it is eligible for under no
    Service (the first Service's reason when several share the address)."""
    live_set = frozenset(live)
    labels = pool_labels or {}
    reasons: dict[str, str] = {}
    eligible: set[str] = set()
    for svc in services:
        eps = endpoints.get(svc.key, Endpoints())
        for ip in svc.ips:
            pool, selecting = _selecting(svc, ip, pool_of, labels, ads)
            if pool is None:
                reason: str | tuple[str, ...] = NOT_IN_ANY_POOL
            elif not eps.serving:
                reason = NO_SERVING_ENDPOINTS
            elif node not in live_set:
                reason = SPEAKER_NOT_LIVE
            else:
                reason = _verdict(svc, selecting, nodes.get(node), eps)
            if isinstance(reason, tuple):
                eligible.add(ip)
            else:
                reasons.setdefault(ip, reason)
    return {ip: r for ip, r in reasons.items() if ip not in eligible}


def elect(
    services: Iterable[ServiceState],
    *,
    endpoints: Mapping[str, Endpoints],
    nodes: Mapping[str, NodeState],
    live: Iterable[str],
    ads: Sequence[L2Ad],
    pool_of: Callable[[str], str | None],
    pool_labels: Mapping[str, Mapping[str, str]] | None = None,
    spread: bool = False,
) -> dict[str, Announcement]:
    """Address → the one node that announces it (addresses with no eligible node are absent)."""
    winners, _next = elect_with_successors(
        services,
        endpoints=endpoints,
        nodes=nodes,
        live=live,
        ads=ads,
        pool_of=pool_of,
        pool_labels=pool_labels,
        spread=spread,
    )
    return winners


def elect_with_successors(
    services: Iterable[ServiceState],
    *,
    endpoints: Mapping[str, Endpoints],
    nodes: Mapping[str, NodeState],
    live: Iterable[str],
    ads: Sequence[L2Ad],
    pool_of: Callable[[str], str | None],
    pool_labels: Mapping[str, Mapping[str, str]] | None = None,
    spread: bool = False,
) -> tuple[dict[str, Announcement], dict[str, str]]:
    """The election, and per address the node that would announce it if its winner were gone
    (the *successor*: what ``elect`` gives with the winner removed from ``live``; addresses with
    no second eligible node are absent). Without ``spread`` removing any other node changes no
    winner, so the successor is the one node whose decision depends on the winner's liveness.
    With ``spread`` that is not so (bounded load moves other addresses): no successors."""
    live_set = frozenset(live)
    labels = pool_labels or {}
    # Per address: node → (services it is eligible for, interfaces).
    per_ip: dict[str, dict[str, tuple[list[str], set[str] | None]]] = {}
    holders: dict[str, list[str]] = {}
    for svc in services:
        eps = endpoints.get(svc.key, Endpoints())
        for ip in svc.ips:
            holders.setdefault(ip, []).append(svc.key)
            cands = per_ip.setdefault(ip, {})
            eligible = _eligible(
                svc, ip, pool_of=pool_of, pool_labels=labels, ads=ads, nodes=nodes, live=live_set, endpoints=eps
            )
            for node, ifaces in eligible.items():
                served, known = cands.setdefault(node, ([], set()))
                served.append(svc.key)
                if known is None or not ifaces:
                    cands[node] = (served, None)  # None: every interface
                else:
                    known.update(ifaces)

    ranked: dict[str, list[str]] = {}
    successors: dict[str, str] = {}
    for ip, cands in per_ip.items():
        if not cands:
            continue
        ranked[ip] = _ranked(ip, cands)
        if not spread and len(cands) > 1:
            rest = {n: c for n, c in cands.items() if n != ranked[ip][0]}
            successors[ip] = _ranked(ip, rest)[0]

    chosen = _spread(ranked) if spread else {ip: names[0] for ip, names in ranked.items()}
    out: dict[str, Announcement] = {}
    for ip, node in chosen.items():
        _served, chosen_ifaces = per_ip[ip][node]
        out[ip] = Announcement(
            ip=ip,
            node=node,
            interfaces=() if chosen_ifaces is None else tuple(sorted(chosen_ifaces)),
            services=tuple(sorted(holders[ip])),
        )
    return out, successors


def _ranked(ip: str, cands: Mapping[str, tuple[list[str], set[str] | None]]) -> list[str]:
    """The nodes eligible for the most of the address's Services, in the address's order."""
    best = max(len(served) for served, _ in cands.values())
    top = [n for n, (served, _) in cands.items() if len(served) == best]
    return sorted(top, key=functools.partial(_order_for, ip))


def _order_for(ip: str, node: str) -> bytes:
    return order_key(node, ip)


def _spread(ranked: Mapping[str, list[str]]) -> dict[str, str]:
    nodes = {n for names in ranked.values() for n in names}
    if not nodes:
        return {}
    cap = math.ceil(len(ranked) / len(nodes))
    load: dict[str, int] = dict.fromkeys(nodes, 0)
    chosen: dict[str, str] = {}
    for ip in sorted(ranked, key=lambda a: hashlib.sha256(a.encode()).digest()):
        names = ranked[ip]
        pick = next((n for n in names if load[n] < cap), None)
        if pick is None:  # every candidate is full: the least loaded, first in order on ties
            pick = min(names, key=lambda n: load[n])
        load[pick] += 1
        chosen[ip] = pick
    return chosen
