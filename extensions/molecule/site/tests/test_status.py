"""`onprem-lb status` on the converged lab, run from the checkout with the lab's admin kubeconfig
as an operator would: it names the node the client's ARP reaches for every address, a state for
every node, and a Service the controller cannot serve with the controller's own warning."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[4]))))
from tests.support.monitoring import FILES, dashboard_exprs, metric_names, rule_exprs
from tests.support.podman_lab import KUBECONFIG, NODES, REPO, arp_owner, kubectl, sh

ENGINE = REPO / "roles" / "lb_engine" / "files" / "onprem-lb.pyz"  # what the lab's nodes run (make dist)
ANNOUNCING = {"announcing", "handingOver", "holdingByMembership"}


def status(*args: str) -> str:
    return sh(sys.executable, str(ENGINE), "status", "--kubeconfig", str(KUBECONFIG), *args)


def report() -> dict[str, Any]:
    return json.loads(status("--output", "json"))  # type: ignore[no-any-return]


def lb_addresses() -> dict[str, str]:
    """address -> namespace/name of every LoadBalancer Service with one."""
    out = {}
    for svc in json.loads(kubectl("get", "services", "-A", "-o", "json"))["items"]:
        for ingress in (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []:
            if svc["spec"]["type"] == "LoadBalancer" and ingress.get("ip"):
                out[ingress["ip"]] = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
    return out


def test_status_names_the_announcer_of_every_address_and_a_state_on_every_node() -> None:
    got = report()
    listed = {a["address"]: a for a in got["addresses"]}
    assert set(listed) == set(lb_addresses()), got
    assert got["pending"] == [], got["pending"]
    assert all(s["renewing"] for s in got["speakers"].values()) and set(got["speakers"]) == set(NODES), got
    text = status()
    for ip, entry in listed.items():
        owner = arp_owner(ip)
        assert set(entry["nodes"]) == set(NODES), entry
        states = {node: per["layer2"] for node, per in entry["nodes"].items()}
        assert all(s not in ANNOUNCING for n, s in states.items() if n != owner), (ip, states)
        if owner is None:  # a Service no node may announce (no serving endpoint): status says why
            assert entry["layer2"] == {} and f"{ip}  {entry['service']}" in text, (ip, entry)
            continue
        assert list(entry["layer2"]) == [owner], (ip, entry, owner)
        assert states[owner] in ANNOUNCING, (ip, states)
        assert f"announced: layer2 from {owner} (eth0)" in text, text
        assert f"{owner} layer2: {states[owner]}: " in text, text


def test_status_lists_a_service_without_an_address_with_the_controllers_warning() -> None:
    kubectl("create", "namespace", "status-test", check=False)
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nowhere", "namespace": "status-test",
                     "annotations": {"metallb.io/address-pool": "no-such-pool"}},
        "spec": {"type": "LoadBalancer", "selector": {"app": "nowhere"}, "ports": [{"port": 80}]},
    }  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps(svc))
    try:
        deadline = time.monotonic() + 30
        pending: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not any(p["reason"] for p in pending):  # the Event comes first
            pending = [p for p in report()["pending"] if p["service"] == "status-test/nowhere"]
            time.sleep(0.5)
        assert pending and pending[0]["reason"] == "AllocationFailed", pending
        assert "no-such-pool" in pending[0]["message"], pending
        assert "status-test/nowhere: AllocationFailed: " in status()
    finally:
        kubectl("delete", "namespace", "status-test", "--wait=false")


def scraped_names(node: str, port: int) -> set[str]:
    """The sample names a daemon's /metrics declares (from its TYPE lines, samples or not)."""
    text = sh("podman", "exec", node, "curl", "-sf", f"http://127.0.0.1:{port}/metrics")
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
    return names


def test_the_alert_rules_and_dashboard_read_metrics_the_running_daemons_export() -> None:
    """What a Prometheus scraping the lab would see: the speakers' /metrics on every node and the
    controller's on the control-plane node hold every onprem_lb_* name lb_monitoring's files query."""
    exprs = [*rule_exprs().values(), *dashboard_exprs().values()]
    wanted = set().union(*map(metric_names, exprs))
    assert len(wanted) > 15, wanted
    exported = scraped_names("onprem-lab-n1", 7472)
    for node in NODES:
        exported |= scraped_names(node, 7473)
    assert wanted - exported == set()


def test_site_yml_installed_the_dashboard_and_the_rules_as_configmaps() -> None:
    """inventories/lab sets lb_monitoring_install: configmaps: what is in the ConfigMaps is the
    role's files, byte for byte, and the dashboard's carries Grafana's sidecar label."""
    for name, key, label in (("onprem-lb-dashboard", "onprem-lb-dashboard.json", "grafana_dashboard"),
                             ("onprem-lb-alerts", "onprem-lb-alerts.yml", "app.kubernetes.io/part-of")):  # fmt: skip
        cm = json.loads(kubectl("get", "configmap", "-n", "monitoring", name, "-o", "json"))
        assert cm["data"][key].strip() == (FILES / key).read_text().strip(), name
        assert label in cm["metadata"]["labels"], cm["metadata"]
