"""The rule for announcing without the API (layer2/quorum.py), over generated sites and splits."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from onprem_lb.speaker.layer2 import quorum

names = st.sampled_from([f"n{i}" for i in range(1, 8)])
sites = st.frozensets(names, min_size=1, max_size=7)


def holds(me: str, known: frozenset[str], group: frozenset[str], on_api: frozenset[str] = frozenset()) -> bool:
    """``me`` in ``group``, hearing exactly the others of its group."""
    return quorum.decide(me, known, group - {me}, on_api & group).holds


@given(site=sites, data=st.data())
@example(site=frozenset({"n1", "n2"}), data=None)  # two nodes cut apart: the first holds, alone
def test_no_two_disjoint_groups_both_hold(site: frozenset[str], data: st.DataObject | None) -> None:
    """Split the speakers of one site any way: at most one group may announce."""
    order = sorted(site)
    if data is None:
        groups = [frozenset({"n1"}), frozenset({"n2"})]
    else:
        labels = data.draw(st.lists(st.integers(0, 3), min_size=len(order), max_size=len(order)))
        groups = [frozenset(n for n, g in zip(order, labels, strict=True) if g == k) for k in set(labels)]
    holding = [g for g in groups if any(holds(me, site, g) for me in g)]
    assert len(holding) <= 1, holding
    for group in groups:  # within a group every member reaches the same verdict
        assert len({holds(me, site, group) for me in group}) == 1


@given(site=sites)
def test_everyone_together_holds_and_a_node_alone_only_on_a_one_node_site(site: frozenset[str]) -> None:
    for me in site:
        assert holds(me, site, site)
        alone = holds(me, site, frozenset({me}))
        assert alone == (len(site) == 1 or (len(site) == 2 and me == min(site)))


def test_the_stated_answers() -> None:
    three = frozenset({"n1", "n2", "n3"})
    assert holds("n2", three, frozenset({"n2", "n3"}))  # 2 of 3
    assert not holds("n1", three, frozenset({"n1"}))  # 1 of 3
    two = frozenset({"a", "b"})
    assert holds("a", two, frozenset({"a"})) and not holds("b", two, frozenset({"b"}))
    assert holds("solo", frozenset({"solo"}), frozenset({"solo"}))
    four = frozenset({"n1", "n2", "n3", "n4"})
    assert holds("n2", four, frozenset({"n1", "n2"})) and not holds("n3", four, frozenset({"n3", "n4"}))


def test_a_peer_on_the_api_means_this_node_is_only_cut_off_from_it() -> None:
    three = frozenset({"n1", "n2", "n3"})
    hold = quorum.decide("n1", three, {"n2", "n3"}, {"n3"})
    assert not hold.holds and hold.reason == quorum.API_ELSEWHERE and "reach the API" in hold.describe()


def test_a_speaker_that_never_saw_the_api_never_holds() -> None:
    hold = quorum.decide("n1", None, {"n2", "n3"}, set())
    assert not hold.holds and hold.reason == quorum.NOT_READY


def test_unknown_peers_do_not_count() -> None:
    known = frozenset({"n1", "n2", "n3"})
    assert not quorum.decide("n1", known, {"x", "y", "z"}, set()).holds
