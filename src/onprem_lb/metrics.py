"""Prometheus metrics: the controller's (onprem_lb_controller_*) and the speaker's (onprem_lb_speaker_*),
each in its own registry so a process exports only its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from onprem_lb import hostport

REGISTRY = CollectorRegistry(auto_describe=True)

addresses_total = Gauge(
    "onprem_lb_controller_pool_addresses_total",
    "Addresses in a pool, per family (avoidBuggyIPs honoured)",
    ["pool", "family"],
    registry=REGISTRY,
)
addresses_in_use = Gauge(
    "onprem_lb_controller_pool_addresses_in_use",
    "Addresses of a pool held by at least one Service, per family",
    ["pool", "family"],
    registry=REGISTRY,
)
allocation_errors = Counter(
    "onprem_lb_controller_allocation_errors_total",
    "Services that could not get an address, by reason",
    ["reason"],
    registry=REGISTRY,
)
allocations = Counter("onprem_lb_controller_allocations_total", "Addresses given to Services", registry=REGISTRY)
releases = Counter("onprem_lb_controller_releases_total", "Addresses taken back from Services", registry=REGISTRY)
reconcile_seconds = Histogram(
    "onprem_lb_controller_reconcile_seconds",
    "Time to reconcile one Service (decision and API writes)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
write_errors = Counter(
    "onprem_lb_controller_api_write_errors_total", "API writes that failed and were retried", registry=REGISTRY
)
pending_services = Gauge(
    "onprem_lb_controller_pending_services",
    "LoadBalancer Services of ours without an address (their last Event: AllocationFailed)",
    registry=REGISTRY,
)
is_leader = Gauge("onprem_lb_controller_leader", "1 while this controller holds the lease", registry=REGISTRY)
config_problems = Gauge(
    "onprem_lb_controller_config_problems",
    "metallb.io objects that are ignored because of a problem",
    registry=REGISTRY,
)


def serve(address: tuple[str, int] | None, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on (HOST, PORT) (None: not at all)."""
    if not address:
        return
    host, port = address
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        where = hostport.join(host, port)
        raise ValueError(f"--metrics-address {where}: cannot listen there ({exc.strerror or exc})") from None


SPEAKER = CollectorRegistry(auto_describe=True)
l2_requests = Counter(
    "onprem_lb_speaker_l2_requests_total",
    "ARP requests / neighbour solicitations received",
    ["protocol"],
    registry=SPEAKER,
)
l2_replies = Counter(
    "onprem_lb_speaker_l2_replies_total", "Answers sent for owned addresses", ["protocol"], registry=SPEAKER
)
l2_gratuitous = Counter(
    "onprem_lb_speaker_l2_gratuitous_total",
    "Gratuitous ARP / unsolicited neighbour advertisement rounds sent (per interface)",
    ["protocol"],
    registry=SPEAKER,
)
l2_foreign_claims = Counter(
    "onprem_lb_speaker_l2_foreign_claims_total",
    "Another host claimed an address this node announces (its gratuitous ARP or advertisement): defended",
    ["protocol"],
    registry=SPEAKER,
)
owned_addresses = Gauge("onprem_lb_speaker_owned_addresses", "Addresses this node announces now", registry=SPEAKER)
owner_changes = Counter(
    "onprem_lb_speaker_owner_changes_total", "Addresses this node took over or gave up", ["change"], registry=SPEAKER
)
reannounce_seconds = Histogram(
    "onprem_lb_speaker_reannounce_seconds",
    "Takeover after a failure: time from the previous owner's last heartbeat to our first announcement",
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
    registry=SPEAKER,
)
address_states = Gauge(
    "onprem_lb_speaker_addresses",
    "Service addresses this speaker knows, by state: announcing, handingOver, or why not announced here "
    "(notOwner, fenced, probing, addressConflict, noMatchingAdvertisement, nodeNotSelected, noLocalEndpoint, ...)",
    ["state"],
    registry=SPEAKER,
)
live_speakers = Gauge("onprem_lb_speaker_live_speakers", "Speakers this node sees as live", registry=SPEAKER)
watched_speakers = Gauge(
    "onprem_lb_speaker_watched_speakers",
    "Speakers this node watches by heartbeat (owners of addresses it would take over)",
    registry=SPEAKER,
)
bgp_session_up = Gauge(
    "onprem_lb_speaker_bgp_session_up",
    "1 while the BGP session to this peer is Established",
    ["peer", "vrf"],
    registry=SPEAKER,
)
bgp_prefixes = Gauge("onprem_lb_speaker_bgp_prefixes", "Prefixes this node announces over BGP", registry=SPEAKER)
frr_reloads = Counter(
    "onprem_lb_speaker_frr_reloads",
    "FRR configuration changes, by how: incremental (vtysh, routes only), reload (frr-reload.py), "
    "restore (vtysh -f, to a bgpd that came back empty), failed",
    ["result"],
    registry=SPEAKER,
)
frr_reload_seconds = Histogram(
    "onprem_lb_speaker_frr_reload_seconds",
    "Time a configuration change took FRR, by how (incremental, reload, restore)",
    ["how"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=SPEAKER,
)
fenced = Gauge(
    "onprem_lb_speaker_fenced", "1 while this speaker cannot renew its Lease and announces nothing", registry=SPEAKER
)
holding = Gauge(
    "onprem_lb_speaker_holding",
    "1 while this speaker cannot renew its Lease, no speaker it hears reaches the API server, and it "
    "announces by membership (it hears a majority of the speakers it last knew)",
    registry=SPEAKER,
)
conflicts = Counter(
    "onprem_lb_speaker_address_conflicts_total", "Probes that found another host using an address", registry=SPEAKER
)
