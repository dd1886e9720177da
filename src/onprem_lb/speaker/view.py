"""What the speaker agent knows, in the form every protocol reads: Services with addresses,
their endpoints, the Nodes, the config snapshot, and which speakers may announce. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from onprem_lb import ipam
from onprem_lb.config import ConfigSnapshot
from onprem_lb.k8s.client import key_of

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


@dataclass(frozen=True)
class NodeState:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    network_unavailable: bool = False

    @property
    def excluded(self) -> bool:
        return EXCLUDE_LABEL in self.labels or self.network_unavailable


@dataclass(frozen=True)
class ServiceState:
    key: str  # namespace/name
    ips: tuple[str, ...]
    local: bool = False  # externalTrafficPolicy: Local
    pool: str | None = None  # from metallb.io/ip-allocated-from-pool, when set


@dataclass(frozen=True)
class Endpoints:
    serving: bool = False  # at least one serving endpoint anywhere
    ready_nodes: frozenset[str] = frozenset()  # nodes with a ready endpoint


@dataclass(frozen=True)
class View:
    """The agent's inputs at one decision, handed to each protocol."""

    node: str  # this node
    config: ConfigSnapshot
    services: tuple[ServiceState, ...]
    endpoints: Mapping[str, Endpoints]  # Service key -> its endpoints
    nodes: Mapping[str, NodeState]
    may_announce: bool  # its Lease is renewed, or it holds by membership (else: announces nothing)
    leased: frozenset[str]  # other speakers whose Lease is valid now
    lease_annotations: Mapping[str, Mapping[str, str]]  # speaker -> what its protocols publish on its Lease
    lease_ok: bool = True  # this speaker's Lease is renewed (the API server's authority)
    membership: bool = False  # the API cannot say who is live now: who is heard decides (agent.py)
    api_recent: bool = True  # its last renewal is recent: the API server answers
    quiet_reason: str = ""  # why it may not announce, when it may not ("fenced", "noQuorum")


def service_state(plain: Mapping[str, Any], lb_class: str | None) -> ServiceState | None:
    """A Service of our class that holds addresses, as the protocols need it (None: not one)."""
    if not ipam.handles(plain, lb_class):
        return None
    meta = _mapping(plain.get("metadata"))
    ingress = _mapping(_mapping(plain.get("status")).get("loadBalancer")).get("ingress")
    entries = ingress if isinstance(ingress, list) else []
    # anything but {"ip": "<text>"} is not an address of ours (a hostname entry, or junk)
    ips = tuple(e["ip"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("ip"), str) and e["ip"])
    if not ips:
        return None
    pool = _mapping(meta.get("annotations")).get(ipam.ALLOCATED_FROM_ANNOTATION)
    return ServiceState(
        key=key_of(meta),
        ips=ips,
        local=_mapping(plain.get("spec")).get("externalTrafficPolicy") == "Local",
        pool=pool if isinstance(pool, str) and pool else None,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def endpoints_from_slices(slices: Iterable[Mapping[str, object]]) -> Endpoints:
    """Summarise the EndpointSlices of one Service (discovery.k8s.io/v1 dicts).

    An endpoint is ready unless conditions.ready is false (the API's rule: nil means ready);
    it is serving when conditions.serving is true, or ready when serving is not reported.
    """
    serving = False
    ready_nodes: set[str] = set()
    for slc in slices:
        eps = slc.get("endpoints")
        for ep in eps if isinstance(eps, list) else []:
            if not isinstance(ep, Mapping):
                continue
            cond = ep.get("conditions")
            cond = cond if isinstance(cond, Mapping) else {}
            ready = cond.get("ready") is not False
            is_serving = cond.get("serving") is True or ("serving" not in cond and ready)
            serving = serving or is_serving or ready
            node = ep.get("nodeName")
            if ready and isinstance(node, str) and node:
                ready_nodes.add(node)
    return Endpoints(serving=serving, ready_nodes=frozenset(ready_nodes))


def node_state(obj: Mapping[str, object]) -> NodeState:
    """NodeState from a Node dict."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    labels = meta.get("labels")
    status = obj.get("status")
    conds = status.get("conditions") if isinstance(status, Mapping) else None
    unavailable = any(
        isinstance(c, Mapping) and c.get("type") == "NetworkUnavailable" and c.get("status") == "True"
        for c in (conds if isinstance(conds, list) else [])
    )
    return NodeState(
        name=str(meta.get("name") or ""),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {},
        network_unavailable=unavailable,
    )
