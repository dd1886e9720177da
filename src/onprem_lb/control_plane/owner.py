"""Who holds the control-plane address: a pure rule, no I/O (the package doc says why).

Inputs, as this node sees them now: the members (from the settings file), the ones it hears
(within the quorum window, ready or not, and within ``dead_after`` and ready), which of those
say they hold the address, whether this node's own kube-apiserver is ready, whether it holds
the address now, and whether it has heard the others long enough to trust what it hears.

1. **A majority first.** A node that hears fewer than a majority of the members (itself
   counted; exactly half with the first member by name) holds nothing (quorum.decide): it is
   on the small side of a split, and the other side elects. Members that are not ready count
   here: they are on this side all the same.
2. **Heard long enough.** A node that just started, or just regained its majority, holds
   nothing for ``dead_after``: by then it has heard every member's beats, and so the holder's
   claim, and it does not take an address another node still answers for.
3. **Ready members only.** Eligible are the members heard within ``dead_after`` whose beats
   say their kube-apiserver is ready, and this node when its own is.
4. **The holder keeps it.** Of the eligible members claiming the address, the first in
   MetalLB's order (sha256 of ``node#address``) keeps it; a member coming back never takes it
   from a ready holder (that would cut every client's connections for nothing). With no
   eligible claimer, the first eligible member in that order takes it.

Every node with a majority computes the same holder from the same beats: when the holder dies
or stops being ready, each of the others drops it from its eligible set as it notices, and
until then still sees it claiming; so no node takes the address while another node it hears
holds it, and two claimers (after a healed split) resolve to one within a beat.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from onprem_lb.speaker.layer2 import quorum
from onprem_lb.speaker.layer2.election import order_key

NOT_READY = "notReady"  # the local kube-apiserver does not answer its health check
NO_QUORUM = quorum.NO_QUORUM
SETTLING = "settling"  # heard the members for less than dead_after since it started or regained
ELSEWHERE = "heldElsewhere"  # another ready member holds it, or comes first
NOBODY = "noReadyMember"
STOPPED = "stopped"  # the daemon stopped (its state file says so)


@dataclass(frozen=True)
class Choice:
    holder: str | None  # who holds the address in this node's view (None: nobody may)
    reason: str  # "" when this node holds it, else why not (one of the above)
    cause: str  # the same in words, for the log


def majority(me: str, members: Collection[str], heard: Collection[str]) -> quorum.Hold:
    """Whether ``me``, hearing ``heard``, is on the side of a majority of ``members`` (rule 1)."""
    return quorum.decide(me, members, heard, ())


def choose(
    me: str,
    members: Collection[str],
    address: str,
    *,
    ready: bool,
    holding: bool,
    settled: bool,
    heard: Collection[str],
    heard_ready: Collection[str],
    claiming: Collection[str],
) -> Choice:
    """The holder of ``address`` as ``me`` sees it (see the module doc for the rule).

    ``heard``: members heard within the quorum window (ready or not); ``heard_ready``: those heard
    within ``dead_after`` that say they are ready; ``claiming``: members heard lately saying they
    hold the address; ``holding``: whether ``me`` holds it now."""
    hold = majority(me, members, heard)
    counts = f"hearing {hold.heard} of {hold.known} members"
    if not hold.holds:
        return Choice(None, NO_QUORUM, f"{counts}: not a majority")
    if not settled:
        return Choice(None, SETTLING, "heard the members for less than dead-after: listening first")
    eligible = set(heard_ready) & set(members)
    if ready:
        eligible.add(me)
    claimers = eligible & (set(claiming) | ({me} if holding else set()))
    candidates = claimers or eligible
    if not candidates:
        return Choice(None, NOBODY, "no member's kube-apiserver is ready")
    holder = min(candidates, key=lambda node: order_key(node, address))
    if holder == me:
        return Choice(me, "", f"{counts}; the local kube-apiserver is ready")
    if not ready:
        return Choice(holder, NOT_READY, "the local kube-apiserver is not ready")
    why = "holds it" if holder in claimers else "comes first"
    return Choice(holder, ELSEWHERE, f"{holder} {why}")
