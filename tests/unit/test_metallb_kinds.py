"""plugins/module_utils/metallb_kinds.py is the one table of the metallb.io kinds: what the
lb_controller role installs and grants (CRD files, RBAC rules, written in YAML) is held equal to
it here, and the shipped CRDs serve each kind at the table's version and plural."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.onprem.ingress.plugins.filter import engine_objects
from ansible_collections.onprem.ingress.plugins.module_utils import config_model, metallb_kinds

from onprem_lb import k8s

ROLE = Path(__file__).parents[2] / "roles" / "lb_controller"
VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
METALLB = metallb_kinds.GROUP


def metallb_rules(rules: list[Any]) -> list[dict[str, Any]]:
    """The literal rules on metallb.io (references to other variables resolved by name)."""
    out = []
    for given in rules:
        rule = VARS[given.strip("{} ")] if isinstance(given, str) else given  # "{{ __lb_controller_config_read }}"
        if METALLB in rule["apiGroups"]:
            out.append(rule)
    return out


def test_the_role_installs_one_crd_per_kind_and_each_serves_the_tables_version() -> None:
    assert VARS["__lb_controller_crd_files"] == [f"{k.crd_name}.yaml" for k in metallb_kinds.KINDS]
    for kind in metallb_kinds.KINDS:
        crd = yaml.safe_load((ROLE / "files" / "crds" / f"{kind.crd_name}.yaml").read_text())
        spec = crd["spec"]
        assert (spec["group"], spec["names"]["kind"], spec["names"]["plural"]) == (METALLB, kind.kind, kind.plural)
        assert spec["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
        served = {v["name"] for v in spec["versions"] if v.get("served")}
        assert kind.version in served, (kind.kind, served)
        storage_has_status = any("status" in (v.get("subresources") or {}) for v in spec["versions"])
        assert storage_has_status or not kind.status, kind.kind


def test_rbac_grants_each_reader_what_the_table_says_it_reads_and_writes() -> None:
    config = sorted(k.plural for k in metallb_kinds.CONFIG_KINDS)
    controller = metallb_rules(VARS["__lb_controller_rbac"]["controller"]["namespaced"])
    reads = sorted(r for rule in controller if "watch" in rule["verbs"] for r in rule["resources"])
    assert reads == config
    status = sorted(r for rule in controller if "patch" in rule["verbs"] for r in rule["resources"])
    assert status == sorted(f"{k.plural}/status" for k in metallb_kinds.KINDS if k.status)
    speaker = metallb_rules(VARS["__lb_controller_speaker_namespaced"])
    speaker_reads = sorted(r for rule in speaker if "watch" in rule["verbs"] for r in rule["resources"])
    readers = {"speaker", "bgp speaker"}
    assert speaker_reads == sorted(k.plural for k in metallb_kinds.KINDS if readers & set(k.readers))


def test_the_engine_the_config_model_and_the_filter_read_the_same_table() -> None:
    assert set(k8s.RESOURCES) == {k.kind for k in metallb_kinds.KINDS}
    for kind in metallb_kinds.KINDS:
        resource = k8s.RESOURCES[kind.kind]
        assert (resource._api_info.resource.version, resource._api_info.plural) == (kind.version, kind.plural)
    assert tuple(k.kind for k in metallb_kinds.CONFIG_KINDS) == config_model.KINDS
    # each configuration kind names the argument of build_config that takes it, and every
    # argument is some kind's
    arguments = set(inspect.signature(config_model.build_config).parameters)
    assert arguments == {k.config for k in metallb_kinds.CONFIG_KINDS}
    assert set(engine_objects.METALLB_KINDS) == {k.kind for k in metallb_kinds.CONFIG_KINDS}
