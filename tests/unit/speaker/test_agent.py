"""speaker/agent.py: the agent's bookkeeping. Which Leases are speakers' and what is kept of
them (_convert_lease), which other speakers count as leased in a view (measured by this node's
own clock from when a renewal is first seen), EndpointSlices summed per Service
(_convert_slice, _slice_changed), the config cache, and this speaker's own Lease renewal
(_renew_once, driven with a stand-in client that records the patch).

The Speaker is built with a stand-in client: its constructor only stores it (no I/O until
``run``). The agent against a real kube-apiserver and real peers is covered by
tests/e2e/test_l2_speaker.py (test_partitioned_node_goes_quiet_and_is_replaced: fencing and the
Lease expiry; test_stopped_speaker_hands_over_first: the Lease deleted on SIGTERM;
test_local_traffic_policy_follows_endpoints: EndpointSlices) and tests/e2e/test_engine_file.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.resources.coordination_v1 import Lease

from onprem_lb import metrics
from onprem_lb.speaker import agent as agent_module
from onprem_lb.speaker.agent import SPEAKER_LABEL, Speaker
from onprem_lb.speaker.view import Endpoints, NodeState, ServiceState

NS = "metallb-system"


class Clock:
    """Stands in for the ``time`` module inside agent.py."""

    def __init__(self) -> None:
        self.now = 500.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(agent_module, "time", fake)
    return fake


def speaker(client: Any = None, node: str = "n1", **kwargs: Any) -> Speaker:
    return Speaker(client, node=node, namespace=NS, **kwargs)


def lease(holder: str | None, renew: str | None = "2026-01-01T00:00:00.000000Z", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"speaker-{holder}", "namespace": NS, "labels": {SPEAKER_LABEL: "speaker"}}
    meta.update(extra.pop("meta", {}))
    spec: dict[str, Any] = {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": 10}
    spec.update(extra)
    return {"metadata": meta, "spec": spec}


def put_lease(spk: Speaker, plain: dict[str, Any]) -> None:
    """What the leases informer does with a watch event (key, then convert)."""
    spk.leases._apply("MODIFIED", plain)


# -- the Speaker's own timings -------------------------------------------------------------------


@pytest.mark.parametrize(("duration", "deadline", "period"), [(10, 6, 6), (6, 6, 2), (6, 10, 2), (10, 1, 2)])
def test_the_timings_must_nest(duration: float, deadline: float, period: float) -> None:
    with pytest.raises(ValueError, match="renew period < renew deadline < lease duration"):
        speaker(lease_duration=duration, renew_deadline=deadline, renew_period=period)


def test_the_lease_is_named_after_the_node() -> None:
    assert speaker(node="worker-3").lease_name == "speaker-worker-3"


# -- _convert_lease ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "plain"),
    [
        ("no labels", {"metadata": {"name": "speaker-n2"}, "spec": {"holderIdentity": "n2"}}),
        ("another component", lease("n2", meta={"labels": {SPEAKER_LABEL: "controller"}})),
        ("the controller's election Lease", {"metadata": {"name": "onprem-lb-controller"}, "spec": {}}),
        ("an empty object", {}),
    ],
)
def test_leases_that_are_not_a_speakers_are_not_kept(case: str, plain: dict[str, Any]) -> None:
    assert speaker()._convert_lease(plain) is None, case


def test_a_speaker_lease_keeps_holder_renew_time_duration_and_annotations() -> None:
    plain = lease(
        "n2", leaseDurationSeconds=4, meta={"annotations": {"onprem-lb.io/heartbeat-address": "10.0.0.2:7946"}}
    )
    kept = speaker()._convert_lease(plain)
    assert kept == {
        "node": "n2",
        "renew": "2026-01-01T00:00:00.000000Z",
        "duration": 4.0,
        "annotations": {"onprem-lb.io/heartbeat-address": "10.0.0.2:7946"},
    }
    assert kept is not None
    plain["metadata"]["annotations"]["x"] = "y"  # a copy, not the informer's object
    assert "x" not in kept["annotations"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, {"node": "", "renew": "", "duration": 7.0}),
        ({"holderIdentity": None, "renewTime": None}, {"node": "", "renew": "", "duration": 7.0}),
        ({"holderIdentity": "n2", "leaseDurationSeconds": 0}, {"node": "n2", "renew": "", "duration": 7.0}),
    ],
)
def test_missing_lease_fields_fall_back(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    spk = speaker(lease_duration=7.0, renew_deadline=5.0, renew_period=1.0)
    plain = {"metadata": {"labels": {SPEAKER_LABEL: "speaker"}}, "spec": spec}
    assert spk._convert_lease(plain) == {**expected, "annotations": {}}


# -- view(): which other speakers hold a valid Lease ---------------------------------------------


def test_a_lease_counts_for_its_duration_from_when_its_renewal_is_first_seen(clock: Clock) -> None:
    spk = speaker()
    put_lease(spk, lease("n2", leaseDurationSeconds=10))
    assert spk.view().leased == {"n2"}  # first seen now
    clock.now += 9.9
    assert spk.view().leased == {"n2"}
    clock.now += 0.1
    assert spk.view().leased == frozenset()  # no renewal seen for 10 s by our clock


def test_a_new_renewal_restarts_the_count(clock: Clock) -> None:
    spk = speaker()
    put_lease(spk, lease("n2", renew="2026-01-01T00:00:00Z"))
    spk.view()
    clock.now += 8
    put_lease(spk, lease("n2", renew="2026-01-01T00:00:08Z"))
    assert spk.view().leased == {"n2"}
    clock.now += 9.9  # 17.9 s after the first, 9.9 s after the renewal was seen
    assert spk.view().leased == {"n2"}
    clock.now += 0.1
    assert spk.view().leased == frozenset()


def test_the_renew_time_written_is_not_trusted_only_its_change(clock: Clock) -> None:
    """A renewTime far in the past (another node's clock) still counts from when we see it."""
    spk = speaker()
    put_lease(spk, lease("n2", renew="1999-01-01T00:00:00Z"))
    assert spk.view().leased == {"n2"}


def test_a_lease_seen_by_view_late_counts_from_that_view(clock: Clock) -> None:
    spk = speaker()
    put_lease(spk, lease("n2"))
    clock.now += 30  # no view for a while: the count starts at the first view that sees it
    assert spk.view().leased == {"n2"}


def test_each_lease_uses_its_own_duration(clock: Clock) -> None:
    spk = speaker()
    put_lease(spk, lease("n2", leaseDurationSeconds=4))
    put_lease(spk, lease("n3", leaseDurationSeconds=10))
    spk.view()
    clock.now += 5
    assert spk.view().leased == {"n3"}


def test_own_and_unheld_leases_are_not_peers(clock: Clock) -> None:
    spk = speaker(node="n1")
    put_lease(spk, lease("n1"))
    put_lease(spk, lease(None, meta={"name": "speaker-gone"}))  # released: no holder
    put_lease(spk, lease("n2", meta={"annotations": {"onprem-lb.io/heartbeat-address": "10.0.0.2:7946"}}))
    view = spk.view()
    assert view.leased == {"n2"}
    assert view.lease_annotations == {"n2": {"onprem-lb.io/heartbeat-address": "10.0.0.2:7946"}}


def test_a_deleted_lease_is_forgotten(clock: Clock) -> None:
    spk = speaker()
    put_lease(spk, lease("n2"))
    spk.view()
    spk.leases._apply("DELETED", lease("n2"))
    view = spk.view()
    assert view.leased == frozenset() and view.lease_annotations == {}
    clock.now += 20
    put_lease(spk, lease("n2"))  # the same renewTime again, after a restart: a fresh observation
    assert spk.view().leased == {"n2"}


def test_may_announce_follows_this_speakers_own_renewals(clock: Clock) -> None:
    spk = speaker()
    assert spk.view().may_announce is False  # never renewed
    spk._renewed_until = clock.now + 6
    assert spk.view().may_announce is True
    clock.now += 6
    assert spk.view().may_announce is False


# -- EndpointSlices ------------------------------------------------------------------------------


def endpoint_slice(name: str, service: str | None, *nodes: str, ready: bool = True) -> dict[str, Any]:
    labels = {} if service is None else {"kubernetes.io/service-name": service}
    return {
        "metadata": {"name": name, "namespace": "apps", "labels": labels},
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": n, "conditions": {"ready": ready}} for n in nodes],
    }


def test_a_slice_without_its_service_label_is_not_kept() -> None:
    assert speaker()._convert_slice(endpoint_slice("web-abc", None, "n1")) is None


def test_a_slice_is_kept_as_its_service_and_summary() -> None:
    got = speaker()._convert_slice(endpoint_slice("web-abc", "web", "n1", "n2"))
    assert got == ("apps/web", Endpoints(serving=True, ready_nodes=frozenset({"n1", "n2"})))


def slices_event(spk: Speaker, kind: str, plain: dict[str, Any]) -> None:
    spk.slices._apply(kind, plain)


def test_slices_of_one_service_are_summed_in_the_view() -> None:
    spk = speaker()
    slices_event(spk, "ADDED", endpoint_slice("web-a", "web", "n1"))
    slices_event(spk, "ADDED", endpoint_slice("web-b", "web", "n2"))
    slices_event(spk, "ADDED", endpoint_slice("web-c", "web", "n3", ready=False))
    slices_event(spk, "ADDED", endpoint_slice("db-a", "db", "n3"))
    endpoints = spk.view().endpoints
    assert endpoints["apps/web"] == Endpoints(serving=True, ready_nodes=frozenset({"n1", "n2"}))
    assert endpoints["apps/db"] == Endpoints(serving=True, ready_nodes=frozenset({"n3"}))


def test_a_slice_update_replaces_its_part_and_a_delete_removes_it() -> None:
    spk = speaker()
    slices_event(spk, "ADDED", endpoint_slice("web-a", "web", "n1"))
    slices_event(spk, "ADDED", endpoint_slice("web-b", "web", "n2"))
    slices_event(spk, "MODIFIED", endpoint_slice("web-a", "web", "n1", ready=False))
    assert spk.view().endpoints["apps/web"].ready_nodes == {"n2"}
    slices_event(spk, "DELETED", endpoint_slice("web-b", "web", "n2"))
    assert spk.view().endpoints.get("apps/web", Endpoints()) == Endpoints(serving=False, ready_nodes=frozenset())


def test_a_slice_moved_to_another_service_leaves_the_first() -> None:
    spk = speaker()
    slices_event(spk, "ADDED", endpoint_slice("s-1", "web", "n1"))
    slices_event(spk, "MODIFIED", endpoint_slice("s-1", "api", "n1"))
    endpoints = spk.view().endpoints
    assert endpoints["apps/api"].ready_nodes == {"n1"}
    assert endpoints.get("apps/web", Endpoints()) == Endpoints()


def test_a_slice_that_loses_its_label_is_dropped() -> None:
    spk = speaker()
    slices_event(spk, "ADDED", endpoint_slice("s-1", "web", "n1"))
    slices_event(spk, "MODIFIED", endpoint_slice("s-1", None, "n1"))
    assert spk.view().endpoints.get("apps/web", Endpoints()) == Endpoints()


def test_every_cache_change_asks_for_a_decision() -> None:
    spk = speaker()
    for informer, kind, plain in [
        (spk.slices, "ADDED", endpoint_slice("s-1", "web", "n1")),
        (spk.nodes, "ADDED", {"metadata": {"name": "n1"}}),
        (spk.leases, "ADDED", lease("n2")),
        *(
            (informer, "ADDED", {"metadata": {"name": "x", "namespace": NS}, "spec": {}})
            for informer in spk.config_kinds.values()
        ),
    ]:
        spk.changed.clear()
        informer._apply(kind, plain)
        assert spk.changed.is_set(), informer.name


# -- nodes, Services and config in the view ------------------------------------------------------


def test_view_carries_services_nodes_and_the_parsed_config() -> None:
    spk = speaker(lb_class=None)
    spk.services._apply(
        "ADDED",
        {
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.3"}]}},
        },
    )
    spk.services._apply("ADDED", {"metadata": {"name": "other", "namespace": "apps"}, "spec": {"type": "ClusterIP"}})
    spk.nodes._apply("ADDED", {"metadata": {"name": "n1", "labels": {"zone": "a"}}})
    spk.config_kinds["IPAddressPool"]._apply(
        "ADDED",
        {"metadata": {"name": "lab", "namespace": NS, "resourceVersion": "3"}, "spec": {"addresses": ["192.0.2.0/28"]}},
    )
    spk.config_kinds["L2Advertisement"]._apply("ADDED", {"metadata": {"name": "all", "namespace": NS}, "spec": {}})
    view = spk.view()
    assert view.node == "n1"
    assert view.services == (ServiceState("apps/web", ("192.0.2.3",)),)
    assert view.nodes == {"n1": NodeState("n1", {"zone": "a"})}
    assert view.config.pool_of("192.0.2.3") == "lab"
    assert [ad.name for ad in view.config.l2_advertisements] == ["all"]


def test_the_config_is_parsed_once_until_a_config_object_changes() -> None:
    spk = speaker()
    first = spk.view().config
    assert spk.view().config is first  # a lease renewal does not parse it again
    spk.config_kinds["L2Advertisement"]._apply("ADDED", {"metadata": {"name": "all", "namespace": NS}, "spec": {}})
    second = spk.view().config
    assert second is not first and [ad.name for ad in second.l2_advertisements] == ["all"]


def test_config_objects_keep_what_the_model_reads_and_ignore_bookkeeping() -> None:
    spk = speaker()
    meta = {"name": "lab", "namespace": NS, "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"}
    spec = {"addresses": ["192.0.2.0/28"]}
    book = {"resourceVersion": "7", "managedFields": [{"manager": "kubectl"}]}
    spk.config_kinds["IPAddressPool"]._apply(
        "ADDED", {"metadata": {**meta, **book}, "spec": spec, "status": {"availableIPv4": 16}}
    )
    slim = {"metadata": {**meta, "labels": {}, "generation": None}, "spec": spec}
    assert spk.config_kinds["IPAddressPool"].items == {f"{NS}/lab": slim}
    first = spk.view().config
    # the controller writes the pool's status on every allocation: a new resourceVersion, same meaning
    bumped = {"metadata": {**meta, **book, "resourceVersion": "8"}, "spec": spec, "status": {"availableIPv4": 15}}
    spk.config_kinds["IPAddressPool"]._apply("MODIFIED", bumped)
    assert spk.view().config is first  # not parsed again
    spk.config_kinds["IPAddressPool"]._apply(
        "MODIFIED", {"metadata": {**meta, "labels": {"tier": "gold"}}, "spec": spec}
    )
    assert spk.view().config is not first and spk.view().config.pool_labels["lab"] == {"tier": "gold"}


# -- renewing this speaker's Lease ---------------------------------------------------------------


class LeaseClient:
    def __init__(self, fail: BaseException | None = None, missing: bool = False) -> None:
        self.fail = fail
        self.missing = missing
        self.patches: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.created: list[Lease] = []

    async def patch(self, res: Any, name: str, body: dict[str, Any], **kwargs: Any) -> None:
        assert res is Lease
        if self.fail is not None:
            raise self.fail
        if self.missing:
            raise ApiError(status={"code": 404, "message": f'leases.coordination.k8s.io "{name}" not found'})
        self.patches.append((name, body, kwargs))

    async def create(self, obj: Lease) -> None:
        self.created.append(obj)


class Heartbeats:
    """A protocol's lease_annotations, the only part the renewal reads."""

    def lease_annotations(self) -> dict[str, str]:
        return {"onprem-lb.io/heartbeat-address": "10.0.0.1:7946"}


def test_a_renewal_merge_patches_holder_duration_time_and_annotations(clock: Clock) -> None:
    client = LeaseClient()
    spk = speaker(client)
    spk.add(Heartbeats())  # type: ignore[arg-type]  # lease_annotations only
    assert asyncio.run(spk._renew_once()) is True
    ((name, body, kwargs),) = client.patches
    assert name == "speaker-n1" and kwargs["namespace"] == NS and kwargs["patch_type"].name == "MERGE"
    assert body["metadata"]["labels"][SPEAKER_LABEL] == "speaker"  # so that the others' _convert_lease keeps it
    assert body["metadata"]["annotations"] == {"onprem-lb.io/heartbeat-address": "10.0.0.1:7946"}
    assert body["spec"]["holderIdentity"] == "n1" and body["spec"]["leaseDurationSeconds"] == 10
    assert isinstance(body["spec"]["renewTime"], str) and "acquireTime" not in body["spec"]
    # what we write is what the other speakers read
    other = speaker(node="n2")
    kept = other._convert_lease({"metadata": body["metadata"], "spec": body["spec"]})
    assert kept is not None and kept["node"] == "n1" and kept["duration"] == 10.0


def test_a_renewal_without_a_lease_creates_it(clock: Clock) -> None:
    client = LeaseClient(missing=True)
    spk = speaker(client)
    assert asyncio.run(spk._renew_once()) is True
    (created,) = client.created
    assert created.metadata is not None and created.metadata.name == "speaker-n1"
    assert created.spec is not None and created.spec.acquireTime == created.spec.renewTime
    assert spk.lease_ok()


def test_a_successful_renewal_allows_announcing_until_the_deadline(clock: Clock) -> None:
    spk = speaker(LeaseClient())  # renew_deadline 6
    metrics.fenced.set(1)
    spk.changed.clear()
    started = clock.now
    assert asyncio.run(spk._renew_once()) is True
    assert spk.changed.is_set()  # fenced -> allowed: decide again now
    assert metrics.SPEAKER.get_sample_value("onprem_lb_speaker_fenced") == 0
    clock.now = started + 5.99
    assert spk.lease_ok()
    clock.now = started + 6
    assert not spk.lease_ok()


def test_a_renewal_while_allowed_does_not_ask_for_a_decision(clock: Clock) -> None:
    spk = speaker(LeaseClient())
    asyncio.run(spk._renew_once())
    spk.changed.clear()
    clock.now += 2
    asyncio.run(spk._renew_once())
    assert not spk.changed.is_set()


@pytest.mark.parametrize(
    "error",
    [ApiError(status={"code": 403, "message": "forbidden"}), ConnectionRefusedError(111, "refused")],
    ids=["403", "refused"],
)
def test_a_failed_renewal_does_not_extend_the_deadline(clock: Clock, error: BaseException) -> None:
    spk = speaker(LeaseClient())
    asyncio.run(spk._renew_once())
    until = spk._renewed_until
    spk.client = LeaseClient(fail=error)  # type: ignore[assignment]
    clock.now += 2
    assert asyncio.run(spk._renew_once()) is False
    assert spk._renewed_until == until
