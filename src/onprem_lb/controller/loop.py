"""The onprem-lb controller: addresses for LoadBalancer Services from the IPAddressPools.

One worker makes every decision, in queue order (the allocator is the single source of truth
while this process leads); the API writes of different Services overlap, a few at a time, and
are idempotent merge patches, retried with backoff. On start, and
on every new leadership term, the allocator is rebuilt from the addresses Services already
show in their status before anything new is allocated: a restart never moves an address.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Namespace, Service
from lightkube.types import PatchType

from onprem_lb import ipam, metallb_kinds, metrics
from onprem_lb.config import ConfigSnapshot, build_config, slim_object
from onprem_lb.controller.status import ConfigStatus
from onprem_lb.k8s import RESOURCES, TRANSIENT, EventRecorder, Informer, RepeatedFailure, explain
from onprem_lb.k8s.leader import LeaderElector
from onprem_lb.tasks import first

log = logging.getLogger("onprem_lb.controller")

COMPONENT = "onprem-lb-controller"
CONFIG_KEY = "\x00config"  # a queue entry that means "rebuild the configuration snapshot"
_PREFIXES = ipam.ANNOTATION_PREFIXES


class NotLeader(Exception):
    """A write was attempted without a valid lease: it is not sent."""


def _slim_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "creationTimestamp": str(meta.get("creationTimestamp") or ""),
        "labels": meta.get("labels") or {},
    }


def slim_service(plain: dict[str, Any]) -> dict[str, Any]:
    """The fields allocation reads, nothing else (10,000 Services must fit in little memory)."""
    meta = plain.get("metadata") or {}
    spec = plain.get("spec") or {}
    ingress = ((plain.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    local = spec.get("externalTrafficPolicy") == "Local"
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(_PREFIXES)}
    return {
        "metadata": {**_slim_meta(meta), "annotations": annotations},
        "spec": {
            "type": spec.get("type"),
            "loadBalancerClass": spec.get("loadBalancerClass"),
            "loadBalancerIP": spec.get("loadBalancerIP"),
            "ipFamilies": spec.get("ipFamilies") or [],
            "ipFamilyPolicy": spec.get("ipFamilyPolicy"),
            "externalTrafficPolicy": spec.get("externalTrafficPolicy"),
            "selector": (spec.get("selector") or {}) if local else {},
            "ports": [{"port": p.get("port"), "protocol": p.get("protocol") or "TCP"} for p in spec.get("ports") or []],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": e.get("ip")} for e in ingress if e.get("ip")]}},
    }


def namespace_labels(plain: dict[str, Any]) -> dict[str, str]:
    return dict((plain.get("metadata") or {}).get("labels") or {})


def _ips(svc: Mapping[str, Any]) -> list[str]:
    return [e["ip"] for e in svc["status"]["loadBalancer"]["ingress"]]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Controller:
    """One leadership term: informers, the allocator, the worker and the status writer."""

    def __init__(
        self,
        client: AsyncClient,
        elector: LeaderElector | None,
        *,
        namespace: str = "metallb-system",
        lb_class: str | None = None,
        identity: str = COMPONENT,
        status_interval: float = 1.0,
        max_writes: int = 8,
    ) -> None:
        self.client = client
        self.elector = elector
        self.namespace = namespace
        self.lb_class = lb_class or None
        self.identity = identity
        self.status_interval = status_interval
        self.max_writes = max_writes
        self.allocator = ipam.Allocator()
        self.snapshot = ConfigSnapshot()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.queued: set[str] = set()
        self.retries: dict[str, int] = {}
        self.last_event: dict[str, tuple[str, str]] = {}
        self.pending: set[str] = set()  # Services told AllocationFailed last (onprem_lb_controller_pending_services)
        self.status_dirty = True
        self._write_failures = RepeatedFailure(log, "writing a Service")
        self._status_failures = RepeatedFailure(log, "writing pool and advertisement status")
        # a few senders: in a burst every Service gets an Event, which must not trail far behind its status
        self.events = EventRecorder(client, COMPONENT, identity, may_write=self._may_write, senders=4, maxsize=10000)
        self.config_status = ConfigStatus(client, self.events, self._check_leader)
        self.ready = asyncio.Event()
        self.services: Informer[dict[str, Any]] = Informer(
            client, Service, slim_service, self._service_changed, name="services"
        )
        self.namespaces: Informer[dict[str, str]] = Informer(
            client, Namespace, namespace_labels, self._namespace_changed, namespace=None, name="namespaces"
        )

        # every configuration kind: the pools and advertisements, and what the advertisements
        # refer to (peers, community aliases) and the peers' BFD profiles
        self.config_kinds: dict[str, Informer[dict[str, Any]]] = {
            k.kind: Informer(
                client, RESOURCES[k.kind], slim_object, self._config_changed, namespace=namespace, name=k.plural
            )
            for k in metallb_kinds.CONFIG_KINDS
            if "controller" in k.readers
        }
        self.pools = self.config_kinds["IPAddressPool"]

    # -- queue -----------------------------------------------------------------------------------

    def enqueue(self, key: str) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    def _retry_later(self, key: str) -> None:
        attempt = self.retries.get(key, 0) + 1
        self.retries[key] = attempt
        delay = min(10.0, 0.05 * 2**attempt)
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)

    def _service_changed(self, key: str, _old: Any, _new: Any) -> None:
        self.enqueue(key)

    def _namespace_changed(self, name: str, old: Any, new: Any) -> None:
        if old is None or new is None or not self.ready.is_set():
            return  # labels only matter to existing Services; a new namespace has none yet
        for key in [k for k in self.services.items if k.startswith(name + "/")]:
            self.enqueue(key)

    def _config_changed(self, _key: str, _old: Any, _new: Any) -> None:
        self.enqueue(CONFIG_KEY)

    # -- writes (only while leading) -------------------------------------------------------------

    def _may_write(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def _check_leader(self) -> None:
        if self.elector is not None and not self.elector.is_leader():
            raise NotLeader("lease not held")

    async def _patch_service(self, svc: Mapping[str, Any], body: dict[str, Any], *, status: bool) -> Any:
        """The merge patch; returns the Service as the API server stored it."""
        self._check_leader()
        meta = svc["metadata"]
        return await self.client.patch(
            Service.Status if status else Service,
            meta["name"],
            body,
            namespace=meta["namespace"],
            patch_type=PatchType.MERGE,
        )

    async def _clear(self, svc: Mapping[str, Any], *, status: bool) -> None:
        """Take our marks off a Service: its ingress status (when asked) and the pool annotation."""
        if status:
            await self._patch_service(svc, {"status": {"loadBalancer": {"ingress": None}}}, status=True)
        if ipam.ALLOCATED_FROM_ANNOTATION in svc["metadata"]["annotations"]:
            await self._patch_service(
                svc, {"metadata": {"annotations": {ipam.ALLOCATED_FROM_ANNOTATION: None}}}, status=False
            )

    def _event(self, svc: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Record an Event on the Service (once per distinct reason and message)."""
        meta = svc["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if self.last_event.get(key) == (reason, message):
            return
        self._set_pending(key, reason == "AllocationFailed")
        self.last_event[key] = (reason, message)
        self.events.record(meta, kind, reason, message)

    def _set_pending(self, key: str, pending: bool) -> None:
        """Count the Services whose last word from us is that they get no address."""
        if pending:
            self.pending.add(key)
        else:
            self.pending.discard(key)
        metrics.pending_services.set(len(self.pending))

    # -- start-up --------------------------------------------------------------------------------

    def _rebuild_config(self) -> None:
        self.snapshot = build_config(
            **{metallb_kinds.BY_KIND[kind].config: list(i.items.values()) for kind, i in self.config_kinds.items()}
        )
        displaced = self.allocator.set_pools(self.snapshot.pools)
        self.allocator.ignored = self.snapshot.ignored_pools()
        metrics.config_problems.set(len(self.snapshot.problems()))
        for alloc in displaced:
            log.info("pool change takes %s from %s; allocating again", ", ".join(alloc.ips), alloc.service)
        self.status_dirty = True

    def _ours(self, svc: Mapping[str, Any]) -> bool:
        return ipam.handles(svc, self.lb_class)

    def restore(self) -> int:
        """Take back what Services already hold (oldest first) before allocating anything."""
        kept, warnings = ipam.restore_held(
            self.allocator, self.services.items.values(), self.namespaces.items, self.lb_class
        )
        for warning in warnings:
            log.warning("cannot keep a held address: %s", warning)
        return kept

    async def run(self) -> None:
        informers = [self.namespaces, *self.config_kinds.values(), self.services]
        tasks: list[asyncio.Future[Any]] = [asyncio.create_task(i.run(), name=f"informer-{i.name}") for i in informers]
        tasks.append(asyncio.create_task(self.events.run(), name="events"))
        try:
            started = time.monotonic()
            synced: asyncio.Future[Any] = asyncio.gather(*(i.synced.wait() for i in informers))
            await first(synced, *tasks)  # an informer or the event sender that dies says why: no hang
            self._rebuild_config()
            restored = self.restore()
            self.queued.discard(CONFIG_KEY)
            log.info(
                "state rebuilt: %d services, %d addresses kept, %d pools usable, in %.2f s",
                len(self.services.items),
                restored,
                len(self.snapshot.pools),
                time.monotonic() - started,
            )
            for key in list(self.services.items):
                self.enqueue(key)
            self.ready.set()
            tasks.append(asyncio.create_task(self._status_writer(), name="status"))
            worker = asyncio.create_task(self._worker(), name="worker")
            done, _ = await asyncio.wait([worker, *tasks], return_when=asyncio.FIRST_COMPLETED)
            tasks.append(worker)
            # the worker or the status writer returns when leadership is lost (the term ends); a
            # crashed task ends the term with its exception, logged by the caller
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- the worker ------------------------------------------------------------------------------

    async def _worker(self) -> None:
        """Decide in queue order, write concurrently.

        Each reconcile decides (allocates, in memory) before its first await, so decisions stay
        serial and in queue order while their API writes overlap, up to ``max_writes`` at once:
        a burst of Services costs one round trip of latency each, not the sum of all of them.
        One Service never has two reconciles in flight (a key that changes meanwhile is taken
        again when its write ends), so its writes cannot arrive out of order.
        """
        began, handled = time.monotonic(), [0]
        caught_up = False
        slots = asyncio.Semaphore(self.max_writes)
        inflight: dict[str, asyncio.Task[None]] = {}
        again: set[str] = set()
        lost = asyncio.Event()
        crashed: list[BaseException] = []

        def check_caught_up() -> None:
            nonlocal caught_up
            if not caught_up and self.queue.empty() and not inflight:
                caught_up = True
                log.info(
                    "caught up: %d queue entries handled for %d services in %.2f s",
                    handled[0],
                    len(self.services.items),
                    time.monotonic() - began,
                )

        def finished(key: str, task: asyncio.Task[None]) -> None:
            inflight.pop(key, None)
            slots.release()
            error = None if task.cancelled() else task.exception()
            if error is not None:
                if not isinstance(error, NotLeader):
                    crashed.append(error)  # a bug, not an API answer: end the term with it, as before
                lost.set()
            if key in again:
                again.discard(key)
                self.enqueue(key)
            check_caught_up()

        try:
            while not lost.is_set():
                check_caught_up()
                key = await _next_or(self.queue, lost)
                if key is None:
                    break
                handled[0] += 1
                self.queued.discard(key)
                if key == CONFIG_KEY:
                    self._rebuild_config()
                    for skey in list(self.services.items):
                        self.enqueue(skey)
                    continue
                if key in inflight:
                    again.add(key)
                    continue
                await slots.acquire()
                await self._let_the_renewal_through()
                task = asyncio.create_task(self._reconcile_logged(key))
                inflight[key] = task
                task.add_done_callback(functools.partial(finished, key))
                await asyncio.sleep(0)  # let it decide now, in queue order
        finally:
            for task in list(inflight.values()):
                task.cancel()
            await asyncio.gather(*inflight.values(), return_exceptions=True)
        if crashed:
            raise crashed[0]

    async def _let_the_renewal_through(self) -> None:
        """Start no write while the Lease renewal is overdue: our own burst of writes must not
        cost us the leadership (the renewal shares the API server's queue with them). Bounded:
        the wait ends when the Lease is renewed or lost."""
        if self.elector is None or not self.elector.renewal_overdue():
            return
        log.warning("lease renewal is late: holding Service writes until it is through")
        while self.elector.renewal_overdue():
            await asyncio.sleep(0.05)
        log.info("lease %s; Service writes go on", "renewed" if self.elector.is_leader() else "lost")

    async def _reconcile_logged(self, key: str) -> None:
        started = time.perf_counter()
        try:
            await self.reconcile(key)
            self.retries.pop(key, None)
        except (ApiError, *TRANSIENT) as exc:
            metrics.write_errors.inc()
            self._write_failures.failed(f"{key}: {explain(exc, key.partition('/')[0])}; will retry")
            self._retry_later(key)
        finally:
            metrics.reconcile_seconds.observe(time.perf_counter() - started)

    async def reconcile(self, key: str) -> None:
        svc = self.services.items.get(key)
        if svc is None:
            self.last_event.pop(key, None)
            self._set_pending(key, False)
            if self.allocator.release(key) is not None:
                metrics.releases.inc()
                self.status_dirty = True
                log.info("released the addresses of deleted service %s", key)
            return
        if not self._ours(svc):
            await self._not_ours(key, svc)
            return
        ns = svc["metadata"]["namespace"]
        try:
            req = ipam.request_from_service(svc, self.namespaces.items.get(ns))
            alloc = self.allocator.allocate(req)
        except ipam.IpamError as exc:
            await self._failed(key, svc, exc)
            return
        ips = alloc.ips
        annotation = {"metadata": {"annotations": {ipam.ALLOCATED_FROM_ANNOTATION: alloc.pool}}}
        pool_changed = svc["metadata"]["annotations"].get(ipam.ALLOCATED_FROM_ANNOTATION) != alloc.pool
        if _ips(svc) != ips:
            # One round trip for both: the API server keeps metadata written through /status (as
            # for every core type). Should one ever drop it, the annotation is written on its own.
            body: dict[str, Any] = {"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}
            if pool_changed:
                body.update(annotation)
            stored = await self._patch_service(svc, body, status=True)
            stored_meta = getattr(stored, "metadata", None)
            kept = (getattr(stored_meta, "annotations", None) or {}).get(ipam.ALLOCATED_FROM_ANNOTATION)
            if pool_changed and kept != alloc.pool:
                await self._patch_service(svc, annotation, status=False)
        elif pool_changed:
            await self._patch_service(svc, annotation, status=False)
        if _ips(svc) != ips:
            metrics.allocations.inc()
            self.status_dirty = True
            log.info("assigned %s to %s from pool %s", ", ".join(ips), key, alloc.pool)
            self._event(svc, "Normal", "IPAllocated", f"Assigned IP {json.dumps(ips)} from pool {alloc.pool}")

    async def _failed(self, key: str, svc: Mapping[str, Any], exc: ipam.IpamError) -> None:
        reason = exc.reason
        message = f"{reason}: {exc}"
        if self.last_event.get(key) != ("AllocationFailed", message):
            metrics.allocation_errors.labels(reason=reason).inc()
        had = self.allocator.release(key)
        self.status_dirty = self.status_dirty or had is not None
        await self._clear(svc, status=bool(_ips(svc)))
        log.warning("no address for %s: %s", key, exc)
        self._event(svc, "Warning", "AllocationFailed", message)

    async def _not_ours(self, key: str, svc: Mapping[str, Any]) -> None:
        self._set_pending(key, False)
        released = self.allocator.release(key)
        if released is None:
            return
        metrics.releases.inc()
        self.status_dirty = True
        why = (
            f"type is now {svc['spec'].get('type')}"
            if svc["spec"].get("type") != "LoadBalancer"
            else f"loadBalancerClass is {svc['spec'].get('loadBalancerClass')!r}, not ours"
        )
        log.info("released %s from %s: %s", ", ".join(released.ips), key, why)
        # Another class's status is that controller's to write; a non-LoadBalancer one is stale.
        await self._clear(svc, status=svc["spec"].get("type") != "LoadBalancer" and bool(_ips(svc)))
        self._event(svc, "Normal", "IPReleased", f"Released IP {json.dumps(released.ips)}: {why}")

    # -- pool and advertisement status -----------------------------------------------------------

    async def _status_writer(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval)
            if not self.status_dirty:
                continue
            self.status_dirty = False
            try:
                await self.config_status.write(self._config_objects(), self.snapshot, self.allocator)
            except NotLeader:
                return
            except (ApiError, *TRANSIENT) as exc:
                metrics.write_errors.inc()
                self.status_dirty = True
                self._status_failures.failed(explain(exc, self.namespace))
            else:
                self._status_failures.ok()

    def _config_objects(self) -> list[tuple[str, Any, dict[str, Any]]]:
        """(kind, its resource if it has a status the controller writes, else None, object) for
        every configuration object (a kind without a status is told of problems by Events only)."""
        return [
            (kind, RESOURCES[kind] if metallb_kinds.BY_KIND[kind].status else None, o)
            for kind, informer in self.config_kinds.items()
            for o in informer.items.values()
        ]


async def _next_or(queue: asyncio.Queue[str], lost: asyncio.Event) -> str | None:
    """The next queue entry, or None once ``lost`` is set (leadership gone)."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    waiter = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait([getter, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if getter.done():
        return getter.result()
    getter.cancel()
    return None


async def run_controller(
    client: AsyncClient,
    elector: LeaderElector,
    *,
    namespace: str,
    lb_class: str | None,
    stop: asyncio.Event,
    max_writes: int = 8,
) -> None:
    """Lead, or wait to lead; run one Controller per leadership term; stop cleanly on ``stop``."""
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            acquire = asyncio.create_task(elector.acquire())
            await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
                break
            metrics.is_leader.set(1)
            ctl = Controller(
                client,
                elector,
                namespace=namespace,
                lb_class=lb_class,
                identity=elector.identity,
                max_writes=max_writes,
            )
            term = asyncio.create_task(ctl.run(), name="controller")
            hold = asyncio.create_task(elector.hold(), name="lease")
            done, _pending = await asyncio.wait({term, hold, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (term, hold):
                task.cancel()
            results = await asyncio.gather(term, hold, return_exceptions=True)
            metrics.is_leader.set(0)
            if (
                term in done
                and isinstance(results[0], BaseException)
                and not isinstance(results[0], asyncio.CancelledError)
            ):
                raise results[0]
            log.info("leadership term ended; standing by")
    finally:
        stopping.cancel()
        await elector.release()
