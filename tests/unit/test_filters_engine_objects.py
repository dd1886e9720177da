"""The object-building filters (metallb_objects, engine_access_objects) and the inventory check
(unknown_role_variables): table tests, and hypothesis for the rules on field and variable names;
kubespray's variables (an inventory shared with kubespray) pass, typos of ours next to them do not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.ingress.plugins.filter import engine_objects, inventory_checks
from ansible_collections.onprem.ingress.plugins.filter.engine_objects import (
    METALLB_KINDS,
    engine_access_objects,
    metallb_objects,
)
from ansible_collections.onprem.ingress.plugins.filter.inventory_checks import unknown_role_variables
from ansible_collections.onprem.ingress.plugins.module_utils.kubespray_variables import KUBESPRAY_VARIABLES
from hypothesis import assume, example, given
from hypothesis import strategies as st

ROLES = Path(__file__).resolve().parents[2] / "roles"
NS = "metallb-system"

# MetalLB's API versions, written out here rather than read from the plugin's table
API_VERSIONS = {
    "IPAddressPool": "metallb.io/v1beta1",
    "L2Advertisement": "metallb.io/v1beta1",
    "BGPAdvertisement": "metallb.io/v1beta1",
    "BGPPeer": "metallb.io/v1beta2",
    "Community": "metallb.io/v1beta1",
    "BFDProfile": "metallb.io/v1beta1",
}
KINDS = sorted(API_VERSIONS)


def fields_of(kind: str) -> tuple[str, ...]:
    return tuple(METALLB_KINDS[kind][1])


def test_filter_modules_export_the_filters() -> None:
    assert set(engine_objects.FilterModule().filters()) == {"metallb_objects", "engine_access_objects"}
    assert set(inventory_checks.FilterModule().filters()) == {"unknown_role_variables"}


# -- metallb_objects ---------------------------------------------------------------------------------


def test_every_metallb_kind_is_known() -> None:
    assert set(METALLB_KINDS) == set(API_VERSIONS)


@pytest.mark.parametrize("kind", KINDS)
def test_metallb_objects_api_version_and_shape(kind: str) -> None:
    field = fields_of(kind)[0]
    (obj,) = metallb_objects([{"name": "one", field: "x"}], kind, NS)
    assert obj == {
        "apiVersion": API_VERSIONS[kind],
        "kind": kind,
        "metadata": {"name": "one", "namespace": NS},
        "spec": {field: "x"},
    }


def test_metallb_objects_pool_from_metallb_field_names() -> None:
    items = [
        {"name": "public", "addresses": ["192.0.2.240/28"], "autoAssign": False},
        {"name": "v6", "addresses": ["2001:db8::/124"], "avoidBuggyIPs": True},
    ]
    objs = metallb_objects(items, "IPAddressPool", "lb")
    assert [o["metadata"]["name"] for o in objs] == ["public", "v6"]
    assert objs[0]["spec"] == {"addresses": ["192.0.2.240/28"], "autoAssign": False}  # False is kept
    assert objs[1]["spec"] == {"addresses": ["2001:db8::/124"], "avoidBuggyIPs": True}
    assert all(o["metadata"]["namespace"] == "lb" for o in objs)


def test_metallb_objects_labels_merge_item_labels_win() -> None:
    common = {"app.kubernetes.io/managed-by": "onprem.ingress", "tier": "common"}
    (obj,) = metallb_objects(
        [{"name": "p", "addresses": ["192.0.2.0/28"], "labels": {"tier": "edge", "zone": "a"}}],
        "IPAddressPool",
        NS,
        common,
    )
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "onprem.ingress", "tier": "edge", "zone": "a"}
    assert "labels" not in obj["spec"]
    assert common == {"app.kubernetes.io/managed-by": "onprem.ingress", "tier": "common"}  # not modified
    # only common labels, and none at all
    (only_common,) = metallb_objects([{"name": "q"}], "IPAddressPool", NS, common)
    assert only_common["metadata"]["labels"] == common
    (bare,) = metallb_objects([{"name": "r", "labels": None}], "IPAddressPool", NS, None)
    assert "labels" not in bare["metadata"]


def test_metallb_objects_null_fields_dropped() -> None:
    (obj,) = metallb_objects(
        [{"name": "peer", "myASN": 64512, "peerASN": 64513, "peerAddress": "192.0.2.1", "password": None,
          "bfdProfile": None, "holdTime": "90s"}],
        "BGPPeer", NS,
    )  # fmt: skip
    assert obj["spec"] == {"myASN": 64512, "peerASN": 64513, "peerAddress": "192.0.2.1", "holdTime": "90s"}


def test_metallb_objects_empty_list() -> None:
    assert metallb_objects([], "L2Advertisement", NS) == []


def test_metallb_objects_duplicate_name() -> None:
    with pytest.raises(AnsibleFilterError, match=r"L2Advertisement 'l2' is listed twice"):
        metallb_objects([{"name": "l2"}, {"name": "other"}, {"name": "l2"}], "L2Advertisement", NS)


@pytest.mark.parametrize("item", [{"addresses": ["192.0.2.0/28"]}, {"name": ""}, {"name": None}, {"name": 3}])
def test_metallb_objects_missing_name(item: dict[str, Any]) -> None:
    with pytest.raises(AnsibleFilterError, match=r"IPAddressPool #2 has no name; every IPAddressPool needs one"):
        metallb_objects([{"name": "first"}, item], "IPAddressPool", NS)


def test_metallb_objects_unknown_field_names_it_and_the_kinds_fields() -> None:
    with pytest.raises(AnsibleFilterError) as err:
        metallb_objects([{"name": "pool", "adresses": ["192.0.2.0/28"]}], "IPAddressPool", NS)
    text = str(err.value)
    assert "IPAddressPool 'pool': unknown field adresses;" in text
    assert "addresses, autoAssign, avoidBuggyIPs, serviceAllocation" in text
    assert "plus name and labels" in text
    with pytest.raises(AnsibleFilterError, match=r"unknown fields b, z;"):
        metallb_objects([{"name": "p", "z": 1, "b": 2}], "Community", NS)


@pytest.mark.parametrize(
    ("items", "kind", "message"),
    [
        ([], "Pool", r"unknown kind 'Pool'; one of IPAddressPool, "),
        ({"name": "p"}, "IPAddressPool", r"the IPAddressPool items must be a list, got dict"),
        (["p"], "BFDProfile", r"BFDProfile #1: expected a mapping"),
    ],
)
def test_metallb_objects_bad_input(items: Any, kind: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        metallb_objects(items, kind, NS)


@given(kind=st.sampled_from(KINDS), field=st.text(min_size=1, max_size=30))
def test_metallb_objects_any_other_field_is_rejected(kind: str, field: str) -> None:
    assume(field not in fields_of(kind) and field not in ("name", "labels"))
    with pytest.raises(AnsibleFilterError) as err:
        metallb_objects([{"name": "x", field: 1}], kind, NS)
    text = str(err.value)
    assert f"unknown field {field};" in text
    assert ", ".join(fields_of(kind)) in text


@st.composite
def kind_and_valid_item(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(KINDS))
    chosen = draw(st.sets(st.sampled_from(fields_of(kind))))
    values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.text(max_size=5)))
    item: dict[str, Any] = {field: draw(values) for field in chosen}
    item["name"] = draw(st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?\Z"))  # a valid name: bad ones are refused
    if draw(st.booleans()):
        item["labels"] = draw(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=3))
    return kind, item


@given(kind_and_valid_item())
def test_metallb_objects_any_subset_of_fields_is_accepted(case: tuple[str, dict[str, Any]]) -> None:
    kind, item = case
    (obj,) = metallb_objects([item], kind, NS)
    assert obj["apiVersion"] == API_VERSIONS[kind]
    assert obj["metadata"]["name"] == item["name"]
    assert obj["spec"] == {k: v for k, v in item.items() if k not in ("name", "labels") and v is not None}
    assert obj["metadata"].get("labels", {}) == (item.get("labels") or {})


# -- engine_access_objects ---------------------------------------------------------------------------

RBAC = {
    "speaker": {
        "cluster": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}],
        "namespaced": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]}],
    },
    "controller": {"cluster": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get"]}]},
}


def test_engine_access_objects_kinds_api_versions_and_names() -> None:
    objs = engine_access_objects("speaker", RBAC, NS, {"app.kubernetes.io/part-of": "onprem-lb"})
    assert [(o["apiVersion"], o["kind"]) for o in objs] == [
        ("v1", "ServiceAccount"),
        ("v1", "Secret"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ]
    sa, secret, crole, crb, role, rb = objs
    assert sa["metadata"] == {
        "name": "onprem-lb-speaker",
        "namespace": NS,
        "labels": {"app.kubernetes.io/part-of": "onprem-lb", "app.kubernetes.io/component": "speaker"},
    }
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["name"] == "onprem-lb-speaker-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "onprem-lb-speaker"}
    # cluster-wide objects have no namespace
    assert "namespace" not in crole["metadata"] and "namespace" not in crb["metadata"]
    assert role["metadata"]["namespace"] == rb["metadata"]["namespace"] == NS
    assert crole["rules"] == RBAC["speaker"]["cluster"]
    assert role["rules"] == RBAC["speaker"]["namespaced"]
    subject = [{"kind": "ServiceAccount", "name": "onprem-lb-speaker", "namespace": NS}]
    assert crb["subjects"] == rb["subjects"] == subject
    assert crb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "onprem-lb-speaker",
    }
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "onprem-lb-speaker"}


def test_engine_access_objects_labels_are_not_shared_or_overridden() -> None:
    labels = {"app.kubernetes.io/component": "mine", "x": "y"}
    objs = engine_access_objects("controller", RBAC, "lb", labels)
    assert all(o["metadata"]["labels"] == {"app.kubernetes.io/component": "controller", "x": "y"} for o in objs)
    objs[0]["metadata"]["labels"]["x"] = "changed"
    assert objs[1]["metadata"]["labels"]["x"] == "y"
    assert labels == {"app.kubernetes.io/component": "mine", "x": "y"}


def test_engine_access_objects_missing_rules_are_empty_lists() -> None:
    objs = engine_access_objects("controller", RBAC, NS)
    assert objs[4]["kind"] == "Role" and objs[4]["rules"] == []
    assert objs[2]["rules"] == RBAC["controller"]["cluster"]


@pytest.mark.parametrize("rbac", [RBAC, None, []])
def test_engine_access_objects_unknown_component(rbac: Any) -> None:
    with pytest.raises(AnsibleFilterError, match=r"no RBAC rules for 'webhook'"):
        engine_access_objects("webhook", rbac, NS)


# -- unknown_role_variables --------------------------------------------------------------------------


def spec(**entry_points: list[str]) -> dict[str, Any]:
    """An argument_specs.yml document with these options per entry point."""
    return {
        "argument_specs": {ep: {"options": {o: {"type": "str"} for o in opts}} for ep, opts in entry_points.items()}
    }


SPECS = [
    spec(main=["lb_config_pools", "lb_config_namespace", "lb_config_prune"], validate=["lb_config_node_cidrs"]),
    spec(main=["sysctl_arp_ignore", "sysctl_arp_announce"]),
]
ROLE_NAMES = ["lb_config", "sysctl"]


def test_typo_gets_did_you_mean() -> None:
    assert unknown_role_variables(["lb_config_pool"], SPECS, ROLE_NAMES) == [
        "lb_config_pool is not a variable of the onprem.ingress.lb_config role; did you mean lb_config_pools?"
    ]
    # options of another entry point of the role are known, and suggested
    assert unknown_role_variables(["lb_config_node_cidr"], SPECS, ROLE_NAMES) == [
        "lb_config_node_cidr is not a variable of the onprem.ingress.lb_config role; did you mean lb_config_node_cidrs?"
    ]


def test_a_renamed_variable_names_its_new_name() -> None:
    specs = [spec(main=["ingress_exposure", "ingress_lb_pool", "ingress_nginx_admission_webhook"])]
    assert unknown_role_variables(["ingress_nginx_variant", "ingress_nginx_lb_pool"], specs, ["ingress"]) == [
        "ingress_nginx_lb_pool was renamed ingress_lb_pool (the onprem.ingress.ingress role, for Traefik and "
        "ingress-nginx alike)",
        "ingress_nginx_variant was renamed ingress_exposure (the onprem.ingress.ingress role, for Traefik and "
        "ingress-nginx alike)",
    ]
    # the ingress-nginx variables that kept their name are known, not renamed
    assert unknown_role_variables(["ingress_nginx_admission_webhook"], specs, ["ingress"]) == []


def test_far_off_name_points_to_the_argument_specs() -> None:
    assert unknown_role_variables(["sysctl_completely_different"], SPECS, ROLE_NAMES) == [
        "sysctl_completely_different is not a variable of the onprem.ingress.sysctl role; "
        "see roles/sysctl/meta/argument_specs.yml"
    ]


def test_other_prefixes_and_internal_names_are_ignored() -> None:
    names = [
        "ansible_host",
        "inventory_hostname",
        "lb_configuration",  # no `lb_config_` prefix
        "__lb_config_labels",  # internal
        "_sysctl_cache",
        "kube_proxy_namespace",  # a role not checked here
        "lb_config_pools",
        "sysctl_arp_ignore",
    ]
    assert unknown_role_variables(names, SPECS, ROLE_NAMES) == []


def test_messages_sorted_one_per_name_and_longest_role_prefix() -> None:
    specs = [spec(main=["lb_x"]), spec(main=["lb_config_pools"])]
    out = unknown_role_variables(["lb_config_typo_far_away", "lb_y_z_w_v"], specs, ["lb", "lb_config"])
    assert len(out) == 2
    assert out[0].startswith("lb_config_typo_far_away is not a variable of the onprem.ingress.lb_config role")
    assert out[1].startswith("lb_y_z_w_v is not a variable of the onprem.ingress.lb role")


@pytest.mark.parametrize("specs", [[{"options": {}}], [None], [{"argument_specs": []}]])
def test_not_argument_specs_is_an_error(specs: list[Any]) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape("expected the contents of meta/argument_specs.yml")):
        unknown_role_variables(["lb_config_pools"], specs, ROLE_NAMES)


KNOWN = sorted({o for s in SPECS for ep in s["argument_specs"].values() for o in ep["options"]})


@given(st.lists(st.sampled_from(KNOWN)), st.lists(st.text(max_size=20)))
def test_known_options_are_never_reported(known: list[str], other: list[str]) -> None:
    # names outside every role prefix are never reported either
    others = [n for n in other if not n.startswith(tuple(f"{r}_" for r in ROLE_NAMES))]
    assert unknown_role_variables(known + others, SPECS, ROLE_NAMES) == []


@given(st.sampled_from(ROLE_NAMES), st.text(min_size=1, max_size=20))
def test_any_unknown_name_with_a_role_prefix_is_reported(role: str, suffix: str) -> None:
    name = f"{role}_{suffix}"
    assume(name not in KNOWN)
    (message,) = unknown_role_variables([name], SPECS, ROLE_NAMES)
    assert message.startswith(f"{name} is not a variable of the onprem.ingress.{role} role; ")


# -- with the collection's real argument specs -------------------------------------------------------


def real_specs() -> tuple[list[str], list[Any]]:
    paths = sorted(ROLES.glob("*/meta/argument_specs.yml"))
    return [p.parents[1].name for p in paths], [yaml.safe_load(p.read_text()) for p in paths]


def test_real_roles_argument_specs() -> None:
    roles, specs = real_specs()
    assert {"lb_config", "lb_engine", "lb_speaker"} <= set(roles)
    options = sorted({o for s in specs for ep in s["argument_specs"].values() for o in (ep or {}).get("options") or {}})
    assert unknown_role_variables(options, specs, roles) == []
    assert unknown_role_variables(
        ["lb_config_pool", "lb_engine_pyhton", "lb_speaker_nonsense_entirely"], specs, roles
    ) == [
        "lb_config_pool is not a variable of the onprem.ingress.lb_config role; did you mean lb_config_pools?",
        "lb_engine_pyhton is not a variable of the onprem.ingress.lb_engine role; did you mean lb_engine_python?",
        "lb_speaker_nonsense_entirely is not a variable of the onprem.ingress.lb_speaker role; "
        "see roles/lb_speaker/meta/argument_specs.yml",
    ]


# -- an inventory shared with kubespray ----------------------------------------------------------------


def preflight_roles_and_specs() -> tuple[list[str], list[Any]]:
    """The roles playbooks/preflight.yml checks (__onprem_roles), and their argument specs."""
    plays = yaml.safe_load((ROLES.parent / "playbooks" / "preflight.yml").read_text())
    (roles,) = [play["vars"]["__onprem_roles"] for play in plays if "__onprem_roles" in (play.get("vars") or {})]
    return roles, [yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text()) for role in roles]


PREFLIGHT_ROLES, PREFLIGHT_SPECS = preflight_roles_and_specs()
OURS = sorted(
    {o for s in PREFLIGHT_SPECS for ep in s["argument_specs"].values() for o in (ep or {}).get("options") or {}}
)
KUBESPRAY = sorted(KUBESPRAY_VARIABLES)


def test_every_kubespray_variable_passes_preflight() -> None:
    # only names the check would look at are listed (each starts with one of our role prefixes)
    assert all(name.startswith(tuple(f"{role}_" for role in PREFLIGHT_ROLES)) for name in KUBESPRAY)
    assert {"kube_proxy_mode", "kube_proxy_strict_arp", "kube_proxy_nodeport_addresses"} <= KUBESPRAY_VARIABLES
    assert {"ingress_nginx_enabled", "ingress_nginx_host_network"} <= KUBESPRAY_VARIABLES
    assert unknown_role_variables(KUBESPRAY, PREFLIGHT_SPECS, PREFLIGHT_ROLES) == []
    assert unknown_role_variables(KUBESPRAY + OURS, PREFLIGHT_SPECS, PREFLIGHT_ROLES) == []
    for name in KUBESPRAY:
        assert unknown_role_variables([name], PREFLIGHT_SPECS, PREFLIGHT_ROLES) == [], name


def test_kubespray_names_that_were_ours_once_are_not_called_renamed() -> None:
    """ingress_nginx_namespace was our old ingress_nginx role's and is kubespray's: it passes; an
    old name of ours that kubespray does not have still names its new name."""
    for name in ["ingress_nginx_namespace", "ingress_nginx_tolerations", "ingress_nginx_extra_args"]:
        assert name in inventory_checks.RENAMED
        assert unknown_role_variables([name], PREFLIGHT_SPECS, PREFLIGHT_ROLES) == []
    assert unknown_role_variables(["ingress_nginx_lb_pool"], PREFLIGHT_SPECS, PREFLIGHT_ROLES) == [
        "ingress_nginx_lb_pool was renamed ingress_lb_pool (the onprem.ingress.ingress role, for Traefik and "
        "ingress-nginx alike)"
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("kube_proxy_manage_strict_arp", None),  # ours
        ("kube_proxy_strict_arp", None),  # kubespray's
        (
            "kube_proxy_manage_strickt_arp",
            "kube_proxy_manage_strickt_arp is not a variable of the onprem.ingress.kube_proxy role; "
            "did you mean kube_proxy_manage_strict_arp?",
        ),
        (
            "kube_proxy_strickt_arp",
            "kube_proxy_strickt_arp is not a variable of the onprem.ingress.kube_proxy role; "
            "did you mean kube_proxy_strict_arp (a kubespray variable)?",
        ),
        (
            "ingress_nginx_enable",
            "ingress_nginx_enable is not a variable of the onprem.ingress.ingress role; "
            "did you mean ingress_nginx_enabled (a kubespray variable)?",
        ),
        (
            "sysctl_fil",
            "sysctl_fil is not a variable of the onprem.ingress.sysctl role; did you mean sysctl_file?",
        ),
    ],
)
def test_names_next_to_kubespray_ones(name: str, message: str | None) -> None:
    expected = [] if message is None else [message]
    assert unknown_role_variables([name], PREFLIGHT_SPECS, PREFLIGHT_ROLES) == expected


@st.composite
def typo_of_ours(draw: st.DrawFn) -> tuple[str, str]:
    """(one of our option names, that name with one edit after its role prefix)."""
    name = draw(st.sampled_from(OURS))
    role = max((r for r in PREFLIGHT_ROLES if name.startswith(f"{r}_")), key=len)
    start = len(role) + 1
    edit = draw(st.sampled_from(["delete", "insert", "replace", "swap"]))
    at = draw(st.integers(min_value=start, max_value=len(name) - (2 if edit == "swap" else 1)))
    char = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_0123456789"))
    if edit == "delete":
        typo = name[:at] + name[at + 1 :]
    elif edit == "insert":
        typo = name[:at] + char + name[at:]
    elif edit == "replace":
        typo = name[:at] + char + name[at + 1 :]
    else:
        typo = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
    return name, typo


@given(typo_of_ours())
@example(case=("kube_proxy_manage_strict_arp", "kube_proxy_manage_strickt_arp"))  # next to kube_proxy_strict_arp
def test_a_typo_of_our_names_is_still_reported_with_a_hint(case: tuple[str, str]) -> None:
    name, typo = case
    assume(typo not in OURS and typo not in KUBESPRAY_VARIABLES)
    role = max((r for r in PREFLIGHT_ROLES if typo.startswith(f"{r}_")), key=len)
    # with kubespray's names present too: only the typo is reported
    (message,) = unknown_role_variables([typo, *KUBESPRAY], PREFLIGHT_SPECS, PREFLIGHT_ROLES)
    assert message.startswith(f"{typo} is not a variable of the onprem.ingress.{role} role; did you mean "), (
        name,
        message,
    )
