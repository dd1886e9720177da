"""A list+watch cache of one resource kind (see the package docstring for the rules)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx
from lightkube import ApiError, AsyncClient

from onprem_lb.k8s.client import TRANSIENT, RepeatedFailure, explain, key_of, to_plain

log = logging.getLogger("onprem_lb.k8s")

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
