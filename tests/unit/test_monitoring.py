"""The alert rules and the Grafana dashboard (roles/lb_monitoring/files): promtool checks and
tests the rules, and every query of both reads metrics (and labels) the engine exports. The lab test
(extensions/molecule/site/tests/test_status.py) reads the names from the running daemons."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from onprem_lb import metrics
from tests.support.monitoring import DASHBOARD, FILES, RULE_TESTS, RULES, dashboard_exprs, metric_names, rule_exprs

SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
PROMETHEUS_LABELS = {"instance", "job", "le"}  # added by the scrape, or the histogram's own


def exported(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Sample name -> its label names, for every metric of a registry (with or without samples)."""
    out: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):  # the registry's own index (no public one)
        for family in collector.collect():
            labels = set(getattr(collector, "_labelnames", ()))
            for suffix in SAMPLE_SUFFIXES[family.type]:
                out[family.name + suffix] = labels
    return out


EXPORTED = exported(metrics.REGISTRY) | exported(metrics.SPEAKER)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make host-deps` installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False, cwd=FILES)


def problems(expr: str) -> list[str]:
    """Metric names the engine does not export, and grouping labels they do not carry."""
    found = []
    names = metric_names(expr)
    for name in names - set(EXPORTED):
        found.append(f"{name} is not exported")
    grouped = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")}
    carried = set().union(*(EXPORTED.get(n, set()) for n in names)) | PROMETHEUS_LABELS
    found += [f"label {label!r} is on none of {sorted(names)}" for label in grouped - carried if label]
    return found


def test_promtool_checks_the_rules_and_their_tests_pass() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_seen_firing_in_the_rule_tests() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert fired == set(rule_exprs())


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_query_reads_metrics_and_labels_the_engine_exports(source: str) -> None:
    exprs = rule_exprs() if source == "rules" else dashboard_exprs()
    assert exprs
    bad = {where: p for where, expr in exprs.items() if (p := problems(expr))}
    assert bad == {}


def test_the_check_itself_catches_a_wrong_name_and_a_wrong_label() -> None:
    assert problems("sum by (pool) (onprem_lb_speaker_fenced)") == [
        "label 'pool' is on none of ['onprem_lb_speaker_fenced']"
    ]
    assert problems("rate(onprem_lb_speaker_fencing_total[5m])") == ["onprem_lb_speaker_fencing_total is not exported"]


def test_the_dashboard_imports_with_a_datasource_input_and_shows_every_area() -> None:
    dash: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"], panel["title"]
    shown = " ".join(dashboard_exprs().values())
    for family in ("addresses", "owner_changes", "reannounce_seconds", "fenced", "holding", "pool_addresses",
                   "bgp_session_up", "reconcile_seconds", "api_write_errors", "pending_services"):  # fmt: skip
        assert family in shown, family
