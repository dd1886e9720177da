"""Active/standby through a coordination.k8s.io Lease (the client-go leader-election protocol).

A candidate takes the Lease when it is free, or when its record has not changed for a whole
lease duration by the candidate's own clock (no trust in other hosts' clocks). Updates carry
the resourceVersion read, so two candidates racing for one Lease cannot both win (409).
The holder may write only while ``is_leader()``: until ``renew_deadline`` after the start of
its last successful renewal, which is shorter than the lease duration others wait for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from onprem_lb.k8s.client import TRANSIENT, RepeatedFailure, explain

log = logging.getLogger("onprem_lb.leader")


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._valid_until = 0.0
        self._observed: tuple[str | None, str | None] = (None, None)
        self._observed_at = 0.0
        self._failures = RepeatedFailure(log, f"lease {namespace}/{name}")

    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def renewal_overdue(self, now: float | None = None) -> bool:
        """Leader, but the last renewal is more than half the renew deadline old: the renewals
        are stuck behind something (an API server busy with our own writes, say)."""
        now = time.monotonic() if now is None else now
        return now < self._valid_until and self._valid_until - now < self.renew_deadline / 2

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    async def _try(self) -> bool:
        """One attempt to acquire or renew. True when we hold the Lease afterwards."""
        started = time.monotonic()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            lease = Lease(
                metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(transitions=0, acquired=self._now()),
            )
            try:
                await self.client.create(lease)
            except ApiError as exc2:
                if exc2.status.code == 409:
                    return False
                raise
            self._valid_until = started + self.renew_deadline
            return True
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity
        record = (holder, str(spec.renewTime))
        if record != self._observed:
            self._observed, self._observed_at = record, started
        duration = float(spec.leaseDurationSeconds or self.lease_duration)
        free = not holder or started - self._observed_at >= duration
        if holder != self.identity and not free:
            return False
        transitions = int(spec.leaseTransitions or 0) + (0 if holder == self.identity else 1)
        acquired = spec.acquireTime if holder == self.identity and spec.acquireTime else self._now()
        lease.spec = self._spec(transitions=transitions, acquired=acquired)
        try:
            await self.client.replace(lease)  # carries metadata.resourceVersion: 409 if someone else wrote
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise
        self._valid_until = started + self.renew_deadline
        return True

    def _spec(self, *, transitions: int, acquired: dt.datetime) -> LeaseSpec:
        return LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=math.ceil(self.lease_duration),  # never shorter than ours
            acquireTime=acquired,
            renewTime=self._now(),
            leaseTransitions=transitions,
        )

    async def _attempt(self) -> bool:
        try:
            held = await self._try()
        except (ApiError, *TRANSIENT) as exc:
            self._failures.failed(explain(exc, self.namespace))
            return False
        self._failures.ok()
        return held

    async def acquire(self) -> None:
        """Wait until this candidate holds the Lease."""
        while not await self._attempt():
            await asyncio.sleep(self.retry_period)
        log.info("became leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)

    async def hold(self) -> None:
        """Renew until a renewal fails past the deadline; then return (leadership is lost)."""
        while True:
            await asyncio.sleep(self.retry_period)
            if await self._attempt():
                continue
            if not self.is_leader():
                log.error("lost the lease %s/%s; stopping all writes", self.namespace, self.name)
                return

    async def release(self) -> None:
        """Give the Lease up on a clean stop so a standby takes over at once."""
        if not self.is_leader():
            return
        self._valid_until = 0.0
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is not None and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.leaseDurationSeconds = 1
                await self.client.replace(lease)
        except (ApiError, *TRANSIENT) as exc:
            log.warning("could not release lease: %s", exc)
