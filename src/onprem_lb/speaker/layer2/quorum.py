"""Who may keep announcing while the API server cannot be reached: a pure rule, no I/O.

While a speaker renews its Lease, the Lease is the authority (agent.py). When the renew deadline
passes without a renewal, the speaker does not go quiet at once: the API server may be down for
everyone (an upgrade, a certificate renewal, a control-plane node rebooting), and then every
address of the cluster would go dark with it. It *holds by membership* instead, announcing what
the election over the signed heartbeats gives it, as long as all of these are true:

1. **It was ready and saw the API once** (``known`` is set): the last set of speakers it saw
   with a valid Lease, itself included, frozen when its own renewals stopped succeeding. A
   speaker that starts while the API is down never gets here: it has no config and no Services
   it could check, so it announces nothing and sends no heartbeats until it has synced.
2. **Nobody it hears goes by Leases** (``on_api`` empty): a peer that renews its Lease and has
   been on the API for a Lease duration says so in its heartbeats. Then the API is not down,
   only this node is cut off from it, and the Lease rule stands: this node goes quiet and the
   nodes on the API take its addresses (they no longer count it, its Lease having run out). A
   peer just back from the outage still counts who it hears, so the order in which speakers
   reach the returning API moves nothing.
3. **It hears a majority of ``known``** (itself counted) within the quorum window, which is
   shorter than the time after which the others declare a silent node dead. A peer that is
   quiet itself counts as heard: it is on this side of any split all the same, and two quiet
   speakers that hear each other again (a healed split) must be able to regain the majority
   they form. With exactly half, the half that holds the first node of ``known`` in name order
   wins (a two-node site keeps the addresses when the second node dies or is cut off, not when
   the first does). A one-node site always holds.
4. **Quiet before, it has been heard first** (``REGAINING``): a speaker that announced nothing
   and now has its majority beats as live for ``dead_after`` before it announces, so the
   speakers regaining with it count it, and it them, before any of them elects.

Why this never gives two owners for one address: every holding speaker hears a majority of the
same ``known`` set, and two disjoint groups cannot both hold a majority of one set (nor both hold
exactly half with the first node). So during an outage only one group of speakers announces, and
within it every speaker hears every other one (each watches every speaker while the API is
unreachable; one not watched until then counts live for ``dead_after`` while it has a valid
Lease, members.Members.unconfirmed), so they elect from the same live set: the peers heard that
announce or regain, whether or not they were in its own ``known`` (a speaker whose ``known``
missed a peer, cut off when the outage began, still elects as that peer does). A speaker cut
off from the group stops hearing the majority within the quorum window and goes quiet before
the others declare it dead (``dead_after``) and take its addresses. What it does not cover: two
groups whose ``known`` sets differ so much that each holds a majority of its own (it takes
speakers that joined or left in the renew period before the outage, on both sides of a split),
and one-way packet loss, both of which the Lease rule shares.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

# why a speaker whose Lease is not renewed announces nothing (address states and the log)
NOT_READY = "fenced"  # it never saw the API, or it is stopping: no knowledge it could check
API_ELSEWHERE = "fenced"  # a peer it hears still reaches the API: the Lease rule stands
NO_QUORUM = "noQuorum"  # it hears fewer than a majority of the speakers it last knew
REGAINING = "regainingQuorum"  # quiet until now, a majority again: beating as live before announcing


@dataclass(frozen=True)
class Hold:
    holds: bool
    reason: str  # "" when it holds, else one of the reasons above (an address state)
    heard: int  # speakers of ``known`` heard, itself included
    known: int
    cause: str = ""  # the reason in words, for the log

    def describe(self) -> str:
        counts = f"hearing {self.heard} of {self.known} speakers"
        return f"{counts}; {self.cause}" if self.cause else counts


def decide(me: str, known: Collection[str] | None, heard: Collection[str], on_api: Collection[str]) -> Hold:
    """Whether ``me``, whose Lease is not renewed, may keep announcing (see the module doc).
    ``heard``: peers heard within the quorum window; ``on_api``: those of them that still renew."""
    if known is None:
        return Hold(False, NOT_READY, 0, 0, "it has not synced with the API server since it started")
    members = set(known) | {me}
    present = (set(heard) & members) | {me}
    if set(on_api) & present:
        cause = "speakers it hears still reach the API server: they take over"
        return Hold(False, API_ELSEWHERE, len(present), len(members), cause)
    twice = 2 * len(present)
    first = min(members)
    holds = twice > len(members) or (twice == len(members) and first in present)
    if holds:
        return Hold(True, "", len(present), len(members))
    return Hold(False, NO_QUORUM, len(present), len(members), "not a majority of the speakers it last knew")


def regaining(decision: Hold) -> Hold:
    """``decision`` (it holds) while the speaker, quiet until now, first makes itself heard."""
    cause = "a majority again: announcing once the speakers it hears have heard it"
    return Hold(False, REGAINING, decision.heard, decision.known, cause)
