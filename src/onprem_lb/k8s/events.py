"""Events: queued by the loops, sent in the background."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from onprem_lb.k8s.client import TRANSIENT

log = logging.getLogger("onprem_lb.k8s")


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
        name, namespace = str(involved.get("name")), involved.get("namespace") or None
        event = Event(
            # an object of no namespace (a Node) has its Events in "default", as kubectl looks
            metadata=ObjectMeta(generateName=f"{name}.", namespace=namespace or "default"),
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
