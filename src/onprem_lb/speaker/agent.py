"""`onprem-lb speaker`: the agent. It owns the caches (Services, EndpointSlices, Nodes, the
metallb.io objects, speaker Leases), the config snapshot, this speaker's Lease and the loop, and
hands one View to each announcing protocol (speaker/protocol.py) whenever something changes.

Its Lease ``speaker-<node>`` is the authority on whether this speaker may announce while the API
server answers: renewed every renew period. When no renewal has succeeded for half the renew
deadline the speaker is in *membership mode* (layer 2 watches every speaker it last knew, and
who is heard decides who is live); when the renew deadline passes, the speaker either holds by
membership - keeps announcing what the election over the heartbeats gives it, while it hears a
majority of the speakers it last knew and none of them still reaches the API
(speaker/layer2/quorum.py has the rule and why it never gives two owners) - or is fenced
(announces nothing) until the API server answers again. Membership mode lasts a Lease duration
past the API's return, until every live peer's renewal has been seen again, so no address moves
when the API comes back. On SIGTERM each protocol hands over, then the Lease is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from onprem_lb import address_states, k8s, metallb_kinds, metrics
from onprem_lb.config import ConfigSnapshot, build_config, slim_object
from onprem_lb.k8s import RESOURCES, TRANSIENT, Informer
from onprem_lb.speaker import view as views
from onprem_lb.speaker.layer2 import quorum
from onprem_lb.speaker.protocol import Announcing
from onprem_lb.tasks import first

log = logging.getLogger("onprem_lb.speaker")
COMPONENT = "onprem-lb-speaker"
SPEAKER_LABEL = "app.kubernetes.io/component"


class Speaker:
    def __init__(
        self,
        client: AsyncClient,
        *,
        node: str,
        namespace: str,
        lb_class: str | None = None,
        lease_duration: float = 10.0,
        renew_deadline: float = 6.0,
        renew_period: float = 2.0,
        bgp: bool = False,
    ) -> None:
        if not renew_period < renew_deadline < lease_duration:
            raise ValueError("need renew period < renew deadline < lease duration")
        self.client = client
        self.node = node
        self.namespace = namespace
        self.lb_class = lb_class
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.renew_period = renew_period
        self.protocols: list[Announcing] = []
        self.lease_name = f"speaker-{node}"
        self._renewed_until = 0.0  # monotonic deadline from the last successful renewal
        self._last_renewal = 0.0  # monotonic start of the last successful renewal
        self._api_back_at = 0.0  # when renewals succeeded again after membership mode
        self._hold: Callable[[], quorum.Hold] = lambda: quorum.decide(self.node, None, (), ())
        self.authority = ""
        self._membership_was = False  # "lease", "holding" or the reason it is quiet (logged on change)
        self._renew_failures = k8s.RepeatedFailure(log, f"renewing lease {self.lease_name}")
        self._lease_seen: dict[str, tuple[str, float, float]] = {}  # node -> (renewTime, observed at, duration)
        self.ready = False
        self.changed = asyncio.Event()
        self.events = k8s.EventRecorder(client, COMPONENT, node, host=node)
        self.services = Informer(client, Service, self._convert_service, self._touch, name="services")
        self.slices: Informer[tuple[str, views.Endpoints]] = Informer(
            client, EndpointSlice, self._convert_slice, self._slice_changed, name="endpointslices"
        )
        self.nodes = Informer(client, Node, views.node_state, self._touch, namespace=None, name="nodes")
        # the configuration kinds a speaker reads: BGP mode reads the rest of them (layer 2 alone
        # does not watch them)
        readers = {"speaker", "bgp speaker"} if bgp else {"speaker"}
        self.config_kinds: dict[str, Informer[dict[str, Any]]] = {
            k.kind: Informer(
                client, RESOURCES[k.kind], slim_object, self._config_changed, namespace=namespace, name=k.plural
            )
            for k in metallb_kinds.CONFIG_KINDS
            if readers & set(k.readers)
        }
        self._parsed: ConfigSnapshot | None = None
        self.leases = Informer(client, Lease, self._convert_lease, self._touch, namespace=namespace, name="leases")
        self.endpoints: dict[str, dict[str, views.Endpoints]] = {}  # service -> slice -> summary

    def add(self, protocol: Announcing) -> None:
        self.protocols.append(protocol)

    def hold_by(self, decide: Callable[[], quorum.Hold]) -> None:
        """Who decides whether this speaker holds by membership once its Lease is not renewed
        (layer 2, which hears the other speakers); without one it is fenced then."""
        self._hold = decide

    # -- caches ----------------------------------------------------------------------------------

    def _touch(self, *_args: Any) -> None:
        self.changed.set()

    def _config_changed(self, *_args: Any) -> None:
        self._parsed = None  # parsed again on the next decision, not on every lease renewal
        self.changed.set()

    def _convert_service(self, plain: dict[str, Any]) -> views.ServiceState | None:
        return views.service_state(plain, self.lb_class)

    def _convert_slice(self, plain: dict[str, Any]) -> tuple[str, views.Endpoints] | None:
        meta = plain.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            return None
        return f"{meta.get('namespace')}/{svc}", views.endpoints_from_slices([plain])

    def _slice_changed(self, key: str, old: Any, new: Any) -> None:
        if old is not None:
            parts = self.endpoints.get(old[0], {})
            parts.pop(key, None)
            if not parts:  # the Service's last slice went: forget it (no growth with Services ever seen)
                self.endpoints.pop(old[0], None)
        if new is not None:
            self.endpoints.setdefault(new[0], {})[key] = new[1]
        self.changed.set()

    def _convert_lease(self, plain: dict[str, Any]) -> dict[str, Any] | None:
        meta = plain.get("metadata") or {}
        if (meta.get("labels") or {}).get(SPEAKER_LABEL) != "speaker":
            return None
        spec = plain.get("spec") or {}
        return {
            "node": spec.get("holderIdentity") or "",
            "renew": str(spec.get("renewTime") or ""),
            "duration": float(spec.get("leaseDurationSeconds") or self.lease_duration),
            # what the protocols publish for each other (the heartbeat address); not the address
            # states, which are for `onprem-lb status` and only weigh on the cache
            "annotations": {
                k: v for k, v in (meta.get("annotations") or {}).items() if k not in address_states.ANNOTATIONS.values()
            },
        }

    def _config(self) -> ConfigSnapshot:
        if self._parsed is None:
            self._parsed = build_config(
                **{metallb_kinds.BY_KIND[kind].config: list(i.items.values()) for kind, i in self.config_kinds.items()}
            )
            for ref, cond in self._parsed.problems().items():
                if ref.kind != "IPAddressPool":  # the controller reports it on the object; say why here too
                    log.warning("%s %s: %s", ref.kind, ref.name, cond.message)
        return self._parsed

    def view(self) -> views.View:
        """Everything the protocols decide from, now."""
        now = time.monotonic()
        seen: dict[str, tuple[str, float, float]] = {}
        annotations: dict[str, dict[str, str]] = {}
        for lease in self.leases.items.values():
            node = lease["node"]
            if not node or node == self.node:
                continue
            before = self._lease_seen.get(node)
            observed = before[1] if before and before[0] == lease["renew"] else now
            seen[node] = (lease["renew"], observed, lease["duration"])
            annotations[node] = lease["annotations"]
        self._lease_seen = seen
        lease_ok = self.lease_ok()
        hold = quorum.Hold(False, "", 0, 0) if lease_ok else self._hold()
        return views.View(
            node=self.node,
            config=self._config(),
            services=tuple(self.services.items.values()),
            endpoints={
                svc: views.Endpoints(
                    serving=any(e.serving for e in parts.values()),
                    ready_nodes=frozenset().union(*(e.ready_nodes for e in parts.values())),
                )
                for svc, parts in self.endpoints.items()
            },
            nodes={n.name: n for n in self.nodes.items.values()},
            may_announce=lease_ok or hold.holds,
            lease_ok=lease_ok,
            membership=self.membership_mode(),
            api_recent=self.api_recent(),
            quiet_reason="" if lease_ok or hold.holds else hold.reason,
            leased=frozenset(n for n, (_r, at, duration) in seen.items() if now < at + duration),
            lease_annotations=annotations,
        )

    def apply(self) -> None:
        current = self.view()
        for protocol in self.protocols:
            protocol.apply(current)

    # -- this speaker's Lease --------------------------------------------------------------------

    def lease_ok(self) -> bool:
        return time.monotonic() < self._renewed_until

    def api_recent(self) -> bool:
        """The last renewal succeeded within half the renew deadline: the API server answers."""
        return self._last_renewal > 0 and time.monotonic() - self._last_renewal < self.renew_deadline / 2

    def membership_mode(self) -> bool:
        """The API cannot be trusted to say who is live: it does not answer, or it came back less
        than a Lease duration ago (the peers' renewals are not all seen yet)."""
        return not self.api_recent() or time.monotonic() < self._api_back_at + self.lease_duration

    async def _renew_once(self) -> bool:
        started = time.monotonic()
        now = dt.datetime.now(dt.timezone.utc)
        annotations: dict[str, str] = {}
        for protocol in self.protocols:
            annotations.update(protocol.lease_annotations())
        meta = ObjectMeta(
            name=self.lease_name,
            namespace=self.namespace,
            labels={SPEAKER_LABEL: "speaker", "app.kubernetes.io/name": "onprem-lb"},
            annotations=annotations,
        )
        spec = LeaseSpec(holderIdentity=self.node, leaseDurationSeconds=math.ceil(self.lease_duration), renewTime=now)
        try:
            try:
                # bounded by the renew deadline: a hung API server (frozen, or a blackholed route)
                # must not hold the next attempts back for the client's read timeout
                await asyncio.wait_for(
                    self.client.patch(
                        Lease,
                        self.lease_name,
                        {
                            "metadata": {"annotations": meta.annotations, "labels": meta.labels},
                            "spec": k8s.to_plain(spec),
                        },
                        namespace=self.namespace,
                        patch_type=PatchType.MERGE,
                    ),
                    self.renew_deadline,
                )
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                await self.client.create(Lease(metadata=meta, spec=dataclasses.replace(spec, acquireTime=now)))
        except asyncio.TimeoutError:
            self._renew_failures.failed(f"no answer from the API server within {self.renew_deadline:g} s")
            return False
        except (ApiError, *TRANSIENT) as exc:
            self._renew_failures.failed(k8s.explain(exc, self.namespace))
            return False
        self._renew_failures.ok()
        if self._last_renewal and not self.api_recent():
            self._api_back_at = started
        self._last_renewal = started
        self._renewed_until = started + self.renew_deadline
        self._watch_authority()
        return True

    async def _renew_loop(self) -> None:
        while True:
            await self._renew_once()
            await asyncio.sleep(self.renew_period)

    def _watch_authority(self) -> None:
        """Follow what this speaker announces by: its Lease, membership, or nothing (and why)."""
        if self.lease_ok():
            now = "lease"
        else:
            hold = self._hold()
            now = "holding" if hold.holds else hold.reason
        membership = self.membership_mode()
        if (now, membership) == (self.authority, self._membership_was):
            return
        before, self.authority, self._membership_was = self.authority, now, membership
        metrics.fenced.set(int(now not in ("lease", "holding")))
        metrics.holding.set(int(now == "holding"))
        if now != before and before:
            if now == "lease":
                log.info("lease %s/%s renewed; announcing by Lease", self.namespace, self.lease_name)
            elif now == "holding":
                log.warning(
                    "cannot renew lease %s and no speaker heard reaches the API server: holding by membership "
                    "(%s); new Services and config changes wait for the API",
                    self.lease_name,
                    self._hold().describe(),
                )
            else:
                log.error("cannot renew lease %s: announcing nothing (%s)", self.lease_name, self._hold().describe())
        self.changed.set()
        if self.ready:
            self.apply()  # the protocols follow at once (going quiet first, then telling their peers)

    async def _fence_watch(self) -> None:
        """Notice the renew deadline passing, and the membership's verdict changing."""
        while True:
            if self._last_renewal:
                self._watch_authority()
            await asyncio.sleep(min(0.1, self.renew_period / 4))

    # -- the loop --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        informers: list[Informer[Any]] = [self.services, self.slices, self.nodes, *self.config_kinds.values()]
        informers.append(self.leases)
        for protocol in self.protocols:
            informers += protocol.informers()
        for protocol in self.protocols:
            await protocol.start(self.changed.set)
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.name}") for i in informers]
        tasks += [
            asyncio.create_task(self._renew_loop(), name="lease"),
            asyncio.create_task(self._fence_watch(), name="fence"),
            asyncio.create_task(self.events.run(), name="events"),
        ]
        tasks += [asyncio.create_task(p.run(self.view), name=p.name) for p in self.protocols]
        try:
            synced = asyncio.gather(*(i.synced.wait() for i in informers))
            await first(synced, *tasks, stop=stop)
            if stop.is_set():
                return
            prepared = asyncio.gather(*(p.prepare(self.view()) for p in self.protocols))
            await first(prepared, *tasks, stop=stop)
            if stop.is_set():
                return
            log.info("speaker ready: %d services", len(self.services.items))
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
            await self._stop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for protocol in self.protocols:
                protocol.close()

    async def _stop(self) -> None:
        """Planned stop: every protocol hands over, then the Lease goes."""
        await asyncio.gather(*(p.stop(self.view) for p in self.protocols))
        with contextlib.suppress(ApiError, *TRANSIENT):  # without the API, the Lease runs out instead
            await asyncio.wait_for(
                self.client.delete(Lease, self.lease_name, namespace=self.namespace), self.renew_deadline
            )
        log.info("handed over; quiet")
