"""The step after the election, in layer 2 mode: which addresses this node announces now, which it
keeps answering for during a handover, which it drops, and why. Pure: no sockets, no clock, no
metrics; the speaker passes the time and the membership view in and acts on the ``Plan``.

Rules:

* an address this node won is announced at once if it already announces it; a new one waits
  for an RFC 5227 probe when nobody was ever heard claiming it (``probe_first``), or for the
  retry time after a probe found another host answering (``conflict``);
* an address this node lost stays announced until the new owner's heartbeat claims it, or
  ``handover_timeout`` passes: the client never meets silence during a planned move;
* a speaker that cannot renew its Lease announces nothing (``fenced``): the others take over.

Every address the node knows of gets a state, announced or not, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from onprem_lb.speaker.layer2.election import Announcement

ANNOUNCING = "announcing"
HANDING_OVER = "handingOver"  # lost, still answering until the new owner claims it
NOT_OWNER = "notOwner"  # another node was elected
FENCED = "fenced"  # our Lease is not renewed: we may not announce
PROBING = "probing"  # won, waiting for the conflict probe
ADDRESS_CONFLICT = "addressConflict"  # won, but another host answers for it; retried later
HOLDING = "holdingByMembership"  # announced while the API cannot be reached (layer2/quorum.py)
ANNOUNCED_STATES = (ANNOUNCING, HANDING_OVER, HOLDING)


@dataclass(frozen=True)
class Claim:
    """The last peer heard claiming an address (members.Peer's relevant part)."""

    node: str
    last_seen: float


@dataclass(frozen=True)
class Heard:
    """What the heartbeats said when the plan was made (members.Members.claims), frozen: per
    address, the last peer heard claiming it (alive or not) and the live peers claiming it now;
    and the live peers."""

    last_claims: Mapping[str, Claim] = field(default_factory=dict)
    claimed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    alive: frozenset[str] = frozenset()


@dataclass
class Plan:
    announce: dict[str, tuple[str, ...]] = field(default_factory=dict)  # address -> interfaces (empty: all)
    probe: list[str] = field(default_factory=list)  # addresses to probe before taking them
    releasing: dict[str, float] = field(default_factory=dict)  # address -> handover deadline
    # seconds from the previous owner's last heartbeat to our taking over, per takeover after a failure
    reannounce_after: list[float] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)  # address -> state (see above, or election's reasons)


def plan(
    *,
    me: str,
    winners: Mapping[str, Announcement],
    not_eligible: Mapping[str, str],
    current: Mapping[str, tuple[str, ...]],
    lease_ok: bool,
    now: float,
    releasing: Mapping[str, float],
    blocked: Mapping[str, float],
    probing: frozenset[str] | set[str],
    announced_once: frozenset[str] | set[str],
    probe_first: bool,
    handover_timeout: float,
    heard: Heard,
) -> Plan:
    """What to announce now. ``current``: what we announce (address -> interfaces); ``releasing``:
    handovers in progress; ``blocked``: address -> retry time after a conflict; ``probing``:
    probes running; ``announced_once``: addresses we announced before (no second probe);
    ``heard``: the peers' claims and liveness."""
    out = Plan(releasing=dict(releasing))
    out.states = dict(not_eligible)
    mine = {ip: a for ip, a in winners.items() if a.node == me}
    for ip, ann in winners.items():
        if ann.node != me:
            out.states[ip] = NOT_OWNER
    if not lease_ok:
        out.releasing.clear()
        for ip in set(mine) | set(current):
            out.states[ip] = FENCED
        return out
    for ip, ann in mine.items():
        out.releasing.pop(ip, None)
        if ip in current:
            out.announce[ip] = ann.interfaces
            out.states[ip] = ANNOUNCING
            continue
        if blocked.get(ip, 0.0) > now:
            out.states[ip] = ADDRESS_CONFLICT
            continue
        if ip in probing:
            out.states[ip] = PROBING
            continue
        previous = heard.last_claims.get(ip)
        if probe_first and previous is None and ip not in announced_once:
            out.probe.append(ip)
            out.states[ip] = PROBING
            continue
        out.announce[ip] = ann.interfaces
        out.states[ip] = ANNOUNCING
        if previous is not None and previous.node not in heard.alive:
            out.reannounce_after.append(max(0.0, now - previous.last_seen))
    for ip, interfaces in current.items():
        if ip in out.announce:
            continue
        winner = winners.get(ip)
        deadline = out.releasing.setdefault(ip, now + handover_timeout)
        new_owner_claims = winner is not None and winner.node in heard.claimed.get(ip, ())
        if winner is not None and not new_owner_claims and now < deadline:
            out.announce[ip] = interfaces  # keep answering until the next owner does
            out.states[ip] = HANDING_OVER
        else:
            out.releasing.pop(ip, None)  # its state is already told: notOwner, or why nobody may announce it
    return out
