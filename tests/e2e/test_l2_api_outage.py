"""Traffic through an API-server outage, in the layer 2 netns lab: kube-apiserver stopped
(SIGSTOP: every request hangs), the speakers holding by membership (speaker/layer2/quorum.py),
observed from the client with ARP every 10 ms. Fast Leases (renew deadline 2.5 s) so that each
outage is a few seconds long and still well past every deadline and Lease duration."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import signal
import time
from typing import Any

from tests.e2e.test_l2_speaker import FAST_LEASE, _probe_in_background, announced, lab, ns, pytestmark
from tests.support.controlplane import wait_for
from tests.support.l2lab import NODES, L2Lab, metallb_first

__all__ = ["lab", "ns", "pytestmark"]  # the lab fixtures and marks of the layer 2 e2e tests

PAST_THE_LEASE = 4.0 + 1.0  # FAST_LEASE's Lease duration, and a second


def replies_of(prober: Any, lab: L2Lab, timeout: float = 60) -> list[tuple[float, str]]:
    """(seconds since the probe started, node or MAC) per ARP reply."""
    out = json.loads(prober.communicate(timeout=timeout)[0])
    return [(t, lab.owner_of_mac(mac) or mac) for t, mac in out["replies"]]


def longest_silence(replies: list[tuple[float, str]], start: float, end: float) -> float:
    times = [start] + [t for t, _ in replies if start <= t <= end] + [end]
    return max(b - a for a, b in itertools.pairwise(times))


def holding_everywhere(lab: L2Lab) -> None:
    for node in NODES:
        wait_for(f"{node} holds by membership", lambda n=node: "holding by membership" in lab.speakers[n].log(), 15)


def test_every_address_keeps_answering_while_the_api_is_down_and_nothing_moves_when_it_returns(
    lab: L2Lab, ns: str
) -> None:
    ip, owner = announced(lab, ns, "outage", *FAST_LEASE)
    prober = _probe_in_background(ip, 1.0 + 3 * PAST_THE_LEASE + 4.0)
    time.sleep(1.0)
    with lab.api_down():
        time.sleep(3 * PAST_THE_LEASE)  # well past every renew deadline and Lease
        holding_everywhere(lab)
    returned = time.time()
    replies = replies_of(prober, lab)
    assert {who for _t, who in replies} == {owner}, "the address moved or gained an owner"
    silence = longest_silence(replies, 0.5, replies[-1][0])
    assert silence < 0.2, f"the address went silent for {silence:.2f} s during the outage"
    # the API back: every speaker renews and announces by Lease again, nothing moved
    for node in NODES:
        wait_for(f"{node} by Lease again", lambda n=node: "announcing by Lease" in lab.speakers[n].log(), 15)
    leases = {item["metadata"]["name"]: item for item in lab.get("leases", "-n", "metallb-system")["items"]}
    for node in NODES:
        renewed = leases[f"speaker-{node}"]["spec"]["renewTime"]
        at = dt.datetime.fromisoformat(renewed.replace("Z", "+00:00")).timestamp()
        assert at > returned - 1.0, f"{node}'s Lease not renewed since the API returned ({renewed})"
    assert lab.owners(ip) == {owner}
    time.sleep(PAST_THE_LEASE)  # past membership mode's end: still the one owner
    assert lab.owners(ip) == {owner}


def test_an_owner_killed_during_the_outage_is_replaced_by_its_successor(lab: L2Lab, ns: str) -> None:
    ip, owner = announced(lab, ns, "outage-kill", *FAST_LEASE)
    successor = metallb_first([n for n in NODES if n != owner], ip)
    try:
        with lab.api_down():
            time.sleep(PAST_THE_LEASE)
            holding_everywhere(lab)
            prober = _probe_in_background(ip, 5.0)
            time.sleep(1.5)
            killed = time.monotonic()
            lab.kill_node(owner)
            replies = replies_of(prober, lab)
            after = [(t, who) for t, who in replies if who == successor]
            assert after, f"{successor} never answered: {replies[-5:]}"
            assert {who for _t, who in replies} <= {owner, successor}
            last_owner = max(t for t, who in replies if who == owner)
            first_successor = min(t for t, _ in after)
            gap = first_successor - last_owner
            assert gap < 1.0, f"replaced after {gap:.2f} s without the API"
            assert time.monotonic() - killed < 10
    finally:
        lab.revive_node(owner)
    lab.start_speaker(owner, *FAST_LEASE)
    lab.wait_ready((owner,))
    lab.wait_owner(ip, owner, timeout=15)  # back with the API: MetalLB's order again


def test_a_node_cut_off_from_the_others_during_the_outage_goes_quiet_first(lab: L2Lab, ns: str) -> None:
    """A 2/1 split while the API is down: the lone owner hears no majority and goes quiet before
    the two others, a majority, declare it dead and take its address."""
    ip, owner = announced(lab, ns, "outage-split", *FAST_LEASE)
    successor = metallb_first([n for n in NODES if n != owner], ip)
    with lab.api_down():
        time.sleep(PAST_THE_LEASE)
        holding_everywhere(lab)
        prober = _probe_in_background(ip, 4.0)
        time.sleep(1.0)
        lab.cut_heartbeats(owner)
        try:
            replies = replies_of(prober, lab)
            last_owner = max(t for t, who in replies if who == owner)
            first_successor = min((t for t, who in replies if who == successor), default=None)
            assert first_successor is not None, f"{successor} never answered: {replies[-5:]}"
            assert last_owner < first_successor, (
                f"two owners: {owner} until {last_owner}, {successor} from {first_successor}"
            )
            assert first_successor - last_owner < 1.0
            assert {who for _t, who in replies} <= {owner, successor}
            assert "not a majority" in lab.speakers[owner].log()
        finally:
            lab.mend_heartbeats(owner)
        # heard again, the owner is back in the majority and takes its address back, gently
        lab.wait_owner(ip, owner, timeout=10)
    lab.wait_owner(ip, owner)


def test_a_speaker_restarted_during_the_outage_waits_for_the_api(lab: L2Lab, ns: str) -> None:
    """It cannot list the Services or the config it would announce from, so it announces nothing
    and sends no heartbeat: the others treat it as gone. With the API back it joins."""
    ip, owner = announced(lab, ns, "outage-restart", *FAST_LEASE)
    successor = metallb_first([n for n in NODES if n != owner], ip)
    with lab.api_down():
        time.sleep(PAST_THE_LEASE)
        holding_everywhere(lab)
        lab.speakers[owner].stop(signal.SIGKILL)
        restarted = lab.start_speaker(owner, *FAST_LEASE)
        lab.wait_owner(ip, successor, timeout=5)
        time.sleep(3.0)
        assert "speaker ready" not in restarted.log()
        assert lab.owners(ip) == {successor}
    lab.wait_ready((owner,), timeout=30)
    lab.wait_owner(ip, owner, timeout=15)
