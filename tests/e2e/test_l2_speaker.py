"""The layer 2 speaker in the lab, observed from a client with real tools.

Three nodes and a client in network namespaces on internal bridges; a real kube-apiserver on
the management bridge; the onprem-lb controller allocating; one speaker per node.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.controlplane import SRC, wait_for
from tests.support.l2lab import CLIENT, L2PROBE, NODES, L2Lab, in_ns, metallb_first, service_manifest

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("arping") or not shutil.which("ndisc6"),
        reason="the lab needs root, arping and ndisc6 (make host-deps installs them)",
    ),
    # failover and handover gaps are measured: `make test` runs these alone
    pytest.mark.timing,
]

FAST_LEASE = ("--lease-duration", "4", "--renew-deadline", "2.5", "--renew-period", "0.5")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[L2Lab]:
    the_lab = L2Lab(tmp_path_factory.mktemp("l2lab"))
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def ns(lab: L2Lab, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "e2e-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    lab.kubectl("create", "namespace", name)
    yield name
    lab.stop_speakers(signal.SIGKILL)
    lab.kubectl("delete", "namespace", name, "--wait=false")


def service(lab: L2Lab, ns: str, name: str, **kw: Any) -> None:
    lab.apply(service_manifest(ns, name, **kw))


def announced(lab: L2Lab, ns: str, name: str, *speaker_args: str) -> tuple[str, str]:
    """A single-address Service, speakers on every node; (its address, the node announcing it)."""
    service(lab, ns, name)
    (ip,) = lab.service_ips(ns, name)
    lab.start_speakers(*speaker_args)
    lab.wait_ready()
    owner = metallb_first(list(NODES), ip)
    lab.wait_owner(ip, owner)
    lab.wait_settled(ip, owner)
    return ip, owner


def test_exactly_one_mac_answers_v4_and_v6_with_status_and_events(lab: L2Lab, ns: str) -> None:
    service(lab, ns, "web", families="[IPv4, IPv6]", policy="RequireDualStack")
    v4, v6 = lab.service_ips(ns, "web", 2)
    lab.start_speakers()
    lab.wait_ready()
    for ip in (v4, v6):
        owner = metallb_first(list(NODES), ip)
        lab.wait_owner(ip, owner)
        # the real tools agree: one MAC, the owner's
        tool = lab.arping_macs if ip == v4 else lab.ndisc6_macs
        assert tool(ip) == {lab.mac(owner)}, ip
    # ServiceL2Status names the node and interface for each announcing node
    statuses = wait_for(
        "ServiceL2Status objects",
        lambda: [s["status"] for s in lab.get("servicel2statuses", "-n", "metallb-system")["items"]
                 if s.get("status", {}).get("serviceNamespace") == ns] or None,
    )  # fmt: skip
    owners = {metallb_first(list(NODES), v4), metallb_first(list(NODES), v6)}
    wait_for(
        "one status per announcing node",
        lambda: {s["status"]["node"] for s in lab.get("servicel2statuses", "-n", "metallb-system")["items"]} == owners,
    )
    assert all(s["serviceName"] == "web" and s["interfaces"] == [{"name": "eth0"}] for s in statuses)
    wait_for("nodeAssigned events", lambda: any(r == "nodeAssigned" for r, _m in lab.events(ns, "web")))


def test_unicast_neighbour_probes_are_answered(lab: L2Lab, ns: str) -> None:
    """NUD: the client's kernel re-checks a stale entry with unicast ARP / NS; the speaker answers."""
    service(lab, ns, "nud", families="[IPv4, IPv6]", policy="RequireDualStack")
    ips = lab.service_ips(ns, "nud", 2)
    lab.start_speakers()
    lab.wait_ready()
    for ip in ips:
        owner = metallb_first(list(NODES), ip)
        lab.wait_owner(ip, owner)
        fam = "-6" if ":" in ip else "-4"
        tree = "ipv6" if ":" in ip else "ipv4"
        in_ns(CLIENT, "sysctl", "-qw", f"net.{tree}.neigh.eth0.delay_first_probe_time=1")
        in_ns(CLIENT, "ip", fam, "neigh", "replace", ip, "lladdr", "02:00:00:00:00:01", "dev", "eth0", "nud", "stale")
        # any packet to the address moves STALE -> DELAY -> PROBE: unicast to the (wrong) MAC...
        in_ns(CLIENT, sys.executable, "-c",
              f"import socket; s=socket.socket(socket.AF_INET{'6' if ':' in ip else ''}, socket.SOCK_DGRAM); "
              f"s.sendto(b'x', ('{ip}', 9))")  # fmt: skip

        # ...which nobody answers, then multicast/broadcast: the owner answers and the entry is fixed.
        def entry(ip: str = ip, fam: str = fam) -> str:
            return in_ns(CLIENT, "ip", fam, "neigh", "show", ip, "dev", "eth0").stdout

        def resolved(ip: str = ip, mac: str = lab.mac(owner)) -> bool:
            return mac in entry(ip)

        wait_for(f"{ip} resolved to the owner", resolved, 20, 0.2)
        # now a true unicast probe to the owner's MAC: STALE with the right MAC -> REACHABLE
        in_ns(CLIENT, "ip", fam, "neigh", "replace", ip, "lladdr", lab.mac(owner), "dev", "eth0", "nud", "stale")
        in_ns(CLIENT, sys.executable, "-c",
              f"import socket; s=socket.socket(socket.AF_INET{'6' if ':' in ip else ''}, socket.SOCK_DGRAM); "
              f"s.sendto(b'x', ('{ip}', 9))")  # fmt: skip
        wait_for(f"{ip} REACHABLE after a unicast probe", lambda: "REACHABLE" in entry(), 15, 0.2)


def test_local_traffic_policy_follows_endpoints(lab: L2Lab, ns: str) -> None:
    service(lab, ns, "local", nodes=("n2",), extra="externalTrafficPolicy: Local")
    (ip,) = lab.service_ips(ns, "local")
    lab.start_speakers()
    lab.wait_ready()
    lab.wait_owner(ip, "n2")
    service(lab, ns, "local", nodes=("n3",), extra="externalTrafficPolicy: Local")
    lab.wait_owner(ip, "n3")
    service(lab, ns, "local", nodes=("n1", "n3"), extra="externalTrafficPolicy: Local")
    lab.wait_owner(ip, metallb_first(["n1", "n3"], ip))
    lab.kubectl("delete", "endpointslice", "-n", ns, "local-lab")
    lab.wait_owner(ip, None)  # no endpoint anywhere: nobody answers


def test_node_selectors_and_interfaces_are_respected(lab: L2Lab, ns: str) -> None:
    lab.apply("""
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: segment-b, namespace: metallb-system}
spec:
  addresses: [203.0.113.240/28]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: segment-b, namespace: metallb-system}
spec:
  ipAddressPools: [segment-b]
  interfaces: [eth1]
  nodeSelectors:
    - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [n2]}
""")
    try:
        service(lab, ns, "bside", annotations="{metallb.io/address-pool: segment-b}")
        (ip,) = lab.service_ips(ns, "bside")
        assert ip.startswith("203.0.113.")
        lab.start_speakers()
        lab.wait_ready()
        lab.wait_owner(ip, "n2", iface="eth1")
        assert lab.macs(ip, "eth1") == {lab.mac("n2", "eth1")}  # n2's eth1, not its eth0 MAC
        assert lab.macs(ip, "eth0") == set()  # not announced on segment A at all
        lab.kill_node("n2")  # the only selected node: nobody else may take it
        try:
            time.sleep(2.5)
            assert lab.macs(ip, "eth1") == set()
        finally:
            lab.revive_node("n2")
    finally:
        lab.kubectl("delete", "l2advertisement,ipaddresspool", "-n", "metallb-system", "segment-b")


def _probe_in_background(ip: str, duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", CLIENT, sys.executable, str(L2PROBE), "watch", "eth0", ip,
         "--interval", "0.01", "--duration", str(duration)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _gap_around(action: Callable[[], object], ip: str, duration: float = 8.0) -> tuple[float, set[str]]:
    """Probe every 10 ms, do ``action`` about 2 s in; return (longest silence, MACs in the last second)."""
    prober = _probe_in_background(ip, duration)
    time.sleep(2.0)
    action()
    out = prober.communicate(timeout=duration + 30)[0]
    replies = json.loads(out)["replies"]
    times = [t for t, _m in replies]
    macs = [m for _t, m in replies]
    assert times and times[-1] > duration - 1.0, "nobody answered at the end of the probe"
    gap = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    return gap, {m for t, m in zip(times, macs, strict=True) if t > times[-1] - 1.0}


def test_killed_owner_node_is_replaced(lab: L2Lab, ns: str) -> None:
    ip, owner = announced(lab, ns, "failover")
    try:
        gap, final = _gap_around(lambda: lab.kill_node(owner), ip)
        survivors = [n for n in NODES if n != owner]
        assert final == {lab.mac(metallb_first(survivors, ip))}
        assert gap < 2.5, f"unplanned failover took {gap:.2f} s"
    finally:
        lab.revive_node(owner)
    # back as a new life: the address returns to it (MetalLB's order), handed over by the node
    # that took it, and not refused as another host's (the taker answers ARP until then)
    lab.start_speaker(owner)
    lab.wait_ready((owner,))
    lab.wait_owner(ip, owner, timeout=10)
    assert "AddressConflict" not in {reason for reason, _message in lab.events(ns, "failover")}
    assert "already answers for it" not in lab.speakers[owner].log()


def test_stopped_speaker_hands_over_first(lab: L2Lab, ns: str) -> None:
    ip, owner = announced(lab, ns, "handover")
    spk = lab.speakers[owner]
    gap, final = _gap_around(lambda: spk.stop(signal.SIGTERM), ip)
    assert spk.proc.returncode == 0
    assert "handed over; quiet" in spk.log()
    assert final == {lab.mac(metallb_first([n for n in NODES if n != owner], ip))}
    assert gap < 0.5, f"planned handover left a {gap:.3f} s gap"
    # its Lease is gone at once, not after expiry
    leases = lab.get("leases", "-n", "metallb-system")["items"]
    assert f"speaker-{owner}" not in {item["metadata"]["name"] for item in leases}


def test_excluded_node_hands_over_without_a_gap(lab: L2Lab, ns: str) -> None:
    """Labelling a node out of load balancing (as before maintenance) moves its VIPs gently."""
    ip, owner = announced(lab, ns, "drain")
    label = "node.kubernetes.io/exclude-from-external-load-balancers"
    try:
        gap, final = _gap_around(lambda: lab.kubectl("label", "node", owner, f"{label}=true"), ip)
        assert final == {lab.mac(metallb_first([n for n in NODES if n != owner], ip))}
        assert gap < 0.5, f"exclusion left a {gap:.3f} s gap"
    finally:
        lab.kubectl("label", "node", owner, f"{label}-")
    lab.wait_owner(ip, owner)  # back once the label is gone


def test_link_flap_on_the_owner_is_followed(lab: L2Lab, ns: str) -> None:
    ip, owner = announced(lab, ns, "flap")
    in_ns(f"olb-{owner}", "ip", "link", "set", "eth0", "down")
    try:
        wait_for("the speaker sees eth0 go", lambda: "interfaces changed" in lab.speakers[owner].log(), 15, 0.2)
    finally:
        in_ns(f"olb-{owner}", "ip", "link", "set", "eth0", "up")
    wait_for("the speaker sees eth0 back", lambda: lab.speakers[owner].log().count("interfaces changed") >= 2, 15, 0.2)
    lab.wait_owner(ip, owner)


def test_partitioned_node_goes_quiet_and_is_replaced(lab: L2Lab, ns: str) -> None:
    """Cut off from the API server, the owner goes quiet at its renew deadline (2.5 s after its
    last renewal); its heartbeats say "fenced", so the next node takes over at once, before the
    owner's Lease (4 s) runs out. Times are the client's ARP replies (every 10 ms) against the
    renewTime of the owner's last renewal, both wall clock on this machine."""
    ip, owner = announced(lab, ns, "partition", *FAST_LEASE)
    successor = metallb_first([n for n in NODES if n != owner], ip)
    prober = _probe_in_background(ip, 9.0)
    time.sleep(1.0)
    lab.partition(owner)
    try:
        out = json.loads(prober.communicate(timeout=40)[0])
        lease = lab.get("lease", "-n", "metallb-system", f"speaker-{owner}")
        renewed = dt.datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00")).timestamp()
        by = {lab.mac(owner): owner, lab.mac(successor): successor}
        replies = [(out["started"] + t - renewed, by.get(mac, mac)) for t, mac in out["replies"]]
        last_owner = max(t for t, who in replies if who == owner)
        first_successor = min((t for t, who in replies if who == successor), default=None)
        assert {who for _t, who in replies} <= {owner, successor}, replies
        assert first_successor is not None, f"{successor} never answered: {replies[-5:]}"
        timeline = f"owner last answered {last_owner:.2f} s, {successor} first {first_successor:.2f} s after renewing"
        assert last_owner < 2.5 + 0.3, f"not quiet at the renew deadline: {timeline}"
        assert last_owner < first_successor, f"two owners at once: {timeline}"
        assert first_successor < 4.0, f"replaced only when the Lease ran out: {timeline}"
        assert "cannot renew lease" in lab.speakers[owner].log()
    finally:
        lab.heal(owner)
    lab.wait_owner(ip, owner, timeout=20)  # back in the election once it renews again


ROGUE_GARP = """
import socket, sys
from onprem_lb.speaker.layer2.frames import gratuitous_arp, packed
iface, ip = sys.argv[1], sys.argv[2]
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
    s.bind((iface, 0))
    mac = s.getsockname()[4]
    for frame in gratuitous_arp(mac, packed(ip)):
        s.send(frame)
"""


def client_neighbour(lab: L2Lab, ip: str) -> str | None:
    """The node the client's own kernel sends ``ip``'s traffic to (its neighbour entry)."""
    found = re.search(r"lladdr ([0-9a-f:]{17})", in_ns(CLIENT, "ip", "neigh", "show", ip, "dev", "eth0").stdout)
    return lab.owner_of_mac(found.group(1)) if found else None


def test_an_address_another_host_claims_is_defended_by_its_owner(lab: L2Lab, ns: str) -> None:
    """A speaker that announces an address for a moment (its view not yet caught up) moves every
    client that hears it; the owner answers the claim, so clients come back before that node
    can die with their traffic (issue: nginx-lb dark after a non-owner was killed)."""
    ip, owner = announced(lab, ns, "defended")
    other = next(n for n in NODES if n != owner)
    in_ns(CLIENT, "ping", "-c", "1", "-W", "1", ip, check=False)  # the client's own entry, for the owner
    wait_for("the client's entry for the owner", lambda: client_neighbour(lab, ip) == owner, 5, 0.05)
    in_ns(f"olb-{other}", "env", f"PYTHONPATH={SRC}", sys.executable, "-c", ROGUE_GARP, "eth0", ip)
    moved = client_neighbour(lab, ip)
    assert moved == other, f"the claim did not reach the client (its entry: {moved})"
    wait_for(f"the client back on {owner}", lambda: client_neighbour(lab, ip) == owner, 3, 0.05)
    assert "claimed it while this node announces it" in lab.speakers[owner].log()
    assert lab.owners(ip) == {owner}  # and the owner alone answers


def test_conflicting_host_is_detected_before_announcing(lab: L2Lab, ns: str) -> None:
    taken = "192.0.2.250"
    in_ns(CLIENT, "ip", "addr", "add", f"{taken}/32", "dev", "eth0")
    try:
        service(lab, ns, "clash", annotations=f"{{metallb.io/loadBalancerIPs: '{taken}'}}")
        assert lab.service_ips(ns, "clash") == [taken]
        lab.start_speakers()
        lab.wait_ready()
        wait_for(
            "an AddressConflict event",
            lambda: any(r == "AddressConflict" and taken in m for r, m in lab.events(ns, "clash")),
            15,
        )
        node_macs = {lab.mac(n) for n in NODES}
        assert not (lab.macs(taken) & node_macs)  # no speaker answers for it
    finally:
        in_ns(CLIENT, "ip", "addr", "del", f"{taken}/32", "dev", "eth0", check=False)


def test_random_speaker_kills_never_leave_two_owners(lab: L2Lab, ns: str) -> None:
    """Chaos: kill, restart and stop speakers at random; after each convergence one owner per VIP."""
    seconds = float(os.environ.get("ONPREM_CHAOS_SECONDS", "45"))
    names = [f"c{i}" for i in range(6)]
    for name in names:
        service(lab, ns, name, nodes=("n1", "n2", "n3"))
    ips = [lab.service_ips(ns, n)[0] for n in names]
    lab.start_speakers()
    lab.wait_ready()
    rng = random.Random(int(os.environ.get("ONPREM_CHAOS_SEED", "5227")))  # noqa: S311 (a test schedule, not a secret)
    deadline = time.monotonic() + seconds
    rounds = 0
    history: list[str] = []
    while time.monotonic() < deadline and rounds < 500:
        rounds += 1
        running = [n for n in NODES if n in lab.speakers and lab.speakers[n].alive()]
        stopped = [n for n in NODES if n not in running]
        if stopped and (len(running) <= 1 or rng.random() < 0.5):
            node = rng.choice(stopped)
            lab.start_speaker(node)
            history.append(f"{node}:start")
        else:
            node = rng.choice(running)
            sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM])
            lab.speakers[node].stop(sig)
            history.append(f"{node}:{sig.name}")
        time.sleep(rng.uniform(0.0, 1.5))
        live = [n for n, s in lab.speakers.items() if s.alive()]
        # after convergence (a killed peer is dead after 1 s, a new one is ready after ~2 s):
        time.sleep(3.5)
        for ip in ips:
            owners = lab.owners(ip)
            assert len(owners) == 1, f"round {rounds} ({history[-5:]}): {ip} answered by {owners}"
            assert owners <= set(live), f"round {rounds} ({history[-5:]}): {ip} by {owners}, live {live}"
    assert rounds >= 3
    print(f"chaos: {rounds} rounds in {seconds:.0f} s, history {history}")
