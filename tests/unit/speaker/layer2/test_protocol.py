"""speaker/layer2/protocol.py: the layer 2 handler's own decisions. ServiceL2Status names, the
heartbeat address it publishes on its Lease and reads from the others', who is live, the
per-state address counts, which ServiceL2Status objects it wants and writes or deletes, and
one announce-then-fence round of ``apply``.

Layer2 is built with stand-ins: a real Members (no socket until ``start``), an announcer that
records the addresses it is told to own (the real one opens raw sockets), and a client that
records ServiceL2Status writes. Raw sockets, heartbeats between real speakers and the objects
in a real API server are covered by tests/e2e/test_l2_speaker.py
(test_exactly_one_mac_answers_v4_and_v6_with_status_and_events: ServiceL2Status and events;
test_killed_owner_node_is_replaced, test_partitioned_node_goes_quiet_and_is_replaced: liveness
and fencing) and tests/unit/speaker/layer2/test_members.py (the heartbeat wire).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import pytest
from lightkube import ApiError

from onprem_lb import address_states, hostport, metrics
from onprem_lb.config import build_config
from onprem_lb.k8s import EventRecorder, ServiceL2Status
from onprem_lb.speaker import statuses
from onprem_lb.speaker.layer2 import election, handover, members, quorum
from onprem_lb.speaker.layer2.protocol import (
    HEARTBEAT_ANNOTATION,
    Layer2,
    status_name,
)
from onprem_lb.speaker.statuses import NODE_LABEL, SVC_NAME_LABEL, SVC_NS_LABEL
from onprem_lb.speaker.view import Endpoints, NodeState, ServiceState, View

NS = "metallb-system"


class StandInAnnouncer:
    """Answers for nothing: keeps what it is told to own (address -> interfaces) and which
    interfaces it would use (``links``: the up interfaces; empty tuple means all of them)."""

    def __init__(self, links: tuple[str, ...] = ("eth0",)) -> None:
        self.links = links
        self.owned: dict[str, tuple[str, ...]] = {}
        self.closed = False

    def set_owned(self, desired: Mapping[str, tuple[str, ...]]) -> tuple[list[str], list[str]]:
        added = [ip for ip, ifaces in desired.items() if self.owned.get(ip) != tuple(ifaces)]
        removed = [ip for ip in self.owned if ip not in desired]
        self.owned = {ip: tuple(ifaces) for ip, ifaces in desired.items()}
        return added, removed

    def interfaces_for(self, ip: str) -> list[str]:
        wanted = self.owned.get(ip)
        return [] if wanted is None else [i for i in (wanted or self.links) if i in self.links]

    def close(self) -> None:
        self.closed = True


class StatusClient:
    """Records ServiceL2Status writes; ``existing`` names answer a create with 409."""

    def __init__(self, existing: set[str] | None = None) -> None:
        self.existing = set(existing or ())
        self.calls: list[tuple[str, str, Any]] = []

    async def create(self, obj: Any) -> None:
        self.calls.append(("create", obj.metadata.name, obj.metadata.labels))
        if obj.metadata.name in self.existing:
            raise ApiError(status={"code": 409, "message": "already exists"})

    async def patch(self, res: Any, name: str, body: dict[str, Any], **_kw: Any) -> None:
        assert res is ServiceL2Status.Status
        self.calls.append(("patch", name, body))

    async def delete(self, res: Any, name: str, **_kw: Any) -> None:
        assert res is ServiceL2Status
        self.calls.append(("delete", name, None))


def layer2(
    node: str = "n1",
    *,
    heartbeat: tuple[str, int] = ("192.0.2.101", 7946),
    client: StatusClient | None = None,
    announcer: StandInAnnouncer | None = None,
    probe: bool = True,
) -> Layer2:
    client = client or StatusClient()
    return Layer2(
        client,  # type: ignore[arg-type]  # create/patch/delete only
        node=node,
        namespace=NS,
        heartbeat=heartbeat,
        members=members.Members(node),
        announcer=announcer or StandInAnnouncer(),  # type: ignore[arg-type]  # no raw sockets
        events=EventRecorder(client, "onprem-lb-speaker", node, host=node),  # type: ignore[arg-type]
        probe=probe,
    )


def make_view(
    *,
    node: str = "n1",
    services: tuple[ServiceState, ...] = (),
    may_announce: bool = True,
    leased: frozenset[str] = frozenset(),
    lease_annotations: Mapping[str, Mapping[str, str]] | None = None,
    nodes: tuple[str, ...] = ("n1", "n2"),
) -> View:
    config = build_config(
        pools=[{"metadata": {"name": "lab", "namespace": NS}, "spec": {"addresses": ["192.0.2.0/28"]}}],
        l2_advertisements=[{"metadata": {"name": "all", "namespace": NS}, "spec": {}}],
    )
    return View(
        node=node,
        config=config,
        services=services,
        endpoints={s.key: Endpoints(serving=True, ready_nodes=frozenset(nodes)) for s in services},
        nodes={n: NodeState(n) for n in nodes},
        may_announce=may_announce,
        leased=leased,
        lease_annotations=lease_annotations or {},
    )


def beat(layer: Layer2, node: str, **extra: object) -> None:
    """A heartbeat from ``node`` as Members receives it off the wire."""
    msg = {"v": members.VERSION, "node": node, "inc": 1, "seq": 1, "t": time.time(), **extra}
    layer.members.datagram_received(members.encode(msg, None), ("192.0.2.102", 7946))


# -- status_name ---------------------------------------------------------------------------------


def test_status_names_are_stable_valid_object_names() -> None:
    name = status_name("apps/web", "n1")
    assert name == status_name("apps/web", "n1")  # the same object on every restart: one writer each
    assert re.fullmatch(r"l2-[0-9a-f]{16}", name)  # a DNS-1123 name, short whatever the inputs' length
    assert re.fullmatch(r"l2-[0-9a-f]{16}", status_name("a" * 63 + "/" + "b" * 63, "n" * 253))


def test_status_names_differ_per_service_and_per_node() -> None:
    services = [f"ns{i % 7}/svc-{i}" for i in range(200)]
    nodes = [f"node-{j}" for j in range(8)]
    names = {status_name(s, n) for s in services for n in nodes}
    assert len(names) == len(services) * len(nodes)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("apps/web", "n1"), ("apps/web", "n2")),  # same Service, two announcing nodes
        (("apps/web", "n1"), ("other/web", "n1")),  # same name in two namespaces
        (("apps/web", "1n"), ("apps/web1", "n")),  # the separator keeps the parts apart
    ],
)
def test_status_names_do_not_collide_on_look_alike_inputs(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert status_name(*a) != status_name(*b)


# -- the heartbeat address: published on our Lease, read from the others' -----------------------


@pytest.mark.parametrize(
    ("heartbeat", "published"),
    [(("192.0.2.101", 7946), "192.0.2.101:7946"), (("2001:db8::65", 7946), "[2001:db8::65]:7946")],
)
def test_lease_annotations_publish_the_heartbeat_address(heartbeat: tuple[str, int], published: str) -> None:
    proto = layer2(heartbeat=heartbeat)
    proto.states = {"192.0.2.240": "announcing", "192.0.2.241": "notOwner"}
    annotations = proto.lease_annotations()
    states = address_states.ANNOTATIONS["layer2"]
    assert annotations == {HEARTBEAT_ANNOTATION: published, states: '{"announcing":["192.0.2.240"]}'}
    assert hostport.parse(annotations[HEARTBEAT_ANNOTATION]) == heartbeat


def test_a_peer_reads_what_we_publish() -> None:
    n2 = layer2("n2", heartbeat=("2001:db8::66", 7000))
    n1 = layer2("n1")
    n1._follow(make_view(leased=frozenset({"n2"}), lease_annotations={"n2": n2.lease_annotations()}))
    assert n1.members.addresses == {"n2": ("2001:db8::66", 7000)}


def test_peers_without_a_usable_heartbeat_address_are_left_out() -> None:
    n1 = layer2()
    published = {
        "n2": {HEARTBEAT_ANNOTATION: "192.0.2.102:7946"},
        "n3": {},  # an older speaker, or not started yet
        "n4": {HEARTBEAT_ANNOTATION: "2001:db8::4:7946"},  # IPv6 without brackets
        "n5": {HEARTBEAT_ANNOTATION: "192.0.2.105"},  # no port
        "n6": {HEARTBEAT_ANNOTATION: "192.0.2.106:0"},
    }
    n1._follow(make_view(leased=frozenset(published), lease_annotations=published))
    assert n1.members.addresses == {"n2": ("192.0.2.102", 7946)}
    assert n1.leased == frozenset(published)


# -- live() --------------------------------------------------------------------------------------


def test_live_is_peers_with_a_valid_lease_and_a_heartbeat_address_plus_us() -> None:
    n1 = layer2()
    published = {n: {HEARTBEAT_ANNOTATION: f"192.0.2.{i}:7946"} for i, n in enumerate(["n2", "n3"], 2)}
    n1._follow(make_view(leased=frozenset({"n2", "n4"}), lease_annotations=published))
    # n3: no valid Lease; n4: a Lease but no heartbeat address
    assert n1.live() == {"n1", "n2"}


def test_a_fenced_or_leaving_speaker_does_not_count_itself() -> None:
    n1 = layer2()
    n1._follow(make_view(may_announce=False))
    assert n1.live() == set()
    n1._follow(make_view(may_announce=True))
    assert n1.live() == {"n1"}
    n1.leaving = True
    assert n1.live() == set()


@pytest.mark.parametrize("news", [{"leaving": True}, {"fenced": True}], ids=["leaving", "fenced"])
def test_a_peer_that_says_it_leaves_or_is_fenced_is_not_live(news: dict[str, object]) -> None:
    n1 = layer2()
    published = {"n2": {HEARTBEAT_ANNOTATION: "192.0.2.102:7946"}}
    n1._follow(make_view(leased=frozenset({"n2"}), lease_annotations=published))
    beat(n1, "n2")
    assert n1.live() == {"n1", "n2"}
    beat(n1, "n2", seq=2, **news)
    assert n1.live() == {"n1"}  # before its Lease runs out


# -- without the API (membership mode, quorum) ------------------------------------------------------


PUBLISHED = {n: {HEARTBEAT_ANNOTATION: f"192.0.2.{i}:7946"} for i, n in enumerate(["n2", "n3"], 2)}


def outage_view(**kw: Any) -> View:
    """The view while the API does not answer: renewals failing, Leases stale."""
    base: dict[str, Any] = {"leased": frozenset(), "lease_annotations": PUBLISHED}
    view = make_view(**{**base, **kw})
    return dataclasses.replace(view, membership=True, api_recent=False, lease_ok=False)


def known_to(n1: Layer2) -> None:
    """n1 saw n2 and n3 with valid Leases while the API answered, and is ready."""
    n1._follow(make_view(leased=frozenset({"n2", "n3"}), lease_annotations=PUBLISHED))
    n1._prepared = True
    assert n1.known == frozenset({"n1", "n2", "n3"})


def test_without_the_api_who_is_heard_is_live_and_the_known_set_stays() -> None:
    n1 = layer2()
    known_to(n1)
    n1._follow(outage_view())
    assert n1.known == frozenset({"n1", "n2", "n3"})  # frozen: the Leases are stale now
    assert n1.live() == {"n1"}  # n1 may announce (view), but hears nobody yet
    beat(n1, "n2", api=False)
    assert n1.live() == {"n1", "n2"}  # heard, though its Lease looks expired
    assert n1.hold().holds and n1.hold().heard == 2  # 2 of 3
    beat(n1, "n3", api=False)
    assert n1.live() == {"n1", "n2", "n3"}


def test_without_the_api_a_node_hearing_no_majority_does_not_hold() -> None:
    n1 = layer2()
    known_to(n1)
    n1._follow(outage_view())
    hold = n1.hold()
    assert not hold.holds and hold.reason == quorum.NO_QUORUM and hold.describe().startswith("hearing 1 of 3")


def test_two_quiet_speakers_that_hear_each_other_again_regain_their_quorum() -> None:
    """A healed split while the API is down: n1 and n2 were both quiet (noQuorum) and hear each
    other's "fenced" beats. A quiet peer counts toward the quorum (before, it did not, and both
    stayed dark until the API came back: the 10-minute chaos run), and n1 first beats as live
    for dead_after before it announces, so n2 counts it before either elects."""
    n1 = layer2()
    known_to(n1)
    n1._follow(dataclasses.replace(outage_view(), may_announce=False, quiet_reason=quorum.NO_QUORUM))
    assert n1.hold().reason == quorum.NO_QUORUM and n1.members.fenced
    beat(n1, "n2", api=False, fenced=True)
    first = n1.hold()
    assert not first.holds and first.reason == quorum.REGAINING and first.heard == 2, first
    assert not n1.members.fenced  # its beats say it is live now, before it announces
    assert n1.live() == set()  # n2 is quiet: not elected; n1 itself not yet allowed
    time.sleep(n1.members.dead_after + 0.05)
    beat(n1, "n2", api=False, fenced=True, seq=2)
    assert n1.hold().holds  # heard for dead_after: it may announce
    n1._follow(outage_view())  # the agent's view follows (may_announce)
    assert n1.live() == {"n1"} and n1.hold().holds and n1._regaining_since is None


def test_at_the_switch_a_peer_with_a_valid_lease_stays_live_until_it_had_time_to_answer() -> None:
    """Found in the e2e outage test: n2, not n1's successor, had not watched n1; when the API
    stopped answering it heard nobody for a moment, elected itself and announced n1's address
    for a few milliseconds. Peers with a valid Lease stay live until watched for dead_after."""
    n1 = layer2()
    known_to(n1)
    outage = outage_view(leased=frozenset({"n2", "n3"}))
    n1._follow(outage)
    assert n1.live() == {"n1", "n2", "n3"}  # not watched yet: not dead for that
    n1._decide(outage)  # the switch watches every speaker
    assert set(n1.members.watching) == {"n2", "n3"}
    beat(n1, "n2", api=False)
    n1.members.check(time.monotonic())
    assert n1.live() == {"n1", "n2", "n3"}  # n2 heard, n3 still has its time
    n1.members.check(n1.members.watching["n3"] + n1.members.dead_after)
    assert n1.live() == {"n1", "n2"}  # n3 never answered: without the API, silence decides
    n1._follow(outage_view())  # its Lease looks expired now
    assert "n3" not in n1.live()


def test_a_speaker_that_announced_goes_on_holding_without_regaining() -> None:
    n1 = layer2()
    known_to(n1)
    n1._follow(outage_view())  # it announced by Lease until now
    beat(n1, "n2", api=False)
    assert n1.hold().holds and n1._regaining_since is None


def test_without_the_api_a_heard_speaker_outside_the_known_set_is_live_and_watched() -> None:
    """n3 was cut off when the outage began (its Lease had run out), so n1's known set lacks it;
    n3 knew all three and holds with n1's beats. n1 elects from the same live set as n3: both."""
    n1 = layer2()
    n1._follow(make_view(leased=frozenset({"n2"}), lease_annotations=PUBLISHED))
    n1._prepared = True
    assert n1.known == frozenset({"n1", "n2"})
    n1._follow(outage_view())
    n1._decide(outage_view())
    assert set(n1.members.watching) == {"n2", "n3"}  # every speaker with a heartbeat address
    beat(n1, "n3", api=False)
    assert n1.live() == {"n1", "n3"}
    assert n1.hold().heard == 1  # but the quorum is still over what n1 knew


def test_a_node_that_hears_a_peer_on_the_api_yields_to_it() -> None:
    n1 = layer2()
    known_to(n1)
    n1._follow(outage_view())
    beat(n1, "n2", api=True)  # n2 renews and goes by Leases: only n1 is cut off from the API
    beat(n1, "n3", api=False)
    hold = n1.hold()
    assert not hold.holds and hold.reason == quorum.API_ELSEWHERE


def test_a_speaker_not_yet_ready_or_leaving_never_holds() -> None:
    n1 = layer2()
    n1._follow(make_view(leased=frozenset({"n2", "n3"}), lease_annotations=PUBLISHED))
    assert n1.hold().reason == quorum.NOT_READY  # not prepared: it heard nobody before deciding
    n1._prepared = True
    n1.leaving = True
    assert not n1.hold().holds


def test_beats_say_whether_this_node_goes_by_leases() -> None:
    n1 = layer2()
    n1._follow(make_view())
    assert n1.members.api is True
    n1._follow(dataclasses.replace(make_view(), membership=True))  # back, but the Leases not caught up
    assert n1.members.api is False
    n1._follow(outage_view())
    assert n1.members.api is False


def test_membership_mode_watches_every_known_speaker() -> None:
    n1 = layer2()
    known_to(n1)
    n1._follow(outage_view())
    n1._decide(outage_view())
    assert set(n1.members.watching) == {"n2", "n3"}


def test_announced_addresses_say_they_are_held_by_membership() -> None:
    n1 = layer2(probe=False)
    known_to(n1)
    svc = ServiceState("default/web", ("192.0.2.5",))
    n1.apply(make_view(services=(svc,), nodes=("n1",)))
    assert n1.states["192.0.2.5"] == handover.ANNOUNCING
    n1.apply(dataclasses.replace(outage_view(services=(svc,), nodes=("n1",)), may_announce=True))
    assert n1.states["192.0.2.5"] == handover.HOLDING and "192.0.2.5" in n1.current
    quiet = dataclasses.replace(
        outage_view(services=(svc,), nodes=("n1",)), may_announce=False, quiet_reason="noQuorum"
    )
    n1.apply(quiet)
    assert n1.states["192.0.2.5"] == "noQuorum" and not n1.current


# -- _report_states ------------------------------------------------------------------------------


def state_count(state: str) -> float | None:
    return metrics.SPEAKER.get_sample_value("onprem_lb_speaker_addresses", {"state": state})


def test_states_are_counted_and_a_state_no_address_has_any_more_goes_to_zero() -> None:
    n1 = layer2()
    n1._report_states({"192.0.2.1": "announcing", "192.0.2.2": "announcing", "192.0.2.3": "notOwner"})
    assert (state_count("announcing"), state_count("notOwner")) == (2, 1)
    n1._report_states({"192.0.2.1": "announcing", "192.0.2.3": "handingOver"})
    assert (state_count("announcing"), state_count("notOwner"), state_count("handingOver")) == (1, 0, 1)
    n1._report_states({})
    assert (state_count("announcing"), state_count("handingOver")) == (0, 0)
    assert n1.states == {}


def test_state_changes_are_logged_once_quiet_ones_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    n1 = layer2()
    with caplog.at_level(logging.DEBUG, logger="onprem_lb.speaker"):
        n1._report_states({"192.0.2.1": "announcing", "192.0.2.2": "notOwner", "192.0.2.3": "noLocalEndpoint"})
        n1._report_states({"192.0.2.1": "announcing", "192.0.2.2": "notOwner", "192.0.2.3": "noLocalEndpoint"})
        n1._report_states({"192.0.2.1": "fenced", "192.0.2.2": "notOwner", "192.0.2.3": "announcing"})
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "onprem_lb.speaker"]
    assert logged == [
        (logging.DEBUG, "192.0.2.1: announcing (was unknown)"),  # a first announcement says so elsewhere
        (logging.DEBUG, "192.0.2.2: notOwner (was unknown)"),  # the common case on every node but one
        (logging.INFO, "192.0.2.3: noLocalEndpoint (was unknown)"),  # why not here: worth a line
        (logging.INFO, "192.0.2.1: fenced (was announcing)"),
        (logging.INFO, "192.0.2.3: announcing (was noLocalEndpoint)"),
    ]


# -- ServiceL2Status: which objects, and the writes ----------------------------------------------


def announcement(ip: str, *services: str, interfaces: tuple[str, ...] = ()) -> election.Announcement:
    return election.Announcement(ip=ip, node="n1", interfaces=interfaces, services=services)


def test_convert_status_keeps_only_objects_with_a_node_label() -> None:
    obj = {"metadata": {"name": "l2-x", "labels": {NODE_LABEL: "n2", "other": "1"}}, "status": {"node": "n2"}}
    assert statuses.convert(obj) == {
        "name": "l2-x",
        "labels": {NODE_LABEL: "n2", "other": "1"},
        "status": {"node": "n2"},
    }
    assert statuses.convert({"metadata": {"name": "l2-y", "labels": {"other": "1"}}}) is None
    assert statuses.convert({"metadata": {"name": "l2-z"}}) is None
    assert statuses.convert({"metadata": {"name": "l2-w", "labels": {NODE_LABEL: "n1"}}}) == {
        "name": "l2-w",
        "labels": {NODE_LABEL: "n1"},
        "status": {},
    }


def test_one_status_per_service_with_the_interfaces_of_all_its_addresses() -> None:
    announcer = StandInAnnouncer(links=("eth0", "eth1", "bond0"))
    n1 = layer2(announcer=announcer)
    announcer.set_owned({"192.0.2.1": ("eth1",), "2001:db8::1": ("eth0", "eth1"), "192.0.2.2": ()})
    n1.current = {
        "192.0.2.1": announcement("192.0.2.1", "apps/web"),
        "2001:db8::1": announcement("2001:db8::1", "apps/web"),  # dual-stack: the same Service
        "192.0.2.2": announcement("192.0.2.2", "apps/a", "other/b"),  # an address shared by two Services
    }
    desired = n1._desired_statuses()
    assert set(desired) == {status_name(s, "n1") for s in ("apps/web", "apps/a", "other/b")}
    web = desired[status_name("apps/web", "n1")]
    assert web["labels"] == {NODE_LABEL: "n1", SVC_NAME_LABEL: "web", SVC_NS_LABEL: "apps"}
    assert web["status"] == {
        "node": "n1",
        "serviceName": "web",
        "serviceNamespace": "apps",
        "interfaces": [{"name": "eth0"}, {"name": "eth1"}],  # sorted, each once
    }
    b = desired[status_name("other/b", "n1")]
    assert b["status"]["interfaces"] == [{"name": "bond0"}, {"name": "eth0"}, {"name": "eth1"}]  # all up links


def have(svc: str, node: str, interfaces: list[str], *, name: str | None = None) -> dict[str, Any]:
    ns, _, svc_name = svc.partition("/")
    return {
        "name": name or status_name(svc, node),
        "labels": {NODE_LABEL: node, SVC_NAME_LABEL: svc_name, SVC_NS_LABEL: ns},
        "status": {
            "node": node,
            "serviceName": svc_name,
            "serviceNamespace": ns,
            "interfaces": [{"name": i} for i in interfaces],
        },
    }


def write_statuses(n1: Layer2) -> list[tuple[str, str, Any]]:
    asyncio.run(n1._write_statuses())
    client: StatusClient = n1.client  # type: ignore[assignment]
    return client.calls


def test_status_writes_create_patch_keep_and_delete() -> None:
    client = StatusClient()
    n1 = layer2(client=client)
    published = {"n2": {HEARTBEAT_ANNOTATION: "192.0.2.102:7946"}}
    n1._follow(make_view(leased=frozenset({"n2"}), lease_annotations=published))  # n2 live, n3 not
    n1.announcer.set_owned({"192.0.2.1": (), "192.0.2.2": (), "192.0.2.3": ()})
    n1.current = {
        "192.0.2.1": announcement("192.0.2.1", "apps/new"),
        "192.0.2.2": announcement("192.0.2.2", "apps/same"),
        "192.0.2.3": announcement("192.0.2.3", "apps/moved"),
    }
    existing = [
        have("apps/same", "n1", ["eth0"]),  # up to date: no write
        have("apps/moved", "n1", ["eth9"]),  # ours, but the interfaces changed: patched
        have("apps/gone", "n1", ["eth0"]),  # ours, no longer announced: deleted
        have("apps/moved", "n3", ["eth0"]),  # a dead node's claim on a Service we now announce: deleted
        have("apps/moved", "n2", ["eth0"]),  # a live node's: left to it (it is handing over)
        have("apps/elsewhere", "n3", ["eth0"]),  # a dead node's on a Service we do not announce: not ours to judge
    ]
    for item in existing:
        n1.statuses.items[f"{NS}/{item['name']}"] = item
    calls = write_statuses(n1)
    deletes = {name for verb, name, _ in calls if verb == "delete"}
    assert deletes == {status_name("apps/gone", "n1"), status_name("apps/moved", "n3")}
    creates = [(name, labels) for verb, name, labels in calls if verb == "create"]
    assert creates == [(status_name("apps/new", "n1"), {NODE_LABEL: "n1", SVC_NAME_LABEL: "new", SVC_NS_LABEL: "apps"})]
    patches = {name: body for verb, name, body in calls if verb == "patch"}
    assert set(patches) == {status_name("apps/new", "n1"), status_name("apps/moved", "n1")}
    assert patches[status_name("apps/moved", "n1")]["status"]["interfaces"] == [{"name": "eth0"}]
    assert f"{NS}/{status_name('apps/gone', 'n1')}" not in n1.statuses.items


def test_a_status_that_exists_already_is_patched_not_an_error() -> None:
    name = status_name("apps/web", "n1")
    client = StatusClient(existing={name})  # created by our previous life; the cache has not seen it yet
    n1 = layer2(client=client)
    n1._follow(make_view())
    n1.announcer.set_owned({"192.0.2.1": ()})
    n1.current = {"192.0.2.1": announcement("192.0.2.1", "apps/web")}
    calls = write_statuses(n1)
    assert [(verb, n) for verb, n, _ in calls] == [("create", name), ("patch", name)]


# -- apply: announce, then go quiet when fenced --------------------------------------------------


def test_apply_announces_what_it_wins_and_goes_quiet_when_fenced(caplog: pytest.LogCaptureFixture) -> None:
    announcer = StandInAnnouncer()
    n1 = layer2(announcer=announcer, probe=False)
    web = ServiceState("apps/web", ("192.0.2.5",))
    n1.apply(make_view(services=(web,), nodes=("n1",)))
    assert announcer.owned == {"192.0.2.5": ()}
    assert set(n1.current) == {"192.0.2.5"} and n1.states == {"192.0.2.5": handover.ANNOUNCING}
    event = n1.events.queue.get_nowait()
    assert (event.reason, event.involvedObject.name, event.involvedObject.namespace) == ("nodeAssigned", "web", "apps")
    assert event.message == 'announcing from node "n1" with protocol "layer2"'
    assert metrics.SPEAKER.get_sample_value("onprem_lb_speaker_owned_addresses") == 1

    n1.apply(make_view(services=(web,), nodes=("n1",), may_announce=False))
    assert announcer.owned == {} and n1.current == {}
    assert n1.states == {"192.0.2.5": handover.FENCED}
    assert metrics.SPEAKER.get_sample_value("onprem_lb_speaker_owned_addresses") == 0
    assert n1.events.queue.empty()  # going quiet is not a new assignment


def test_apply_leaves_to_the_winner_what_another_node_wins() -> None:
    announcer = StandInAnnouncer()
    n1 = layer2(announcer=announcer, probe=False)
    published = {"n2": {HEARTBEAT_ANNOTATION: "192.0.2.102:7946"}}
    ips = [f"192.0.2.{i}" for i in range(1, 15)]
    services = tuple(ServiceState(f"apps/s{i}", (ip,)) for i, ip in enumerate(ips))
    n1.apply(make_view(services=services, leased=frozenset({"n2"}), lease_annotations=published))
    winners = {ip: election.order_key("n1", ip) < election.order_key("n2", ip) for ip in ips}
    assert set(announcer.owned) == {ip for ip, mine in winners.items() if mine}
    assert {ip for ip, s in n1.states.items() if s == handover.NOT_OWNER} == {ip for ip, m in winners.items() if not m}
