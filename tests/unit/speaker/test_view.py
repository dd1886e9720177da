"""speaker/view.py: how the agent reads Services, EndpointSlices and Nodes into what every
protocol decides from. Table tests, malformed input included (Node and EndpointSlice readers
must never raise on a shape the API would not send; the watch delivers whatever it gets)."""

from __future__ import annotations

from typing import Any

import pytest

from onprem_lb import ipam
from onprem_lb.speaker import view
from onprem_lb.speaker.view import EXCLUDE_LABEL, Endpoints, NodeState, ServiceState


def svc(
    *,
    ingress: Any = None,
    type_: str = "LoadBalancer",
    lb_class: str | None = None,
    policy: str | None = None,
    annotations: dict[str, str] | None = None,
    namespace: str = "apps",
    name: str = "web",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_}
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    if policy is not None:
        spec["externalTrafficPolicy"] = policy
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations is not None:
        meta["annotations"] = annotations
    out: dict[str, Any] = {"metadata": meta, "spec": spec}
    if ingress is not None:
        out["status"] = {"loadBalancer": {"ingress": ingress}}
    return out


# -- service_state -------------------------------------------------------------------------------

V4 = [{"ip": "192.0.2.10"}]


@pytest.mark.parametrize(
    ("case", "plain", "lb_class", "expected"),
    [
        ("an address", svc(ingress=V4), None, ServiceState("apps/web", ("192.0.2.10",))),
        (
            "dual-stack keeps the API's order",
            svc(ingress=[{"ip": "2001:db8::5"}, {"ip": "192.0.2.10"}]),
            None,
            ServiceState("apps/web", ("2001:db8::5", "192.0.2.10")),
        ),
        ("Local policy", svc(ingress=V4, policy="Local"), None, ServiceState("apps/web", ("192.0.2.10",), local=True)),
        ("Cluster policy", svc(ingress=V4, policy="Cluster"), None, ServiceState("apps/web", ("192.0.2.10",))),
        (
            "pool from the controller's annotation",
            svc(ingress=V4, annotations={ipam.ALLOCATED_FROM_ANNOTATION: "lab"}),
            None,
            ServiceState("apps/web", ("192.0.2.10",), pool="lab"),
        ),
        (
            "an empty pool annotation is no pool",
            svc(ingress=V4, annotations={ipam.ALLOCATED_FROM_ANNOTATION: ""}),
            None,
            ServiceState("apps/web", ("192.0.2.10",)),
        ),
        (
            "hostname-only and empty entries are skipped",
            svc(ingress=[{"hostname": "lb.example"}, {"ip": ""}, {"ip": "192.0.2.11"}]),
            None,
            ServiceState("apps/web", ("192.0.2.11",)),
        ),
        ("our class", svc(ingress=V4, lb_class="x/y"), "x/y", ServiceState("apps/web", ("192.0.2.10",))),
    ],
)
def test_service_state(case: str, plain: dict[str, Any], lb_class: str | None, expected: ServiceState) -> None:
    assert view.service_state(plain, lb_class) == expected, case


@pytest.mark.parametrize(
    ("case", "plain", "lb_class"),
    [
        ("no status yet", svc(), None),
        ("empty ingress", svc(ingress=[]), None),
        ("only a hostname", svc(ingress=[{"hostname": "lb.example"}]), None),
        ("not a LoadBalancer", svc(ingress=V4, type_="ClusterIP"), None),
        ("NodePort", svc(ingress=V4, type_="NodePort"), None),
        ("another class while we are the default", svc(ingress=V4, lb_class="other/lb"), None),
        ("the default class while we have one", svc(ingress=V4), "x/y"),
        ("another named class", svc(ingress=V4, lb_class="other/lb"), "x/y"),
        ("no spec at all", {"metadata": {"name": "web", "namespace": "apps"}}, None),
        ("status without loadBalancer", {**svc(), "status": {}}, None),
        ("null loadBalancer", {**svc(), "status": {"loadBalancer": None}}, None),
    ],
)
def test_service_state_is_none_for_what_is_not_ours_to_announce(
    case: str, plain: dict[str, Any], lb_class: str | None
) -> None:
    assert view.service_state(plain, lb_class) is None, case


MALFORMED_SERVICES: list[tuple[str, dict[str, Any]]] = [
    ("ingress entry not a mapping", {"status": {"loadBalancer": {"ingress": ["192.0.2.1"]}}}),
    ("ingress not a list", {"status": {"loadBalancer": {"ingress": {"ip": "192.0.2.1"}}}}),
    ("ip not text", {"status": {"loadBalancer": {"ingress": [{"ip": 7}]}}}),
    ("status not a mapping", {"status": "up"}),
    ("loadBalancer not a mapping", {"status": {"loadBalancer": []}}),
]


@pytest.mark.parametrize(("case", "extra"), MALFORMED_SERVICES, ids=[c[0] for c in MALFORMED_SERVICES])
def test_a_malformed_service_is_not_one_to_announce_and_never_raises(case: str, extra: dict[str, Any]) -> None:
    plain = {"metadata": {"name": "web", "namespace": "apps"}, "spec": {"type": "LoadBalancer"}, **extra}
    assert view.service_state(plain, None) is None, case


def test_good_entries_beside_malformed_ones_still_count() -> None:
    ingress = [{"ip": "192.0.2.1"}, "junk", {"hostname": "lb.example"}, {"ip": "2001:db8::1"}]
    plain = {
        "metadata": {"name": "web", "namespace": "apps", "annotations": {ipam.ALLOCATED_FROM_ANNOTATION: 5}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
        "status": {"loadBalancer": {"ingress": ingress}},
    }
    assert view.service_state(plain, None) == ServiceState("apps/web", ("192.0.2.1", "2001:db8::1"), local=True)


def test_service_key_is_namespace_slash_name() -> None:
    state = view.service_state(svc(ingress=V4, namespace="team-a", name="api"), None)
    assert state is not None and state.key == "team-a/api"


# -- endpoints_from_slices -----------------------------------------------------------------------


def ep(node: object = "n1", **conditions: object) -> dict[str, object]:
    return {"addresses": ["10.0.0.1"], "nodeName": node, "conditions": conditions}


@pytest.mark.parametrize(
    ("case", "slices", "expected"),
    [
        ("no slices", [], Endpoints()),
        ("a slice without endpoints", [{"endpoints": []}], Endpoints()),
        ("ready and serving", [{"endpoints": [ep(ready=True, serving=True)]}], Endpoints(True, frozenset({"n1"}))),
        ("nil conditions mean ready", [{"endpoints": [ep()]}], Endpoints(True, frozenset({"n1"}))),
        (
            "no conditions key at all",
            [{"endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n2"}]}],
            Endpoints(True, frozenset({"n2"})),
        ),
        ("not ready, not serving", [{"endpoints": [ep(ready=False, serving=False)]}], Endpoints()),
        ("not ready, serving not reported", [{"endpoints": [ep(ready=False)]}], Endpoints()),
        (
            "terminating but still serving: serving, on no ready node",
            [{"endpoints": [ep(ready=False, serving=True, terminating=True)]}],
            Endpoints(True, frozenset()),
        ),
        ("ready without a node name", [{"endpoints": [ep(node=None, ready=True)]}], Endpoints(True, frozenset())),
        ("ready with an empty node name", [{"endpoints": [ep(node="", ready=True)]}], Endpoints(True, frozenset())),
        (
            "nodes gathered over slices, not-ready ones left out",
            [
                {"endpoints": [ep("n1", ready=True), ep("n2", ready=False)]},
                {"endpoints": [ep("n3"), ep("n1", ready=True)]},
            ],
            Endpoints(True, frozenset({"n1", "n3"})),
        ),
        (
            "one serving endpoint in any slice is enough",
            [
                {"endpoints": [ep("n1", ready=False, serving=False)]},
                {"endpoints": [ep("n2", ready=False, serving=True)]},
            ],
            Endpoints(True, frozenset()),
        ),
    ],
)
def test_endpoints_from_slices(case: str, slices: list[dict[str, object]], expected: Endpoints) -> None:
    assert view.endpoints_from_slices(slices) == expected, case


@pytest.mark.parametrize(
    ("case", "slices"),
    [
        ("endpoints is null", [{"endpoints": None}]),
        ("endpoints missing", [{}]),
        ("endpoints is a mapping", [{"endpoints": {"nodeName": "n1"}}]),
        ("endpoints is a string", [{"endpoints": "n1"}]),
        ("an endpoint is not a mapping", [{"endpoints": ["n1", 3, None]}]),
        ("conditions is a list: read as absent", [{"endpoints": [{"nodeName": 7, "conditions": ["ready"]}]}]),
    ],
)
def test_endpoints_from_malformed_slices_never_raise(case: str, slices: list[dict[str, object]]) -> None:
    got = view.endpoints_from_slices(slices)
    assert got.ready_nodes == frozenset(), case


def test_malformed_conditions_fall_back_to_the_api_default() -> None:
    # conditions that are not a mapping count as "not reported": nil ready means ready
    got = view.endpoints_from_slices([{"endpoints": [{"nodeName": "n1", "conditions": "yes"}]}])
    assert got == Endpoints(True, frozenset({"n1"}))


def test_endpoints_accept_any_iterable_of_slices() -> None:
    slices = ({"endpoints": [ep(f"n{i}")]} for i in range(3))
    assert view.endpoints_from_slices(slices).ready_nodes == {"n0", "n1", "n2"}


# -- node_state ----------------------------------------------------------------------------------


def node(name: object = "n1", labels: object = None, conditions: object = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if labels is not None:
        meta["labels"] = labels
    out: dict[str, object] = {"metadata": meta}
    if conditions is not None:
        out["status"] = {"conditions": conditions}
    return out


def cond(type_: str, status: str) -> dict[str, str]:
    return {"type": type_, "status": status}


@pytest.mark.parametrize(
    ("case", "obj", "expected"),
    [
        ("plain node", node(), NodeState("n1")),
        ("labels kept", node(labels={"zone": "a"}), NodeState("n1", {"zone": "a"})),
        ("label values read as text", node(labels={"gpu": 2}), NodeState("n1", {"gpu": "2"})),
        (
            "NetworkUnavailable=True",
            node(conditions=[cond("Ready", "True"), cond("NetworkUnavailable", "True")]),
            NodeState("n1", network_unavailable=True),
        ),
        ("NetworkUnavailable=False", node(conditions=[cond("NetworkUnavailable", "False")]), NodeState("n1")),
        ("NetworkUnavailable=Unknown", node(conditions=[cond("NetworkUnavailable", "Unknown")]), NodeState("n1")),
        ("Ready=False is not our business", node(conditions=[cond("Ready", "False")]), NodeState("n1")),
        (
            "a boolean status is not the API's 'True'",
            node(conditions=[{"type": "NetworkUnavailable", "status": True}]),
            NodeState("n1"),
        ),
        # malformed shapes: read as absent, never an exception
        ("no metadata", {}, NodeState("")),
        ("metadata not a mapping", {"metadata": ["n1"]}, NodeState("")),
        ("name missing", {"metadata": {}}, NodeState("")),
        ("labels not a mapping", node(labels=["zone=a"]), NodeState("n1")),
        ("status not a mapping", {"metadata": {"name": "n1"}, "status": "NotReady"}, NodeState("n1")),
        ("conditions not a list", node(conditions={"type": "NetworkUnavailable", "status": "True"}), NodeState("n1")),
        ("a condition not a mapping", node(conditions=["NetworkUnavailable", None]), NodeState("n1")),
    ],
)
def test_node_state(case: str, obj: dict[str, object], expected: NodeState) -> None:
    assert view.node_state(obj) == expected, case


@pytest.mark.parametrize(
    ("state", "excluded"),
    [
        (NodeState("n1"), False),
        (NodeState("n1", {EXCLUDE_LABEL: ""}), True),  # the label's presence counts, not its value
        (NodeState("n1", {EXCLUDE_LABEL: "false"}), True),
        (NodeState("n1", {"node.kubernetes.io/exclude-disruption": "true"}), False),
        (NodeState("n1", network_unavailable=True), True),
    ],
)
def test_node_excluded(state: NodeState, excluded: bool) -> None:
    assert state.excluded is excluded


def test_node_state_from_a_real_node_shape() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "worker-1",
            "labels": {"kubernetes.io/hostname": "worker-1", EXCLUDE_LABEL: "true"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"conditions": [cond("MemoryPressure", "False"), cond("Ready", "True")]},
    }
    state = view.node_state(obj)
    assert state.name == "worker-1"
    assert state.labels["kubernetes.io/hostname"] == "worker-1"
    assert state.excluded and not state.network_unavailable
