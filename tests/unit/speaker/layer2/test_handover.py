"""handover.plan: what a layer 2 speaker announces after the election, and why not the rest."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onprem_lb.speaker.layer2 import election, handover
from onprem_lb.speaker.layer2.election import Announcement
from onprem_lb.speaker.layer2.handover import Claim

ME, OTHER = "n1", "n2"
IP = "192.0.2.10"
NOW = 100.0


def ann(node: str, ip: str = IP) -> Announcement:
    return Announcement(ip=ip, node=node, interfaces=(), services=("ns/svc",))


def run(**given: Any) -> handover.Plan:
    claims: dict[str, Claim] = given.pop("claims", {})
    alive: set[str] = given.pop("alive", {ME, OTHER})
    args: dict[str, Any] = {
        "me": ME,
        "winners": {IP: ann(ME)},
        "not_eligible": {},
        "current": {},
        "lease_ok": True,
        "now": NOW,
        "releasing": {},
        "blocked": {},
        "probing": set(),
        "announced_once": set(),
        "probe_first": True,
        "handover_timeout": 2.0,
        # who claims an address now: only what a case gives (a new owner's claim ends a handover)
        "heard": handover.Heard(claims, given.pop("claimed", {}), frozenset(alive)),
    }
    args.update(given)
    return handover.plan(**args)


CASES: list[tuple[str, dict[str, Any], bool, str]] = [
    # (case, inputs, announced?, state)
    ("won, already announcing", {"current": {IP: ()}}, True, handover.ANNOUNCING),
    ("won, new, nobody ever claimed it: probe first", {}, False, handover.PROBING),
    ("won, new, probe off", {"probe_first": False}, True, handover.ANNOUNCING),
    ("won, announced before: no second probe", {"announced_once": {IP}}, True, handover.ANNOUNCING),
    ("won, probe running", {"probing": {IP}}, False, handover.PROBING),
    ("won, another host answers: wait", {"blocked": {IP: NOW + 5}}, False, handover.ADDRESS_CONFLICT),
    ("won, conflict retry time passed", {"blocked": {IP: NOW - 1}, "announced_once": {IP}}, True, handover.ANNOUNCING),
    (
        "won, taken from a dead owner",
        {"claims": {IP: Claim(OTHER, NOW - 1.2)}, "alive": {ME}},
        True,
        handover.ANNOUNCING,
    ),
    (
        "lost, new owner silent: keep answering",
        {"winners": {IP: ann(OTHER)}, "current": {IP: ()}},
        True,
        handover.HANDING_OVER,
    ),
    (
        "lost, handover timed out",
        {"winners": {IP: ann(OTHER)}, "current": {IP: ()}, "releasing": {IP: NOW - 0.1}},
        False,
        handover.NOT_OWNER,
    ),
    (
        "lost, new owner claims it",
        {"winners": {IP: ann(OTHER)}, "current": {IP: ()}, "claimed": {IP: frozenset({OTHER})}},
        False,
        handover.NOT_OWNER,
    ),
    ("another node's, never ours", {"winners": {IP: ann(OTHER)}}, False, handover.NOT_OWNER),
    ("fenced: ours, announced", {"current": {IP: ()}, "lease_ok": False}, False, handover.FENCED),
    ("fenced: ours, new", {"lease_ok": False}, False, handover.FENCED),
    (
        "nobody may: no local endpoint here",
        {"winners": {}, "not_eligible": {IP: election.NO_LOCAL_ENDPOINT}},
        False,
        election.NO_LOCAL_ENDPOINT,
    ),
    (
        "ours until now, now nobody's",
        {"winners": {}, "current": {IP: ()}, "not_eligible": {IP: election.NO_SERVING_ENDPOINTS}},
        False,
        election.NO_SERVING_ENDPOINTS,
    ),
]


@pytest.mark.parametrize(("inputs", "announced", "state"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(inputs: dict[str, Any], announced: bool, state: str) -> None:
    step = run(**inputs)
    assert (IP in step.announce) is announced
    assert step.states[IP] == state
    assert (IP in step.probe) is (state == handover.PROBING and IP not in inputs.get("probing", set()))


def test_a_handover_keeps_its_first_deadline() -> None:
    first = run(winners={IP: ann(OTHER)}, current={IP: ()})
    assert first.releasing == {IP: NOW + 2.0}
    later = run(winners={IP: ann(OTHER)}, current={IP: ()}, releasing=first.releasing, now=NOW + 1.5)
    assert later.releasing == {IP: NOW + 2.0} and IP in later.announce
    won_back = run(current={IP: ()}, releasing=first.releasing)
    assert won_back.releasing == {} and won_back.states[IP] == handover.ANNOUNCING


def test_a_takeover_after_a_failure_is_timed_from_the_last_heartbeat() -> None:
    step = run(claims={IP: Claim(OTHER, NOW - 1.25)}, alive={ME})
    assert step.reannounce_after == [1.25]
    assert run(claims={IP: Claim(OTHER, NOW - 1.25)}).reannounce_after == []  # a live owner hands over: no failure


ADDRESSES = [f"192.0.2.{i}" for i in range(1, 7)]


@settings(max_examples=300, deadline=None)
@given(
    winners=st.dictionaries(st.sampled_from(ADDRESSES), st.sampled_from([ME, OTHER, "n3"]), max_size=6),
    current=st.sets(st.sampled_from(ADDRESSES)),
    not_eligible=st.dictionaries(st.sampled_from(ADDRESSES), st.sampled_from([election.NODE_EXCLUDED]), max_size=6),
    lease_ok=st.booleans(),
    blocked=st.sets(st.sampled_from(ADDRESSES)),
)
def test_every_address_gets_a_state_and_only_announced_ones_say_so(
    winners: dict[str, str], current: set[str], not_eligible: dict[str, str], lease_ok: bool, blocked: set[str]
) -> None:
    step = handover.plan(
        me=ME,
        winners={ip: ann(node, ip) for ip, node in winners.items()},
        not_eligible={ip: r for ip, r in not_eligible.items() if ip not in winners},
        current=dict.fromkeys(current, ()),
        lease_ok=lease_ok,
        now=NOW,
        releasing={},
        blocked=dict.fromkeys(blocked, NOW + 1),
        probing=set(),
        announced_once=set(),
        probe_first=False,
        handover_timeout=2.0,
        heard=handover.Heard(alive=frozenset({ME, OTHER})),
    )
    for ip, state in step.states.items():
        assert (ip in step.announce) is (state in handover.ANNOUNCED_STATES), (ip, state)
    assert set(step.announce) <= set(step.states)
    assert set(winners) | set(not_eligible) <= set(step.states)
    if not lease_ok:
        assert step.announce == {}
    # only this node's winners, or its lost addresses during the handover, are announced
    for ip in step.announce:
        assert winners.get(ip) == ME or (ip in current and ip in winners)
