"""What each speaker publishes about the Service addresses it knows, and what each state means.

Every speaker computes, per address and protocol, whether it announces it and, when it does not,
why (layer2/election.py, layer2/handover.py, layer2/quorum.py, bgp/announce.py). It publishes
that on its own Lease (annotations ``onprem-lb.io/layer2-states`` and ``onprem-lb.io/bgp-states``)
at each renewal, so that ``onprem-lb status`` can show, from the API alone, the state and reason
on every node. An address a speaker knows and does not list is ``notOwner`` (another node won):
the common case is left out to keep the Lease small. The listing is capped at ``MAX_LISTED``
addresses; past that it says how many were left out.

While the API cannot be reached, nothing is published (the Lease is not renewed): the last
states written stay on the Lease, and ``status`` shows how old they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

ANNOTATIONS = {"layer2": "onprem-lb.io/layer2-states", "bgp": "onprem-lb.io/bgp-states"}
NOT_OWNER = "notOwner"
MAX_LISTED = 4000
_LEFT_OUT = "leftOut"

# state -> what it means for the address on that node, in an operator's words
MEANINGS = {
    "announcing": "announces it",
    "handingOver": "hands it to the new owner (answers until the new owner claims it)",
    "holdingByMembership": "announces it without the API: it hears a majority of the speakers",
    "notOwner": "another node was elected",
    "fenced": "may not announce: its Lease is not renewed (or it has not synced with the API since it started)",
    "noQuorum": "does not announce: the API is unreachable and it hears too few speakers",
    "regainingQuorum": "hears a majority again without the API: announces once the others heard it (under a second)",
    "probing": "won it, checking that no other host uses the address",
    "addressConflict": "won it, but another host answers for the address (an AddressConflict Event says which)",
    "noMatchingAdvertisement": "no advertisement selects the address's pool",
    "nodeNotSelected": "the advertisements for the pool do not select this node",
    "noLocalEndpoint": "externalTrafficPolicy Local, and no ready endpoint on this node",
    "nodeExcluded": "the node is excluded (node.kubernetes.io/exclude-from-external-load-balancers)",
    "nodeUnknown": "the node is not known to the API",
    "noServingEndpoints": "the Service has no serving endpoint on any node",
    "notInAnyPool": "the address is in no IPAddressPool",
    "speakerNotLive": "the speaker is not live (Lease or heartbeats)",
    "noPeerForThisNode": "no BGPPeer selects this node",
}


def encode(states: Mapping[str, str]) -> str:
    """``{state: [address, ...]}`` as compact JSON, without ``notOwner``, at most MAX_LISTED."""
    grouped: dict[str, list[str]] = {}
    listed = 0
    left_out = 0
    for address, state in sorted(states.items(), key=lambda item: (item[1] != "announcing", item[0])):
        if state == NOT_OWNER:
            continue
        if listed >= MAX_LISTED:
            left_out += 1
            continue
        grouped.setdefault(state, []).append(address)
        listed += 1
    out: dict[str, object] = {state: sorted(addresses) for state, addresses in sorted(grouped.items())}
    if left_out:
        out[_LEFT_OUT] = left_out
    return json.dumps(out, separators=(",", ":"))


class Publisher:
    """What a protocol puts on its Lease at each renewal (every renew period, on the renewal's
    path): encoded again only when the protocol has replaced its states since the last time."""

    def __init__(self, protocol: str) -> None:
        self.annotation = ANNOTATIONS[protocol]
        self._of: Mapping[str, str] | None = None
        self._text = encode({})

    def annotations(self, states: Mapping[str, str]) -> dict[str, str]:
        if states is not self._of:  # the protocols replace their dict on every change, never edit it
            self._of, self._text = states, encode(states)
        return {self.annotation: self._text}


def decode(text: str | None) -> tuple[dict[str, str], int] | None:
    """(address -> state, addresses left out) from an annotation's value; None when there is
    none or it cannot be read (a speaker of another version, a hand-edited Lease)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    states: dict[str, str] = {}
    left_out = data.get(_LEFT_OUT, 0)
    for state, addresses in data.items():
        if state == _LEFT_OUT or not isinstance(addresses, list):
            continue
        states.update({str(a): str(state) for a in addresses})
    return states, left_out if isinstance(left_out, int) else 0
