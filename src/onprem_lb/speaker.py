"""`onprem-lb speaker`: announce the addresses this node owns in layer 2 mode.

Inputs come from list+watch caches (Services, EndpointSlices, Nodes, pools, L2Advertisements,
speaker Leases); who owns what is ``election.elect``; the packets are ``l2.Announcer``.

Liveness: each speaker renews its own Lease ``speaker-<node>`` (the authority) and sends UDP
heartbeats (``members``) to the speakers whose Leases it sees. A peer is live while its Lease is
valid *and* its heartbeats arrive. A speaker that cannot renew its Lease within the renew
deadline announces nothing (self-fencing): the others take over once its Lease runs out,
which is later than the deadline, so two owners never coexist after convergence.

Handover: a speaker that loses an address keeps answering until the new owner's heartbeat
claims it (or the handover timeout passes); on SIGTERM it tells its peers it is leaving, waits
for them to claim its addresses, then goes quiet and deletes its Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from onprem_lb import election, handover, hostport, ipam, kube, l2, metrics
from onprem_lb.config import ConfigSnapshot, build_config
from onprem_lb.kube import TRANSIENT, Informer, IPAddressPool, L2Advertisement, ServiceL2Status, key_of
from onprem_lb.tasks import first

log = logging.getLogger("onprem_lb.speaker")
COMPONENT = "onprem-lb-speaker"
HEARTBEAT_ANNOTATION = "onprem-lb.io/heartbeat-address"
SPEAKER_LABEL = "app.kubernetes.io/component"
NODE_LABEL = "metallb.io/node"
SVC_NAME_LABEL = "metallb.io/service-name"
SVC_NS_LABEL = "metallb.io/service-namespace"


def _slim_service(plain: dict[str, Any]) -> election.ServiceState | None:
    spec = plain.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return None
    meta = plain.get("metadata") or {}
    ingress = ((plain.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips = tuple(e["ip"] for e in ingress if e.get("ip"))
    if not ips:
        return None
    annotations = meta.get("annotations") or {}
    return election.ServiceState(
        key=key_of(meta),
        ips=ips,
        local=spec.get("externalTrafficPolicy") == "Local",
        pool=annotations.get(ipam.ALLOCATED_FROM_ANNOTATION) or None,
    )


def _service_class(plain: dict[str, Any]) -> str | None:
    return (plain.get("spec") or {}).get("loadBalancerClass") or None


class Speaker:
    def __init__(
        self,
        client: AsyncClient,
        *,
        node: str,
        namespace: str,
        heartbeat: tuple[str, int],
        members: Any,
        announcer: l2.Announcer,
        lb_class: str | None = None,
        spread: bool = False,
        lease_duration: float = 10.0,
        renew_deadline: float = 6.0,
        renew_period: float = 2.0,
        handover_timeout: float = 2.0,
        probe: bool = True,
    ) -> None:
        if not renew_period < renew_deadline < lease_duration:
            raise ValueError("need renew period < renew deadline < lease duration")
        self.client = client
        self.node = node
        self.namespace = namespace
        self.heartbeat = heartbeat
        self.members = members
        self.announcer = announcer
        self.lb_class = lb_class
        self.spread = spread
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.renew_period = renew_period
        self.handover_timeout = handover_timeout
        self.probe_first = probe
        self.lease_name = f"speaker-{node}"
        self._renewed_until = 0.0  # monotonic deadline from the last successful renewal
        self._renew_failures = kube.RepeatedFailure(log, f"renewing lease {self.lease_name}")
        self._lease_seen: dict[str, tuple[str, float, float]] = {}  # node -> (renewTime, observed at, duration)
        self.leaving = False
        self.ready = False
        self.changed = asyncio.Event()
        self.services = Informer(client, Service, self._convert_service, self._touch, name="services")
        self.slices: Informer[tuple[str, election.Endpoints]] = Informer(
            client, EndpointSlice, self._convert_slice, self._slice_changed, name="endpointslices"
        )
        self.nodes = Informer(client, Node, election.node_state, self._touch, namespace=None, name="nodes")
        self.pools = Informer(
            client, IPAddressPool, _plain, self._config_changed, namespace=namespace, name="ipaddresspools"
        )
        self.l2ads = Informer(client, L2Advertisement, _plain, self._config_changed, namespace=namespace, name="l2ads")
        self._parsed: ConfigSnapshot | None = None
        self.leases = Informer(
            client, Lease, self._convert_lease, self._lease_changed, namespace=namespace, name="leases"
        )
        self.statuses = Informer(
            client, ServiceL2Status, self._convert_status, self._touch, namespace=namespace, name="servicel2statuses"
        )
        self.endpoints: dict[str, dict[str, election.Endpoints]] = {}  # service -> slice -> summary
        self.current: dict[str, election.Announcement] = {}  # our announcements (address -> decision)
        self.winners: dict[str, election.Announcement] = {}
        self.not_eligible: dict[str, str] = {}  # address -> why this node may not announce it
        self.states: dict[str, str] = {}  # address -> handover state or reason (reported on change)
        self._state_counts: dict[str, int] = {}
        self.releasing: dict[str, float] = {}  # address -> monotonic deadline while handing over
        self.blocked: dict[str, float] = {}  # address -> retry time after a conflict
        self.probing: set[str] = set()
        self.announced_once: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status_dirty = asyncio.Event()
        self.events = kube.EventRecorder(client, COMPONENT, node, host=node)

    # -- caches ----------------------------------------------------------------------------------

    def _touch(self, *_args: Any) -> None:
        self.changed.set()

    def _config_changed(self, *_args: Any) -> None:
        self._parsed = None  # parsed again on the next decision, not on every lease renewal
        self.changed.set()

    def _convert_service(self, plain: dict[str, Any]) -> election.ServiceState | None:
        if _service_class(plain) != self.lb_class:
            return None
        return _slim_service(plain)

    def _convert_slice(self, plain: dict[str, Any]) -> tuple[str, election.Endpoints] | None:
        meta = plain.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            return None
        return f"{meta.get('namespace')}/{svc}", election.endpoints_from_slices([plain])

    def _slice_changed(self, key: str, old: Any, new: Any) -> None:
        if old is not None:
            self.endpoints.get(old[0], {}).pop(key, None)
        if new is not None:
            self.endpoints.setdefault(new[0], {})[key] = new[1]
        self.changed.set()

    def _convert_lease(self, plain: dict[str, Any]) -> dict[str, Any] | None:
        meta = plain.get("metadata") or {}
        if (meta.get("labels") or {}).get(SPEAKER_LABEL) != "speaker":
            return None
        spec = plain.get("spec") or {}
        try:
            address: tuple[str, int] | None = hostport.parse(
                (meta.get("annotations") or {}).get(HEARTBEAT_ANNOTATION, "")
            )
        except ValueError:
            address = None  # no heartbeat address: never counted live (members hears nobody there)
        return {
            "node": spec.get("holderIdentity") or "",
            "renew": str(spec.get("renewTime") or ""),
            "duration": float(spec.get("leaseDurationSeconds") or self.lease_duration),
            "address": address,
        }

    def _lease_changed(self, _key: str, _old: Any, new: Any) -> None:
        now = time.monotonic()
        seen: dict[str, tuple[str, float, float]] = {}
        addresses: dict[str, tuple[str, int]] = {}
        for lease in self.leases.items.values():
            node = lease["node"]
            if not node:
                continue
            before = self._lease_seen.get(node)
            observed = before[1] if before and before[0] == lease["renew"] else now
            seen[node] = (lease["renew"], observed, lease["duration"])
            if lease["address"]:
                addresses[node] = lease["address"]
        self._lease_seen = seen
        self.members.set_addresses(addresses)
        self.changed.set()

    def _convert_status(self, plain: dict[str, Any]) -> dict[str, Any] | None:
        meta = plain.get("metadata") or {}
        labels = meta.get("labels") or {}
        if NODE_LABEL not in labels:
            return None
        return {"name": meta.get("name"), "labels": labels, "status": plain.get("status") or {}}

    # -- liveness --------------------------------------------------------------------------------

    def lease_ok(self) -> bool:
        return time.monotonic() < self._renewed_until

    def _lease_valid(self, node: str) -> bool:
        seen = self._lease_seen.get(node)
        return seen is not None and time.monotonic() < seen[1] + seen[2]

    def live(self) -> set[str]:
        out = {n for n in self.members.alive_peers() if self._lease_valid(n)}
        if self.lease_ok() and not self.leaving:
            out.add(self.node)
        return out

    async def _renew_once(self) -> bool:
        started = time.monotonic()
        now = dt.datetime.now(dt.timezone.utc)
        meta = ObjectMeta(
            name=self.lease_name,
            namespace=self.namespace,
            labels={SPEAKER_LABEL: "speaker", "app.kubernetes.io/name": "onprem-lb"},
            annotations={HEARTBEAT_ANNOTATION: hostport.join(*self.heartbeat)},
        )
        spec = LeaseSpec(holderIdentity=self.node, leaseDurationSeconds=int(self.lease_duration), renewTime=now)
        try:
            try:
                await self.client.patch(
                    Lease,
                    self.lease_name,
                    {"metadata": {"annotations": meta.annotations, "labels": meta.labels}, "spec": kube.to_plain(spec)},
                    namespace=self.namespace,
                    patch_type=PatchType.MERGE,
                )
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                await self.client.create(Lease(metadata=meta, spec=dataclasses.replace(spec, acquireTime=now)))
        except (ApiError, *TRANSIENT) as exc:
            self._renew_failures.failed(kube.explain(exc, self.namespace))
            return False
        self._renew_failures.ok()
        was_ok = self.lease_ok()
        self._renewed_until = started + self.renew_deadline
        if not was_ok:
            log.info("lease %s/%s renewed; announcing allowed", self.namespace, self.lease_name)
            metrics.fenced.set(0)
            self.changed.set()
            self.members.beat_now()
        return True

    async def _renew_loop(self) -> None:
        while True:
            await self._renew_once()
            await asyncio.sleep(self.renew_period)

    async def _fence_watch(self) -> None:
        """Go quiet as soon as the renew deadline passes without a renewal."""
        fenced = False
        while True:
            ok = self.lease_ok()
            if not ok and not fenced and self._renewed_until:
                log.error("cannot renew lease %s: announcing nothing until the API server answers", self.lease_name)
                metrics.fenced.set(1)
                if self.ready:
                    self.apply()  # quiet first...
                self.members.beat_now()  # ...then tell the others, who take over without waiting for our Lease
            fenced = not ok
            await asyncio.sleep(min(0.1, self.renew_period / 4))

    async def _link_watch(self, period: float = 5.0) -> None:
        """Interfaces come and go (a VLAN added, a NIC replaced): follow them."""
        while True:
            await asyncio.sleep(period)
            if self.announcer.resync_links():
                log.info("interfaces changed: now %s", ", ".join(sorted(self.announcer.links)) or "(none)")
                self._status_dirty.set()

    # -- the decision ----------------------------------------------------------------------------

    def _config(self) -> ConfigSnapshot:
        if self._parsed is None:
            self._parsed = build_config(
                pools=list(self.pools.items.values()), l2_advertisements=list(self.l2ads.items.values())
            )
            for ref, cond in self._parsed.problems().items():
                if ref.kind == "L2Advertisement":  # the controller reports it on the object; say why here too
                    log.warning("L2Advertisement %s: %s", ref.name, cond.message)
        return self._parsed

    def decide(self) -> dict[str, election.Announcement]:
        """The election's answer now (address -> owner); why this node may not announce the rest
        is left in ``self.not_eligible``."""
        config = self._config()
        endpoints = {
            svc: election.Endpoints(
                serving=any(e.serving for e in parts.values()),
                ready_nodes=frozenset().union(*(e.ready_nodes for e in parts.values())),
            )
            for svc, parts in self.endpoints.items()
        }
        nodes = {n.name: n for n in self.nodes.items.values()}
        live = self.live()
        metrics.live_speakers.set(len(live))
        inputs: dict[str, Any] = {
            "endpoints": endpoints,
            "nodes": nodes,
            "live": live,
            "ads": config.l2_advertisements,
            "pool_of": config.pool_of,
            "pool_labels": config.pool_labels,
        }
        services = list(self.services.items.values())
        self.not_eligible = election.why_not_eligible(services, self.node, **inputs)
        return election.elect(services, spread=self.spread, **inputs)

    def apply(self) -> None:
        """Bring the announcer in line with the election, handing over gently (handover.plan)."""
        now = time.monotonic()
        self.winners = self.decide()
        # forget what no longer matters: an address gone from every Service is probed again if it returns
        self.blocked = {ip: t for ip, t in self.blocked.items() if t > now and ip in self.winners}
        self.announced_once &= self.winners.keys() | self.current.keys()
        lease_ok = self.lease_ok()

        def last_claim(ip: str) -> handover.Claim | None:
            peer = self.members.last_claim(ip)
            return None if peer is None else handover.Claim(peer.node, peer.last_seen)

        step = handover.plan(
            me=self.node,
            winners=self.winners,
            not_eligible=self.not_eligible,
            current={ip: a.interfaces for ip, a in self.current.items()},
            lease_ok=lease_ok,
            now=now,
            releasing=self.releasing,
            blocked=self.blocked,
            probing=self.probing,
            announced_once=self.announced_once,
            probe_first=self.probe_first,
            handover_timeout=self.handover_timeout,
            last_claim=last_claim,
            alive=self.members.alive,
            claimed_by=self.members.claimed_by,
        )
        self.releasing = step.releasing
        for ip in step.probe:
            self._spawn(self._probe_then_take(ip, self.winners[ip]))
        for seconds in step.reannounce_after:
            metrics.reannounce_seconds.observe(seconds)
        self._report_states(step.states)
        mine = {ip: a for ip, a in self.winners.items() if a.node == self.node} if lease_ok else {}
        self._set(step.announce, mine)

    def _report_states(self, states: Mapping[str, str]) -> None:
        """Log each address whose state changed (why it is not announced, if it is not) and count
        addresses per state in onprem_lb_speaker_addresses{state}."""
        for ip, state in sorted(states.items()):
            before = self.states.get(ip)
            if before == state:
                continue
            quiet = state == handover.NOT_OWNER or (before is None and state == handover.ANNOUNCING)
            (log.debug if quiet else log.info)("%s: %s (was %s)", ip, state, before or "unknown")
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        for state in set(counts) | set(self._state_counts):
            metrics.address_states.labels(state=state).set(counts.get(state, 0))
        self._state_counts = counts
        self.states = dict(states)

    def _set(self, desired: Mapping[str, tuple[str, ...]], mine: Mapping[str, election.Announcement]) -> None:
        added, removed = self.announcer.set_owned(desired)
        for ip in added:
            if ip not in self.current:
                metrics.owner_changes.labels("taken").inc()
                self.announced_once.add(ip)
                log.info("announcing %s on %s", ip, ", ".join(self.announcer.interfaces_for(ip)) or "no interface")
        for ip in removed:
            metrics.owner_changes.labels("given_up").inc()
            log.info("stopped announcing %s", ip)
        new_current = {ip: mine.get(ip) or self.current[ip] for ip in desired}
        for ip, ann in new_current.items():
            if ip not in self.current:
                for svc in ann.services:
                    message = f'announcing from node "{self.node}" with protocol "layer2"'
                    self._event(svc, "Normal", "nodeAssigned", message)
        self.current = new_current
        metrics.owned_addresses.set(len(self.current))
        if added or removed:
            self.members.beat_now()
            self._status_dirty.set()
        if self.releasing:
            self._later(0.1)

    async def _probe_then_take(self, ip: str, ann: election.Announcement) -> None:
        self.probing.add(ip)
        try:
            other = await self.announcer.probe(ip, ann.interfaces)
        finally:
            self.probing.discard(ip)
        if other:
            metrics.conflicts.inc()
            self.blocked[ip] = time.monotonic() + 30.0
            log.warning("not announcing %s: host %s already answers for it", ip, other)
            for svc in ann.services:
                self._event(
                    svc,
                    "Warning",
                    "AddressConflict",
                    f"{ip} is already in use by another host (MAC {other}) on the network; not announced "
                    "from this node. Remove the address from that host or from the pool; retrying in 30 s",
                )
            self._later(30.0)
            return
        self.announced_once.add(ip)
        self.changed.set()

    def _later(self, delay: float) -> None:
        async def wake() -> None:
            await asyncio.sleep(delay)
            self.changed.set()

        self._spawn(wake())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- events and status -----------------------------------------------------------------------

    def _event(self, svc_key: str, kind: str, reason: str, message: str) -> None:
        ns, _, name = svc_key.partition("/")
        self.events.record({"namespace": ns, "name": name}, kind, reason, message)

    def _desired_statuses(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ip, ann in self.current.items():
            ifaces = self.announcer.interfaces_for(ip)
            for svc in ann.services:
                ns, _, name = svc.partition("/")
                key = status_name(svc, self.node)
                entry = out.setdefault(
                    key,
                    {
                        "labels": {NODE_LABEL: self.node, SVC_NAME_LABEL: name, SVC_NS_LABEL: ns},
                        "status": {"node": self.node, "serviceName": name, "serviceNamespace": ns, "interfaces": []},
                    },
                )
                names = {i["name"] for i in entry["status"]["interfaces"]} | set(ifaces)
                entry["status"]["interfaces"] = [{"name": n} for n in sorted(names)]
        return out

    async def _status_writer(self) -> None:
        """ServiceL2Status objects: ours for what we announce; stale ones of dead nodes removed."""
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            await asyncio.sleep(0.2)  # coalesce bursts
            if not self.lease_ok():
                continue
            try:
                await self._write_statuses()
            except (ApiError, *TRANSIENT) as exc:
                log.warning("writing ServiceL2Status failed (%s); retrying", getattr(exc, "status", exc))
                self._status_dirty.set()
                await asyncio.sleep(1.0)

    async def _write_statuses(self) -> None:
        desired = self._desired_statuses()
        live = self.live()
        mine_services = {(e["labels"][SVC_NS_LABEL], e["labels"][SVC_NAME_LABEL]) for e in desired.values()}
        for key, have in list(self.statuses.items.items()):
            name = have["name"]
            owner = have["labels"].get(NODE_LABEL)
            svc = (have["labels"].get(SVC_NS_LABEL), have["labels"].get(SVC_NAME_LABEL))
            stale_mine = owner == self.node and name not in desired
            stale_dead = owner != self.node and owner not in live and svc in mine_services
            if stale_mine or stale_dead:
                with contextlib.suppress(ApiError):
                    await self.client.delete(ServiceL2Status, name, namespace=self.namespace)
                self.statuses.items.pop(key, None)
        writes = [
            self._write_status(name, entry, self.statuses.items.get(f"{self.namespace}/{name}"))
            for name, entry in desired.items()
        ]
        limit = asyncio.Semaphore(8)  # a few requests in flight: 1,000 objects in seconds, not minutes

        async def bounded(write: Any) -> None:
            async with limit:
                await write

        results = await asyncio.gather(*(bounded(w) for w in writes), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    async def _write_status(self, name: str, entry: dict[str, Any], have: dict[str, Any] | None) -> None:
        if have is None:
            meta = ObjectMeta(name=name, namespace=self.namespace, labels=entry["labels"])
            obj = ServiceL2Status(metadata=meta, spec={})
            try:
                await self.client.create(obj)
            except ApiError as exc:
                if exc.status.code != 409:
                    raise
        if have is None or have["status"] != entry["status"]:
            await self.client.patch(
                ServiceL2Status.Status,
                name,
                {"status": entry["status"]},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )

    async def _delete_own_statuses(self) -> None:
        for have in list(self.statuses.items.values()):
            if have["labels"].get(NODE_LABEL) == self.node:
                with contextlib.suppress(ApiError, *TRANSIENT):
                    await self.client.delete(ServiceL2Status, have["name"], namespace=self.namespace)

    # -- main loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        informers = [self.services, self.slices, self.nodes, self.pools, self.l2ads, self.leases, self.statuses]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self.members, local_addr=self.heartbeat)
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.name}") for i in informers]
        tasks += [
            asyncio.create_task(self.members.run(), name="heartbeats"),
            asyncio.create_task(self._renew_loop(), name="lease"),
            asyncio.create_task(self._fence_watch(), name="fence"),
            asyncio.create_task(self.events.run(), name="events"),
            asyncio.create_task(self._status_writer(), name="status"),
            asyncio.create_task(self._link_watch(), name="links"),
        ]
        try:
            synced = asyncio.gather(*(i.synced.wait() for i in informers))
            await first(synced, *tasks, stop=stop)
            if stop.is_set():
                return
            # Hear the others before deciding anything, or we would claim what they announce.
            await first(asyncio.ensure_future(asyncio.sleep(self.members.dead_after)), *tasks, stop=stop)
            log.info(
                "speaker ready: %d services, %d live speakers (%s)",
                len(self.services.items),
                len(self.live()),
                ", ".join(sorted(self.live())),
            )
            self.ready = True
            gc.freeze()  # what start-up built stays; collections stay short (reply latency)
            self.changed.set()
            while not stop.is_set():
                waiter = asyncio.ensure_future(self.changed.wait())
                await first(waiter, *tasks, stop=stop)
                self.changed.clear()
                await asyncio.sleep(0.005)  # coalesce a burst of watch events into one decision
                self.changed.clear()
                self.apply()
            await self._hand_over()
        finally:
            for task in [*tasks, *self._tasks]:
                task.cancel()
            await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
            self.announcer.close()
            transport.close()

    async def _hand_over(self) -> None:
        """Planned stop: peers take our addresses first, then we go quiet and drop our Lease."""
        self.leaving = True
        owned = set(self.current)
        log.info("stopping: handing over %d addresses", len(owned))
        await self.members.leave()
        deadline = time.monotonic() + self.handover_timeout
        while owned and time.monotonic() < deadline:
            self.winners = self.decide()
            pending = {
                ip for ip in owned if ip in self.winners and self.winners[ip].node not in self.members.claimed_by(ip)
            }
            if not pending:
                break
            await asyncio.sleep(0.02)
        self.announcer.set_owned({})
        self.current = {}
        metrics.owned_addresses.set(0)
        await self._delete_own_statuses()
        with contextlib.suppress(ApiError, *TRANSIENT):
            await self.client.delete(Lease, self.lease_name, namespace=self.namespace)
        log.info("handed over; quiet")


def _plain(plain: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": plain.get("metadata") or {}, "spec": plain.get("spec") or {}}


def status_name(svc_key: str, node: str) -> str:
    """Deterministic ServiceL2Status name per (Service, node): one writer per object."""
    return "l2-" + hashlib.sha256(f"{svc_key}#{node}".encode()).hexdigest()[:16]
