"""k8s/leader.py: the leader-election decisions. When a candidate may take the Lease (free, or
its record unchanged for a whole lease duration by the candidate's own clock), what it writes
(holder, transitions, acquire time), how long it may write afterwards (``renew_deadline`` from
the *start* of its last successful attempt), conflicts, and release.

The API server is played by a stand-in that keeps one Lease and refuses a replace carrying a
stale resourceVersion (409), as the real one does; the candidate's clock is a fake monotonic
clock. Two controllers against a real kube-apiserver (only the holder writes; the standby takes
over after a SIGKILL) are covered by
tests/integration/test_controller.py::test_two_controllers_only_the_lease_holder_writes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from lightkube import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from onprem_lb.k8s import leader as leader_module
from onprem_lb.k8s.leader import LeaderElector

T = TypeVar("T")
NS, NAME = "metallb-system", "onprem-lb-controller"


class Clock:
    """Stands in for the ``time`` module inside leader.py: a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def api_error(code: int) -> ApiError:
    return ApiError(status={"kind": "Status", "code": code, "message": f"HTTP {code} from the test"})


class LeaseServer:
    """One Lease, with optimistic concurrency: replace needs the resourceVersion last read."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lease: Lease | None = None
        self.version = 0
        self.writes: list[tuple[str, Lease]] = []
        self.fail_get: BaseException | None = None
        self.advance_on_get = 0.0  # seconds the clock moves while a get is in flight

    def put(self, holder: str | None, renew: str = "2026-01-01T00:00:00Z", **spec: Any) -> None:
        """Another candidate (or an earlier life) wrote the Lease."""
        self.version += 1
        self.lease = Lease(
            metadata=ObjectMeta(name=NAME, namespace=NS, resourceVersion=str(self.version)),
            spec=LeaseSpec(holderIdentity=holder, renewTime=renew, **spec),  # type: ignore[arg-type]  # a string is what the API sends
        )

    async def get(self, res: Any, name: str, *, namespace: str) -> Lease:
        assert (res, name, namespace) == (Lease, NAME, NS)
        self.clock.now += self.advance_on_get
        if self.fail_get is not None:
            raise self.fail_get
        if self.lease is None:
            raise api_error(404)
        return copy.deepcopy(self.lease)

    async def create(self, obj: Lease) -> Lease:
        if self.lease is not None:
            raise api_error(409)
        self.version += 1
        self.lease = copy.deepcopy(obj)
        assert self.lease.metadata is not None
        self.lease.metadata.resourceVersion = str(self.version)
        self.writes.append(("create", copy.deepcopy(obj)))
        return obj

    async def replace(self, obj: Lease) -> Lease:
        assert self.lease is not None and self.lease.metadata is not None and obj.metadata is not None
        if obj.metadata.resourceVersion != self.lease.metadata.resourceVersion:
            raise api_error(409)
        self.version += 1
        self.lease = copy.deepcopy(obj)
        assert self.lease.metadata is not None
        self.lease.metadata.resourceVersion = str(self.version)
        self.writes.append(("replace", copy.deepcopy(obj)))
        return obj

    @property
    def spec(self) -> LeaseSpec:
        assert self.lease is not None and self.lease.spec is not None
        return self.lease.spec


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(leader_module, "time", fake)
    return fake


@pytest.fixture
def server(clock: Clock) -> LeaseServer:
    return LeaseServer(clock)


def candidate(
    server: LeaseServer,
    identity: str = "ctl-a",
    *,
    lease_duration: float = 15.0,
    renew_deadline: float = 10.0,
    retry_period: float = 2.0,
) -> LeaderElector:
    return LeaderElector(
        server,  # type: ignore[arg-type]  # get/create/replace only
        NS,
        NAME,
        identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
    )


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [(15, 15, 2), (15, 10, 10), (10, 15, 2), (15, 10, 12), (15, 1, 2)],
)
def test_the_timings_must_nest(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElector(None, NS, NAME, "x", lease_duration=duration, renew_deadline=deadline, retry_period=retry)  # type: ignore[arg-type]


# -- taking the Lease ----------------------------------------------------------------------------


def test_no_lease_yet_creates_it_and_leads(server: LeaseServer, clock: Clock) -> None:
    elector = candidate(server)
    assert not elector.is_leader()
    assert run(elector._try()) is True
    ((verb, written),) = server.writes
    assert verb == "create" and written.spec is not None
    assert (written.spec.holderIdentity, written.spec.leaseDurationSeconds, written.spec.leaseTransitions) == (
        "ctl-a",
        15,
        0,
    )
    assert written.spec.acquireTime is not None and written.spec.renewTime is not None
    assert elector.is_leader()


def test_losing_the_create_race_is_not_leading(server: LeaseServer) -> None:
    elector = candidate(server)

    async def someone_else_first(obj: Lease) -> Lease:
        raise api_error(409)

    server.create = someone_else_first  # type: ignore[method-assign]
    assert run(elector._try()) is False
    assert not elector.is_leader()


def test_a_held_lease_is_taken_only_after_a_whole_duration_unchanged(server: LeaseServer, clock: Clock) -> None:
    server.put("ctl-b", leaseDurationSeconds=15, leaseTransitions=4)
    elector = candidate(server)
    assert run(elector._try()) is False  # first sight: the clock starts now, whatever renewTime says
    clock.now += 14.9
    assert run(elector._try()) is False
    clock.now += 0.1
    assert run(elector._try()) is True
    spec = server.spec
    assert spec.holderIdentity == "ctl-a" and spec.leaseTransitions == 5
    assert spec.renewTime != "2026-01-01T00:00:00Z"
    assert elector.is_leader()


def test_each_renewal_seen_restarts_the_wait(server: LeaseServer, clock: Clock) -> None:
    server.put("ctl-b", renew="2026-01-01T00:00:00Z", leaseDurationSeconds=15)
    elector = candidate(server)
    assert run(elector._try()) is False
    clock.now += 10
    server.put("ctl-b", renew="2026-01-01T00:00:10Z", leaseDurationSeconds=15)  # it renewed
    assert run(elector._try()) is False  # seen now: the wait starts again from here
    clock.now += 14.9  # 24.9 s since first sight, 14.9 s since the change was seen
    assert run(elector._try()) is False
    clock.now += 0.1
    assert run(elector._try()) is True


def test_the_wait_counts_from_when_a_change_is_seen_not_when_it_was_made(server: LeaseServer, clock: Clock) -> None:
    server.put("ctl-b", renew="2026-01-01T00:00:00Z", leaseDurationSeconds=15)
    elector = candidate(server)
    assert run(elector._try()) is False
    clock.now += 10
    server.put("ctl-b", renew="2026-01-01T00:00:10Z", leaseDurationSeconds=15)  # renewed while we did not look
    clock.now += 10
    assert run(elector._try()) is False  # 20 s since first sight, but the record differs: 0 s
    clock.now += 15
    assert run(elector._try()) is True


def test_the_wait_is_the_duration_the_lease_states(server: LeaseServer, clock: Clock) -> None:
    server.put("ctl-b", leaseDurationSeconds=5)  # the holder runs with shorter timings than ours
    elector = candidate(server)
    assert run(elector._try()) is False
    clock.now += 5
    assert run(elector._try()) is True


def test_without_a_stated_duration_our_own_applies(server: LeaseServer, clock: Clock) -> None:
    server.put("ctl-b")
    elector = candidate(server, lease_duration=8.0, renew_deadline=6.0, retry_period=1.0)
    assert run(elector._try()) is False
    clock.now += 7.9
    assert run(elector._try()) is False
    clock.now += 0.1
    assert run(elector._try()) is True


@pytest.mark.parametrize("holder", [None, ""])
def test_a_released_lease_is_taken_at_once(server: LeaseServer, holder: str | None) -> None:
    server.put(holder, leaseDurationSeconds=1, leaseTransitions=2)
    elector = candidate(server)
    assert run(elector._try()) is True
    assert server.spec.holderIdentity == "ctl-a" and server.spec.leaseTransitions == 3


def test_two_candidates_racing_for_a_free_lease_cannot_both_win(server: LeaseServer) -> None:
    server.put(None)
    a, b = candidate(server, "ctl-a"), candidate(server, "ctl-b")
    original_get = server.get
    reads: list[Lease] = []

    async def get_once_for_both(*args: Any, **kwargs: Any) -> Lease:
        if not reads:
            reads.append(await original_get(*args, **kwargs))
        return copy.deepcopy(reads[0])  # both read the same version before either writes

    server.get = get_once_for_both  # type: ignore[method-assign]
    assert [run(a._try()), run(b._try())] == [True, False]
    assert server.spec.holderIdentity == "ctl-a"
    assert a.is_leader() and not b.is_leader()


# -- renewing ------------------------------------------------------------------------------------


def test_renewal_keeps_acquire_time_and_transitions(server: LeaseServer, clock: Clock) -> None:
    server.put("ctl-a", acquireTime="2025-12-31T00:00:00Z", leaseTransitions=7, leaseDurationSeconds=15)
    elector = candidate(server)
    assert run(elector._try()) is True  # our own record: no wait (a restart with the same identity)
    spec = server.spec
    assert spec.holderIdentity == "ctl-a" and spec.leaseTransitions == 7
    assert spec.acquireTime == "2025-12-31T00:00:00Z"
    assert spec.renewTime != "2026-01-01T00:00:00Z"


def test_leadership_lasts_renew_deadline_from_the_start_of_the_attempt(server: LeaseServer, clock: Clock) -> None:
    elector = candidate(server)  # renew_deadline 10
    started = clock.now
    server.advance_on_get = 3.0  # a slow API server: the answer comes 3 s after we asked
    assert run(elector._try()) is True
    clock.now = started + 9.99
    assert elector.is_leader()
    clock.now = started + 10.0  # not 13: the others' clocks may have started when we asked
    assert not elector.is_leader()


def test_a_conflicting_write_is_not_a_renewal(server: LeaseServer, clock: Clock) -> None:
    elector = candidate(server)
    assert run(elector._try()) is True
    original_get = server.get

    async def stale_get(*args: Any, **kwargs: Any) -> Lease:
        lease = await original_get(*args, **kwargs)
        server.put("ctl-a")  # someone wrote in between: our version is stale now
        return lease

    server.get = stale_get  # type: ignore[method-assign]
    clock.now += 8
    assert run(elector._try()) is False
    clock.now += 2  # 10 s after the last successful renewal
    assert not elector.is_leader()


def test_a_lease_taken_over_by_another_is_not_renewed(server: LeaseServer, clock: Clock) -> None:
    elector = candidate(server)
    assert run(elector._try()) is True
    server.put("ctl-b", leaseDurationSeconds=15)  # we were partitioned; it waited and took over
    clock.now += 2
    assert run(elector._try()) is False
    assert server.spec.holderIdentity == "ctl-b"


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [api_error(500), api_error(403), httpx.ConnectError("refused"), TimeoutError()], ids=str
)
def test_a_failed_attempt_is_logged_not_raised(
    server: LeaseServer, caplog: pytest.LogCaptureFixture, error: BaseException
) -> None:
    elector = candidate(server)
    server.fail_get = error
    with caplog.at_level(logging.INFO, logger="onprem_lb.leader"):
        assert run(elector._attempt()) is False
        assert run(elector._attempt()) is False  # the same failure again at once: not logged again
        server.fail_get = None
        assert run(elector._attempt()) is True
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2
    assert logged[0].startswith(f"lease {NS}/{NAME}: ")
    assert logged[1] == f"lease {NS}/{NAME}: works again after 2 failure(s)"


def test_an_unexpected_error_is_not_swallowed(server: LeaseServer) -> None:
    server.fail_get = RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):
        run(candidate(server)._attempt())


# -- acquire, hold, release ----------------------------------------------------------------------


def fast(server: LeaseServer) -> LeaderElector:
    """Short timings: acquire and hold sleep for real (retry_period), the clock stays fake."""
    return candidate(server, lease_duration=0.05, renew_deadline=0.02, retry_period=0.001)


def test_acquire_waits_until_the_lease_is_ours(server: LeaseServer, clock: Clock) -> None:
    server.put("ctl-b", leaseDurationSeconds=15)
    server.advance_on_get = 1.0  # each attempt is one second later by our clock
    elector = fast(server)
    run(elector.acquire())
    assert server.spec.holderIdentity == "ctl-a"
    # attempts started at 0, 1, ... 15 s after first sight: the 16th is a whole duration later
    assert clock.now - 1000.0 == 16.0
    assert [verb for verb, _ in server.writes] == ["replace"]


def test_hold_rides_out_a_failure_within_the_deadline_and_returns_after_it(server: LeaseServer, clock: Clock) -> None:
    elector = fast(server)
    assert run(elector._try()) is True
    script: list[tuple[float, BaseException | None]] = [
        (0.001, None),
        (0.001, httpx.ConnectError("blip")),  # fails, but still within renew_deadline: hold on
        (0.001, None),
        (0.001, None),
        (1.0, httpx.ConnectError("partitioned")),  # fails past the deadline: leadership is lost
    ]
    original_get = server.get

    async def scripted_get(*args: Any, **kwargs: Any) -> Lease:
        step, error = script.pop(0)
        clock.now += step
        if error is not None:
            raise error
        return await original_get(*args, **kwargs)

    server.get = scripted_get  # type: ignore[method-assign]
    run(asyncio.wait_for(elector.hold(), timeout=2.0))
    assert script == []
    assert [verb for verb, _ in server.writes] == ["create", "replace", "replace", "replace"]
    assert not elector.is_leader()


def test_release_hands_the_lease_to_the_next_candidate_at_once(server: LeaseServer, clock: Clock) -> None:
    a, b = candidate(server, "ctl-a"), candidate(server, "ctl-b")
    assert run(a._try()) is True
    assert run(b._try()) is False
    run(a.release())
    assert not a.is_leader()
    assert server.spec.holderIdentity is None and server.spec.leaseDurationSeconds == 1
    assert run(b._try()) is True  # no wait for the old record to age
    assert server.spec.leaseTransitions == 1


def test_release_without_leading_writes_nothing(server: LeaseServer) -> None:
    server.put("ctl-b")
    elector = candidate(server)
    run(elector.release())
    assert server.writes == [] and server.spec.holderIdentity == "ctl-b"


def test_release_does_not_clear_a_lease_someone_else_took(server: LeaseServer, clock: Clock) -> None:
    elector = candidate(server)
    assert run(elector._try()) is True
    server.put("ctl-b", leaseDurationSeconds=15)
    run(elector.release())
    assert server.spec.holderIdentity == "ctl-b"
    assert not elector.is_leader()


def test_release_survives_an_unreachable_api_server(server: LeaseServer, caplog: pytest.LogCaptureFixture) -> None:
    elector = candidate(server)
    assert run(elector._try()) is True
    server.fail_get = httpx.ConnectError("refused")
    with caplog.at_level(logging.WARNING, logger="onprem_lb.leader"):
        run(elector.release())
    assert not elector.is_leader()
    assert [r.getMessage() for r in caplog.records] == ["could not release lease: refused"]


@pytest.mark.parametrize(
    ("left", "overdue"),
    [(9.9, False), (5.01, False), (4.99, True), (0.01, True), (0.0, False), (-1.0, False)],
)
def test_a_renewal_is_overdue_past_half_the_deadline_while_still_leader(left: float, overdue: bool) -> None:
    """The controller holds its writes then (issue 13): the renewal must not queue behind them."""
    client: Any = None  # no call reaches the API
    elector = LeaderElector(client, "ns", "lease", "me", lease_duration=15, renew_deadline=10, retry_period=2)
    elector._valid_until = 1000.0 + left
    assert elector.renewal_overdue(now=1000.0) is overdue
