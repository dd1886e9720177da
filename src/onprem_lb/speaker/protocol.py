"""The interface between the speaker agent and an announcing protocol (layer 2, BGP).

The agent calls ``apply`` with a fresh View whenever anything it watches changes (coalesced),
and the protocol brings the network in line: desired state from the view (pure), then apply,
then status. Background work (sockets, status writers) runs in ``run``; ``wake`` asks the agent
for another decision soon (a probe ended, a handover deadline passed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from onprem_lb.k8s import Informer
from onprem_lb.speaker.view import View


class Announcing(Protocol):
    name: str  # "layer2", "bgp": in logs and metrics

    def informers(self) -> Sequence[Informer[Any]]:
        """Caches of the protocol's own (its status objects); the agent waits for them to fill."""

    def lease_annotations(self) -> Mapping[str, str]:
        """What the protocol publishes on this speaker's Lease (layer 2: its heartbeat address)."""

    async def start(self, wake: Callable[[], None]) -> None:
        """Open what the protocol needs (sockets) before the first decision."""

    async def prepare(self, view: View) -> None:
        """Once, after the caches are filled and before the first ``apply`` (layer 2 listens to
        its peers' heartbeats first, so as not to claim what they announce)."""

    def apply(self, view: View) -> None:
        """Announce what the view calls for now; never blocks."""

    async def run(self, view: Callable[[], View]) -> None:
        """Background work, until cancelled."""

    async def stop(self, view: Callable[[], View]) -> None:
        """Planned stop: hand over, then go quiet and remove this node's status objects."""

    def close(self) -> None:
        """Release sockets; called once, last."""
