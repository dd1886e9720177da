"""The queries of roles/lb_monitoring's files, for the tests that check them against the metrics
the engine declares (tests/unit/test_monitoring.py) and exports on the lab (the site scenario)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

FILES = Path(__file__).resolve().parents[2] / "roles" / "lb_monitoring" / "files"
RULES = FILES / "onprem-lb-alerts.yml"
RULE_TESTS = FILES / "onprem-lb-alerts.test.yml"
DASHBOARD = FILES / "onprem-lb-dashboard.json"


def rule_exprs() -> dict[str, str]:
    """Alert name -> its expression."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_exprs() -> dict[str, str]:
    """ "<panel title> <refId>" -> the target's expression."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} {t['refId']}": t["expr"] for p in panels for t in p["targets"]}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bonprem_lb_[a-z0-9_]+", expr))
