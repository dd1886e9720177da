"""Kubernetes access for the engine: client set-up, the metallb.io resources, list+watch caches.

All HTTP goes through lightkube. An Informer keeps a local copy of one resource: it lists,
then watches from the list's resourceVersion; a 410 Gone (history compacted) relists and
reports what changed meanwhile; a dropped connection or an API server restart resumes the
watch from the last version seen, with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import httpx
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ConfigError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from .kubeconfig import kubeconfig_problem

log = logging.getLogger("onprem_lb.kube")

GROUP = "metallb.io"
IPAddressPool = create_namespaced_resource(GROUP, "v1beta1", "IPAddressPool", "ipaddresspools")
L2Advertisement = create_namespaced_resource(GROUP, "v1beta1", "L2Advertisement", "l2advertisements")
BGPAdvertisement = create_namespaced_resource(GROUP, "v1beta1", "BGPAdvertisement", "bgpadvertisements")
BGPPeer = create_namespaced_resource(GROUP, "v1beta2", "BGPPeer", "bgppeers")
Community = create_namespaced_resource(GROUP, "v1beta1", "Community", "communities")
BFDProfile = create_namespaced_resource(GROUP, "v1beta1", "BFDProfile", "bfdprofiles")
ServiceL2Status = create_namespaced_resource(GROUP, "v1beta1", "ServiceL2Status", "servicel2statuses")

# Errors that mean "the API server is not reachable right now": retry, never crash.
TRANSIENT = (httpx.TransportError, OSError, asyncio.TimeoutError)


class KubeAccessError(Exception):
    """No usable cluster credentials; the message says where we looked."""


def explain(exc: BaseException, namespace: str | None = None) -> str:
    """An API or transport failure in one line: the real cause and what to change (never a raw
    ``Status(...)``)."""
    code: int | None = None
    message = ""
    status = getattr(exc, "status", None)
    if isinstance(exc, ApiError) and status is not None:
        code, message = status.code, str(status.message or status.reason or "")
    elif isinstance(exc, httpx.HTTPStatusError):
        code, message = exc.response.status_code, exc.response.reason_phrase
    if code == 401:
        return (
            "the API server refused our credentials (HTTP 401 Unauthorized): the token or client certificate in"
            " the kubeconfig is wrong, expired or for another cluster; check --kubeconfig"
        )
    if code == 403:
        return (
            f"forbidden (HTTP 403): {message}; this identity lacks the RBAC for it (the onprem.ingress.lb_controller"
            " role grants what the engine needs)"
        )
    if code == 404 and namespace and "namespaces" in message:
        return f"namespace {namespace} does not exist (HTTP 404); create it, or pass --namespace with the right one"
    if code is not None:
        return f"HTTP {code}: {message or 'no message'}"
    text = str(exc) or type(exc).__name__
    return f"cannot reach the API server ({text}); check the server URL in the kubeconfig and the network"


class RepeatedFailure:
    """Logs a failure that repeats (a retry loop) with growing gaps: the first at once, then at
    most once per 2 s, 4 s, ... up to 5 minutes, saying how many were not logged; a different
    message is logged at once. ``ok()`` logs the recovery."""

    def __init__(self, logger: logging.Logger, what: str, ceiling: float = 300.0) -> None:
        self.logger, self.what, self.ceiling = logger, what, ceiling
        self.count = 0
        self.silenced = 0
        self.last_text = ""
        self.next_at = 0.0
        self.gap = 2.0

    def failed(self, text: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.count += 1
        changed = text != self.last_text
        if changed or now >= self.next_at:
            more = f" ({self.silenced} more since the last message)" if self.silenced and not changed else ""
            self.logger.warning("%s: %s%s", self.what, text, more)
            self.gap = 2.0 if changed else min(self.ceiling, self.gap * 2)
            self.last_text, self.next_at, self.silenced = text, now + self.gap, 0
        else:
            self.silenced += 1

    def ok(self) -> None:
        if self.count:
            self.logger.info("%s: works again after %d failure(s)", self.what, self.count)
        self.count, self.silenced, self.last_text, self.next_at, self.gap = 0, 0, "", 0.0, 2.0


def load_config(kubeconfig: str | None, context: str | None = None) -> SingleConfig:
    """kubeconfig file (flag, then KUBECONFIG), else the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    source = "--kubeconfig" if kubeconfig else "$KUBECONFIG"
    try:
        if path:
            problem = kubeconfig_problem(path, context)
            if problem:
                raise KubeAccessError(f"kubeconfig {path} ({source}): {problem}")
            single = KubeConfig.from_file(path).get(context_name=context)
        else:
            single = KubeConfig.from_service_account().get()
    except (ConfigError, KeyError, ValueError, OSError, AttributeError, TypeError, yaml.YAMLError) as exc:
        where = path or "the in-cluster service account"
        raise KubeAccessError(f"cannot use {where}: {exc}; pass --kubeconfig PATH (and --context NAME)") from None
    if single is None:
        raise KubeAccessError(f"{path}: no context to use; set current-context or pass --context NAME")
    return single


def make_client(config: SingleConfig, field_manager: str) -> AsyncClient:
    # trust_env=False: never route API traffic through proxy variables of the host.
    return AsyncClient(
        config=config, field_manager=field_manager, trust_env=False, timeout=httpx.Timeout(15.0, read=330.0)
    )


async def close_client(client: AsyncClient) -> None:
    await client.close()  # type: ignore[no-untyped-call]  # (lightkube 0.x has no annotation here)


def key_of(meta: Mapping[str, Any]) -> str:
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def to_plain(obj: Any) -> dict[str, Any]:
    """A lightkube object (model or generic resource) as plain dicts and lists."""
    return obj.to_dict()  # type: ignore[no-any-return]


T = TypeVar("T")


class Informer(Generic[T]):
    """A list+watch cache of one resource kind.

    ``convert`` turns an API object into what is kept (None: skip it); ``on_change(key, old,
    new)`` is called for every add (old None), update and delete (new None), including the
    differences a relist finds.
    """

    def __init__(
        self,
        client: AsyncClient,
        resource: Any,
        convert: Callable[[dict[str, Any]], T | None],
        on_change: Callable[[str, T | None, T | None], None],
        *,
        namespace: str | None = "*",
        name: str = "",
        page_size: int = 500,
    ) -> None:
        self.client = client
        self.resource = resource
        self.convert = convert
        self.on_change = on_change
        self.namespace = namespace
        self.name = name or resource.__name__
        self.page_size = page_size
        self.items: dict[str, T] = {}
        self.synced = asyncio.Event()
        self.relists = 0
        self._failures = RepeatedFailure(log, f"watch of {self.name}")

    async def _relist(self) -> str:
        listing = self.client.list(self.resource, namespace=self.namespace, chunk_size=self.page_size)
        fresh: dict[str, T] = {}
        async for obj in listing:
            plain = to_plain(obj)
            item = self.convert(plain)
            if item is not None:
                fresh[key_of(plain.get("metadata") or {})] = item
        old = self.items
        self.items = fresh
        self.relists += 1
        for key in old.keys() - fresh.keys():
            self.on_change(key, old[key], None)
        for key, item in fresh.items():
            if old.get(key) != item:
                self.on_change(key, old.get(key), item)
        return str(listing.resourceVersion)

    def _apply(self, kind: str, plain: dict[str, Any]) -> None:
        key = key_of(plain.get("metadata") or {})
        old = self.items.get(key)
        if kind == "DELETED":
            if key in self.items:
                del self.items[key]
                self.on_change(key, old, None)
            return
        item = self.convert(plain)
        if item is None:
            if key in self.items:
                del self.items[key]
                self.on_change(key, old, None)
            return
        if old != item:
            self.items[key] = item
            self.on_change(key, old, item)

    async def run(self) -> None:
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._relist()
                    self.synced.set()
                    log.debug("listed %s: %d objects at version %s", self.name, len(self.items), version)
                stream = self.client.watch(self.resource, namespace=self.namespace, resource_version=version)
                async for kind, obj in stream:
                    if failures:
                        self._failures.ok()
                    failures = 0
                    plain = to_plain(obj)
                    version = str((plain.get("metadata") or {}).get("resourceVersion") or version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._apply(kind, plain)
            except ApiError as exc:
                if exc.status.code == 410:
                    log.info("watch of %s expired (410 Gone); listing again", self.name)
                    version = None
                    continue
                failures += 1
                self._failures.failed(explain(exc, self.namespace))
            except httpx.HTTPStatusError as exc:
                # lightkube raises this (not ApiError) when the watch request itself is refused,
                # e.g. 429 while a freshly started apiserver's watch cache is still warming up.
                code = exc.response.status_code
                if code == 410:
                    log.info("watch of %s expired (410 Gone); listing again", self.name)
                    version = None
                    continue
                failures += 1
                self._failures.failed(explain(exc, self.namespace) + "; retrying")
            except TRANSIENT as exc:
                failures += 1
                self._failures.failed(explain(exc))
            # Capped exponential backoff with jitter: 0.2 s, 0.4 s, ... up to 5 s.
            await asyncio.sleep(min(5.0, 0.1 * 2**failures) * (0.5 + random.random() / 2))  # noqa: S311


class EventRecorder:
    """Events about objects, queued by the loops and sent by a few background senders: the one way
    the engine records Events. A full queue drops the newest with a warning (Events are for
    people; a decision never waits on one); ``may_write`` is asked before each send (the
    controller sends only while it leads)."""

    def __init__(
        self,
        client: AsyncClient,
        component: str,
        instance: str,
        *,
        host: str | None = None,
        may_write: Callable[[], bool] = lambda: True,
        senders: int = 1,
        maxsize: int = 1000,
    ) -> None:
        self.client = client
        self.component = component
        self.instance = instance
        self.host = host
        self.may_write = may_write
        self.senders = senders
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)

    def record(
        self,
        involved: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        kind: str = "Service",
        api_version: str = "v1",
    ) -> None:
        """Queue an Event on the object whose metadata is ``involved`` (name, namespace, uid)."""
        now = dt.datetime.now(dt.timezone.utc)
        name, namespace = str(involved.get("name")), str(involved.get("namespace"))
        event = Event(
            metadata=ObjectMeta(generateName=f"{name}.", namespace=namespace),
            involvedObject=ObjectReference(
                kind=kind, apiVersion=api_version, name=name, namespace=namespace, uid=involved.get("uid")
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            source=EventSource(component=self.component, host=self.host),
            reportingComponent=self.component,
            reportingInstance=self.instance,
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
        )
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("event queue full; dropped %s event for %s/%s", reason, namespace, name)

    async def _send(self) -> None:
        while True:
            event = await self.queue.get()
            if not self.may_write():
                log.debug("not recording event %s: not allowed to write now", event.reason)
                continue
            try:
                await self.client.create(event)
            except (ApiError, *TRANSIENT) as exc:
                log.warning("could not record event %s: %s", event.reason, getattr(exc, "status", exc))

    async def run(self) -> None:
        """Send until cancelled."""
        await asyncio.gather(*(self._send() for _ in range(self.senders)))
