"""`onprem-lb status`: every Service address at a glance, read from the API with the user's
kubeconfig — the one command to run when an address does not answer.

Per address: its Service, pool, who announces it (ServiceL2Status and ServiceBGPStatus, the
objects the announcing speakers write, with interfaces or BGP peers), and the state and reason
on every node, as each speaker published them on its Lease (address_states.py). Then the
speakers whose Lease is not being renewed (down, or cut off from the API: their states are as
old as their Lease), and the LoadBalancer Services still without an address, each with its last
Warning Event.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Service

from onprem_lb import address_states, ipam, k8s
from onprem_lb.speaker.agent import SPEAKER_LABEL
from onprem_lb.speaker.statuses import NODE_LABEL, SVC_NAME_LABEL, SVC_NS_LABEL

STATE_KEYS = tuple(address_states.ANNOTATIONS.items())  # (protocol, annotation)


def _age(stamp: Any, now: dt.datetime) -> float | None:
    """Seconds since a Kubernetes time (a datetime from lightkube, or its text)."""
    if not stamp:
        return None
    when = stamp if isinstance(stamp, dt.datetime) else dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (now - when).total_seconds())


def _serves(svc: Mapping[str, Any], lb_class: str) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and (spec.get("loadBalancerClass") or "") == lb_class


def _addresses(svc: Mapping[str, Any]) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in ingress if isinstance(i, Mapping) and i.get("ip")]


def _announcers(objects: Iterable[Mapping[str, Any]], detail: str) -> dict[str, dict[str, list[str]]]:
    """Service key -> node -> its interfaces (layer 2) or peers (BGP), from the status objects."""
    out: dict[str, dict[str, list[str]]] = {}
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        status = obj.get("status") or {}
        node = labels.get(NODE_LABEL) or status.get("node")
        key = f"{labels.get(SVC_NS_LABEL)}/{labels.get(SVC_NAME_LABEL)}"
        if node:
            items = status.get(detail) or []
            names = [str(i.get("name")) if isinstance(i, Mapping) else str(i) for i in items]
            out.setdefault(key, {})[str(node)] = names
    return out


def build(
    *,
    services: list[dict[str, Any]],
    leases: list[dict[str, Any]],
    l2_statuses: list[dict[str, Any]],
    bgp_statuses: list[dict[str, Any]],
    events: list[dict[str, Any]],
    lb_class: str = "",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The report as plain data (what `--output json` prints), from the objects as the API gives
    them (plain dicts)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    speakers: dict[str, dict[str, Any]] = {}
    for lease in leases:
        spec = lease.get("spec") or {}
        node = str(spec.get("holderIdentity") or "")
        if not node:
            continue
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        age = _age(spec.get("renewTime"), now)
        duration = float(spec.get("leaseDurationSeconds") or 0)
        speakers[node] = {
            "renewed_s_ago": None if age is None else round(age, 1),
            "lease_duration_s": duration,
            "renewing": age is not None and age <= duration,
            "states": {proto: address_states.decode(annotations.get(key)) for proto, key in STATE_KEYS},
        }
    l2 = _announcers(l2_statuses, "interfaces")
    bgp = _announcers(bgp_statuses, "peers")
    addresses: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    warnings: dict[str, tuple[str, dict[str, Any]]] = {}
    for event in events:
        obj = event.get("involvedObject") or {}
        if event.get("type") != "Warning" or obj.get("kind") != "Service":
            continue
        key = f"{obj.get('namespace')}/{obj.get('name')}"
        stamp = str(event.get("lastTimestamp") or event.get("eventTime") or "")
        if key not in warnings or stamp >= warnings[key][0]:
            warnings[key] = (stamp, event)
    for svc in services:
        if not _serves(svc, lb_class):
            continue
        meta = svc.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        pool = (meta.get("annotations") or {}).get(ipam.ALLOCATED_FROM_ANNOTATION, "")
        ips = _addresses(svc)
        if not ips:
            _, last = warnings.get(key, ("", {}))
            pending.append({"service": key, "reason": last.get("reason", ""), "message": last.get("message", "")})
            continue
        for ip in ips:
            nodes = {}
            for node, speaker in sorted(speakers.items()):
                per_protocol = {}
                for proto, published in speaker["states"].items():
                    if published is not None:
                        per_protocol[proto] = published[0].get(ip, address_states.NOT_OWNER)
                nodes[node] = per_protocol
            entry = {"address": ip, "service": key, "pool": pool, "layer2": l2.get(key, {}), "bgp": bgp.get(key, {})}
            addresses.append({**entry, "nodes": nodes})
    addresses.sort(key=lambda a: (ipaddress.ip_address(a["address"]).version, ipaddress.ip_address(a["address"])))
    return {
        "addresses": addresses,
        "pending": sorted(pending, key=lambda p: p["service"]),
        "speakers": {node: {k: v for k, v in s.items() if k != "states"} for node, s in speakers.items()},
    }


def _state_line(state: str) -> str:
    meaning = address_states.MEANINGS.get(state)
    return f"{state}: {meaning}" if meaning else state


def render(report: Mapping[str, Any]) -> str:
    """The report as an operator reads it."""
    lines: list[str] = []
    speakers = report["speakers"]
    for entry in report["addresses"]:
        lines.append(f"{entry['address']}  {entry['service']}  pool {entry['pool'] or '(unknown)'}")
        owners = [f"layer2 from {n} ({', '.join(i) or 'no interface'})" for n, i in sorted(entry["layer2"].items())]
        owners += [f"BGP from {n} to {', '.join(p) or 'no peer'}" for n, p in sorted(entry["bgp"].items())]
        lines.append(f"  announced: {'; '.join(owners) if owners else 'BY NOBODY'}")
        for node, per_protocol in entry["nodes"].items():
            stale = "" if speakers[node]["renewing"] else " (Lease not renewed: as of then)"
            if not per_protocol:
                lines.append(f"  {node}: publishes no states (a speaker of another version?){stale}")
            for proto, state in sorted(per_protocol.items()):
                lines.append(f"  {node} {proto}: {_state_line(state)}{stale}")
    if not report["addresses"]:
        lines.append("no LoadBalancer Service has an address")
    quiet = {n: s for n, s in speakers.items() if not s["renewing"]}
    if quiet:
        lines.append("speakers not renewing their Lease (stopped, or cut off from the API):")
        for node, s in sorted(quiet.items()):
            ago = "never" if s["renewed_s_ago"] is None else f"{s['renewed_s_ago']:g} s ago"
            lines.append(f"  {node}: last renewed {ago} (Lease {s['lease_duration_s']:g} s)")
    if not speakers:
        lines.append("no speaker Lease found: is the speaker running (and --namespace right)?")
    if report["pending"]:
        lines.append("Services without an address:")
        for p in report["pending"]:
            why = f"{p['reason']}: {p['message']}" if p["reason"] else "no Warning Event (the controller may be down)"
            lines.append(f"  {p['service']}: {why}")
    return "\n".join(lines) + "\n"


async def collect(client: AsyncClient, namespace: str, lb_class: str = "") -> dict[str, Any]:
    """Read what the report needs (a few lists) and build it."""

    async def plain(resource: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [k8s.to_plain(obj) for obj in [o async for o in client.list(resource, **kwargs)]]

    return build(
        services=await plain(Service, namespace="*"),
        leases=await plain(Lease, namespace=namespace, labels={SPEAKER_LABEL: "speaker"}),
        l2_statuses=await plain(k8s.ServiceL2Status, namespace=namespace),
        bgp_statuses=await plain(k8s.ServiceBGPStatus, namespace=namespace),
        events=await plain(Event, namespace="*", fields={"type": "Warning"}),
        lb_class=lb_class,
    )
