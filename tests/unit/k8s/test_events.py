"""k8s/events.py: what the EventRecorder queues for an object, what it drops when the queue is
full, and what its background senders do with each Event (``may_write`` gating, failures).

The senders are driven with a stand-in client that records ``create`` calls; the recorder uses
no other client method. That the Events reach a real API server (and carry the writer's name) is
covered by tests/integration/test_controller.py (IPAllocated events written only by the lease
holder) and tests/e2e/test_l2_speaker.py (nodeAssigned and AddressConflict events).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from lightkube import ApiError
from lightkube.resources.core_v1 import Event

from onprem_lb.k8s.client import to_plain
from onprem_lb.k8s.events import EventRecorder

SERVICE = {"name": "web", "namespace": "apps", "uid": "0b5c-uid"}


class RecordingClient:
    """Stands in for lightkube's AsyncClient: keeps each created Event; ``fail`` gives, per call,
    an exception to raise instead (None: accept)."""

    def __init__(self, fail: list[BaseException | None] | None = None) -> None:
        self.created: list[Event] = []
        self.calls = 0
        self.fail = list(fail or [])
        self.gate: asyncio.Event | None = None  # when set: each create waits for it
        self.in_flight = 0
        self.most_in_flight = 0

    async def create(self, obj: Event) -> Event:
        self.calls += 1
        error = self.fail.pop(0) if self.fail else None
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if error is not None:
                raise error
            self.created.append(obj)
            return obj
        finally:
            self.in_flight -= 1


def recorder(client: RecordingClient, **kwargs: Any) -> EventRecorder:
    return EventRecorder(client, "onprem-lb-speaker", "n1", **kwargs)  # type: ignore[arg-type]  # only create is called


async def settle(done: Callable[[], bool], rounds: int = 200) -> None:
    """Let the senders run until ``done()`` (no timers: each round is one pass of the loop)."""
    for _ in range(rounds):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the senders did not get there")


def run_senders(rec: EventRecorder, scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        task = asyncio.create_task(rec.run())
        try:
            await scenario()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def api_error(code: int) -> ApiError:
    return ApiError(status={"kind": "Status", "code": code, "message": f"HTTP {code} from the test"})


# -- what record() queues ------------------------------------------------------------------------


def test_an_event_names_the_object_the_writer_and_the_time() -> None:
    rec = EventRecorder(RecordingClient(), "onprem-lb-controller", "ctl-a", host="node-7")  # type: ignore[arg-type]
    before = dt.datetime.now(dt.UTC)
    rec.record(SERVICE, "Normal", "IPAllocated", "Assigned IP 192.0.2.10")
    after = dt.datetime.now(dt.UTC)
    event = rec.queue.get_nowait()
    assert event.metadata is not None
    assert (event.metadata.generateName, event.metadata.namespace) == ("web.", "apps")  # the API picks a free name
    ref = event.involvedObject
    assert (ref.kind, ref.apiVersion, ref.name, ref.namespace, ref.uid) == ("Service", "v1", "web", "apps", "0b5c-uid")
    assert (event.type, event.reason, event.message) == ("Normal", "IPAllocated", "Assigned IP 192.0.2.10")
    assert event.source is not None and (event.source.component, event.source.host) == (
        "onprem-lb-controller",
        "node-7",
    )
    assert (event.reportingComponent, event.reportingInstance) == ("onprem-lb-controller", "ctl-a")
    assert event.count == 1
    assert event.firstTimestamp == event.lastTimestamp
    assert event.firstTimestamp is not None and before <= event.firstTimestamp <= after
    assert event.firstTimestamp.tzinfo is not None  # serialised with its zone (Z), as the API wants


def test_an_event_on_another_kind() -> None:
    rec = recorder(RecordingClient())
    pool = {"name": "lab", "namespace": "metallb-system", "uid": "p-uid"}
    rec.record(pool, "Warning", "HostBitsIgnored", "...", kind="IPAddressPool", api_version="metallb.io/v1beta1")
    ref = rec.queue.get_nowait().involvedObject
    assert (ref.kind, ref.apiVersion, ref.name, ref.namespace) == (
        "IPAddressPool",
        "metallb.io/v1beta1",
        "lab",
        "metallb-system",
    )


def test_an_event_on_an_object_of_no_namespace_lives_in_default() -> None:
    rec = recorder(RecordingClient())
    rec.record({"name": "n1", "uid": "n-uid"}, "Warning", "NodeNotReady", "...", kind="Node")
    event = rec.queue.get_nowait()
    assert event.metadata is not None and event.metadata.namespace == "default"
    assert event.involvedObject.namespace is None and "namespace" not in to_plain(event)["involvedObject"]


def test_without_a_uid_or_host_those_fields_stay_unset() -> None:
    rec = recorder(RecordingClient())
    rec.record({"name": "web", "namespace": "apps"}, "Normal", "nodeAssigned", "announcing")
    event = rec.queue.get_nowait()
    assert event.involvedObject.uid is None
    assert event.source is not None and event.source.host is None
    plain = to_plain(event)
    assert "uid" not in plain["involvedObject"] and "host" not in plain["source"]


@pytest.mark.parametrize(("length", "kept"), [(10, 10), (1024, 1024), (1025, 1024), (5000, 1024)])
def test_long_messages_are_cut_to_the_apis_limit(length: int, kept: int) -> None:
    rec = recorder(RecordingClient())
    message = "".join(chr(ord("a") + i % 26) for i in range(length))
    rec.record(SERVICE, "Warning", "AllocationFailed", message)
    assert rec.queue.get_nowait().message == message[:kept]


def test_record_never_blocks_a_full_queue_drops_the_newest(caplog: pytest.LogCaptureFixture) -> None:
    rec = recorder(RecordingClient(), maxsize=2)
    with caplog.at_level(logging.WARNING, logger="onprem_lb.k8s"):
        for reason in ("First", "Second", "Third", "Fourth"):
            rec.record(SERVICE, "Normal", reason, "m")
    kept = [rec.queue.get_nowait().reason for _ in range(rec.queue.qsize())]
    assert kept == ["First", "Second"]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "event queue full; dropped Third event for apps/web",
        "event queue full; dropped Fourth event for apps/web",
    ]


def test_each_record_is_its_own_event_in_order() -> None:
    rec = recorder(RecordingClient())
    for i in range(3):
        rec.record(SERVICE, "Normal", "nodeAssigned", f"m{i}")
    assert [rec.queue.get_nowait().message for _ in range(3)] == ["m0", "m1", "m2"]


# -- what the senders do -------------------------------------------------------------------------


def test_the_senders_create_every_queued_event_in_order() -> None:
    client = RecordingClient()
    rec = recorder(client)

    async def scenario() -> None:
        for i in range(5):
            rec.record(SERVICE, "Normal", "nodeAssigned", f"m{i}")
        await settle(lambda: len(client.created) == 5)

    run_senders(rec, scenario)
    assert [e.message for e in client.created] == ["m0", "m1", "m2", "m3", "m4"]
    assert rec.queue.empty()


def test_nothing_is_written_while_may_write_says_no_and_those_events_are_dropped() -> None:
    client = RecordingClient()
    allowed = {"now": False}
    rec = recorder(client, may_write=lambda: allowed["now"])

    async def scenario() -> None:
        rec.record(SERVICE, "Normal", "IPAllocated", "while standby")
        await settle(rec.queue.empty)
        await asyncio.sleep(0)
        assert client.calls == 0
        allowed["now"] = True  # became leader
        rec.record(SERVICE, "Normal", "IPAllocated", "while leading")
        await settle(lambda: len(client.created) == 1)

    run_senders(rec, scenario)
    assert [e.message for e in client.created] == ["while leading"]  # the standby's event is not sent late


def test_may_write_is_asked_at_send_time_not_at_record_time() -> None:
    client = RecordingClient()
    allowed = {"now": True}
    rec = recorder(client, may_write=lambda: allowed["now"])
    rec.record(SERVICE, "Normal", "IPAllocated", "recorded while leading")  # queued before the senders run
    allowed["now"] = False  # lost the lease before it was sent

    async def scenario() -> None:
        await settle(rec.queue.empty)
        await asyncio.sleep(0)

    run_senders(rec, scenario)
    assert client.calls == 0


@pytest.mark.parametrize(
    "error",
    [api_error(403), api_error(422), httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), TimeoutError()],
    ids=["403", "422", "connect", "read-timeout", "timeout"],
)
def test_a_failed_write_is_logged_and_the_next_event_still_goes(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    client = RecordingClient(fail=[error])
    rec = recorder(client)

    async def scenario() -> None:
        rec.record(SERVICE, "Warning", "AddressConflict", "lost")
        rec.record(SERVICE, "Normal", "nodeAssigned", "kept")
        await settle(lambda: len(client.created) == 1)

    with caplog.at_level(logging.WARNING, logger="onprem_lb.k8s"):
        run_senders(rec, scenario)
    assert [e.message for e in client.created] == ["kept"]
    assert client.calls == 2  # not retried: Events are for people, a decision never waits on one
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("could not record event AddressConflict: ")


def test_an_unexpected_error_is_not_swallowed() -> None:
    client = RecordingClient(fail=[RuntimeError("a bug")])
    rec = recorder(client)
    rec.record(SERVICE, "Normal", "nodeAssigned", "m")

    async def main() -> None:
        await asyncio.wait_for(rec.run(), timeout=1.0)

    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(main())


@pytest.mark.parametrize("senders", [1, 3])
def test_senders_is_the_number_of_writes_in_flight(senders: int) -> None:
    client = RecordingClient()
    rec = recorder(client, senders=senders)

    async def scenario() -> None:
        client.gate = asyncio.Event()
        for i in range(6):
            rec.record(SERVICE, "Normal", "nodeAssigned", f"m{i}")
        await settle(lambda: client.in_flight == senders)
        for _ in range(5):  # give any further sender every chance to start
            await asyncio.sleep(0)
        assert client.in_flight == senders
        client.gate.set()
        await settle(lambda: len(client.created) == 6)

    run_senders(rec, scenario)
    assert client.most_in_flight == senders
    assert sorted(e.message or "" for e in client.created) == [f"m{i}" for i in range(6)]
