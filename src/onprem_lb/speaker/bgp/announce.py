"""What this node announces in BGP mode, to which peer, with which attributes: a pure function.

Unlike layer 2 there is no election: every eligible node announces, and the routers spread the
traffic over them (ECMP). For one Service address and this node:

* the address must be in a pool, and the Service must have a serving endpoint somewhere;
* this speaker must hold its Lease (a fenced speaker announces nothing) and the node must not be
  excluded (label node.kubernetes.io/exclude-from-external-load-balancers, NetworkUnavailable);
* a BGPAdvertisement must select the address's pool and this node (``nodeSelectors``);
* with externalTrafficPolicy Local, the node must hold a ready endpoint of the Service;
* it goes to each peer the advertisement names (all peers when it names none) that selects
  this node (the BGPPeer's ``nodeSelectors``) and whose session is of the address's family
  (IPv4 over an IPv4 session, IPv6 over IPv6; an unnumbered session carries both).

The prefix is the address masked to the advertisement's aggregationLength (aggregationLengthV6).
Several advertisements for one (peer, prefix) merge: the union of their communities and the
highest localPref (localPref is only sent to internal peers, where it means something).
Every address that is not announced gets a reason, as in layer 2 (``why``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from onprem_lb.config import BGPAdvertisement, BGPPeer
from onprem_lb.speaker.view import Endpoints, NodeState, ServiceState

NOT_IN_ANY_POOL = "notInAnyPool"
NO_SERVING_ENDPOINTS = "noServingEndpoints"
FENCED = "fenced"
NODE_UNKNOWN = "nodeUnknown"
NODE_EXCLUDED = "nodeExcluded"
NO_MATCHING_ADVERTISEMENT = "noMatchingAdvertisement"
NODE_NOT_SELECTED = "nodeNotSelected"
NO_LOCAL_ENDPOINT = "noLocalEndpoint"
NO_PEER = "noPeerForThisNode"
ANNOUNCING = "announcing"


@dataclass(frozen=True)
class Attributes:
    """What a route carries to one peer."""

    communities: tuple[str, ...] = ()  # sorted: standard (AA:NN) and large (large:AA:BB:CC)
    local_pref: int | None = None

    def merge(self, other: Attributes) -> Attributes:
        prefs = [p for p in (self.local_pref, other.local_pref) if p is not None]
        return Attributes(tuple(sorted(set(self.communities) | set(other.communities))), max(prefs, default=None))


@dataclass
class Desired:
    """Peer name -> prefix -> attributes; and address -> state (announcing, or why not)."""

    routes: dict[str, dict[str, Attributes]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    services: dict[str, set[str]] = field(default_factory=dict)  # Service key -> peers it is announced to

    def prefixes(self) -> set[str]:
        return {p for routes in self.routes.values() for p in routes}


def prefix_of(ip: str, ad: BGPAdvertisement) -> str:
    address = ipaddress.ip_address(ip)
    length = ad.aggregation_length if address.version == 4 else ad.aggregation_length_v6
    return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))


def node_peers(peers: Iterable[BGPPeer], node: NodeState | None) -> list[BGPPeer]:
    """The peers this node has a session with (a peer's nodeSelectors choose the nodes)."""
    if node is None:
        return []
    return sorted((p for p in peers if p.selects_node(node.labels)), key=lambda p: p.name)


def desired(
    services: Iterable[ServiceState],
    *,
    node: NodeState | None,
    may_announce: bool,
    endpoints: Mapping[str, Endpoints],
    ads: Sequence[BGPAdvertisement],
    peers: Sequence[BGPPeer],
    pool_of: Callable[[str], str | None],
    pool_labels: Mapping[str, Mapping[str, str]],
) -> Desired:
    out = Desired()
    mine = node_peers(peers, node)
    for svc in sorted(services, key=lambda s: s.key):
        eps = endpoints.get(svc.key, Endpoints())
        for ip in svc.ips:
            reason = _why_not(svc, ip, node=node, may_announce=may_announce, eps=eps, pool_of=pool_of)
            selecting: list[BGPAdvertisement] = []
            if reason is None:
                pool = svc.pool or pool_of(ip)
                labels = pool_labels.get(pool or "", {})
                by_pool = [ad for ad in ads if pool is not None and ad.selects_pool(pool, labels)]
                selecting = [ad for ad in by_pool if node is not None and ad.selects_node(node.labels)]
                if not by_pool:
                    reason = NO_MATCHING_ADVERTISEMENT
                elif not selecting:
                    reason = NODE_NOT_SELECTED
            sent_to = set()
            family = ipaddress.ip_address(ip).version
            for ad in selecting:
                for peer in mine:
                    if ad.peers and peer.name not in ad.peers:
                        continue
                    if peer.peer_address and ipaddress.ip_address(peer.peer_address).version != family:
                        continue  # a session carries its own address family (unnumbered ones both)
                    prefix = prefix_of(ip, ad)
                    routes = out.routes.setdefault(peer.name, {})
                    attrs = Attributes(ad.communities, ad.local_pref)
                    routes[prefix] = routes[prefix].merge(attrs) if prefix in routes else attrs
                    sent_to.add(peer.name)
            if reason is None and not sent_to:
                reason = NO_PEER
            if reason is None:
                out.states[ip] = ANNOUNCING
                out.services.setdefault(svc.key, set()).update(sent_to)
            elif out.states.get(ip) != ANNOUNCING:  # an address shared by Services: any one announces it
                out.states.setdefault(ip, reason)
    return out


def _why_not(
    svc: ServiceState,
    ip: str,
    *,
    node: NodeState | None,
    may_announce: bool,
    eps: Endpoints,
    pool_of: Callable[[str], str | None],
) -> str | None:
    if (svc.pool or pool_of(ip)) is None:
        return NOT_IN_ANY_POOL
    if not eps.serving:
        return NO_SERVING_ENDPOINTS
    if not may_announce:
        return FENCED
    if node is None:
        return NODE_UNKNOWN
    if node.excluded:
        return NODE_EXCLUDED
    if svc.local and node.name not in eps.ready_nodes:
        return NO_LOCAL_ENDPOINT
    return None
