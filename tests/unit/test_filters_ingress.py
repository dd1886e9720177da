"""onprem.ingress.ingress_objects / ingress_stale_objects (the ingress role's ingress-nginx objects as
data) and tcp_listeners (its hostnetwork preflight): the fields each variant needs, what a switch
deletes, and bad settings refused with a message, never a traceback."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.ingress.plugins.filter.doctor import tcp_listeners
from ansible_collections.onprem.ingress.plugins.filter.ingress_objects import (
    ingress_objects,
    ingress_stale_objects,
)
from hypothesis import given
from hypothesis import strategies as st

CONTROLLER = "registry.k8s.io/ingress-nginx/controller:v1.15.1@sha256:" + "5" * 64
CERTGEN = "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.6.9@sha256:" + "0" * 64
TRAEFIK = "docker.io/library/traefik:v3.6.12@sha256:" + "1" * 64
BASE: dict[str, Any] = {
    "controller": "ingress-nginx",
    "variant": "loadbalancer",
    "namespace": "ingress-nginx",
    "service_name": "ingress-nginx-controller",
    "traefik_image": TRAEFIK,
    "gateway_api": False,
    "controller_image": CONTROLLER,
    "certgen_image": CERTGEN,
    "class_name": "nginx",
    "class_default": False,
    "replicas": 2,
    "resources": {"requests": {"cpu": "100m", "memory": "90Mi"}},
    "extra_args": [],
    "admission_webhook": True,
    "failure_policy": "Fail",
    "external_traffic_policy": None,
    "lb_addresses": [],
    "lb_pool": None,
    "http_node_port": 30080,
    "https_node_port": 30443,
    "publish_status_address": None,
    "node_selector": {"kubernetes.io/os": "linux"},
    "tolerations": [],
    "external_ips": [],
    "labels": {"app.kubernetes.io/managed-by": "onprem.ingress"},
}
VARIANTS = ["loadbalancer", "nodeport", "hostnetwork", "externalips"]


def build(**changes: Any) -> dict[str, dict[str, Any]]:
    """kind/name -> object."""
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in ingress_objects(dict(BASE, **changes))}


def controller_args(objs: dict[str, dict[str, Any]], kind: str = "Deployment") -> list[str]:
    args: list[str] = objs[f"{kind}/ingress-nginx-controller"]["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_loadbalancer_fields() -> None:
    objs = build(lb_addresses=["203.0.113.168"], lb_pool="lab")
    svc = objs["Service/ingress-nginx-controller"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["externalTrafficPolicy"] == "Local"  # seed 003: the client address survives
    assert svc["metadata"]["annotations"] == {
        "metallb.io/loadBalancerIPs": "203.0.113.168",
        "metallb.io/address-pool": "lab",
    }
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 80, "http"),
        ("https", 443, "https"),
    ]
    assert "--publish-service=ingress-nginx/ingress-nginx-controller" in controller_args(objs)
    deployment = objs["Deployment/ingress-nginx-controller"]["spec"]
    assert deployment["replicas"] == 2
    assert "hostNetwork" not in deployment["template"]["spec"]
    assert "DaemonSet/ingress-nginx-controller" not in objs


def test_loadbalancer_without_pin_has_no_annotation() -> None:
    assert "annotations" not in build()["Service/ingress-nginx-controller"]["metadata"]


def test_nodeport_fields() -> None:
    objs = build(variant="nodeport", http_node_port=31080, https_node_port=31443, publish_status_address="192.0.2.10")
    svc = objs["Service/ingress-nginx-controller"]["spec"]
    assert svc["type"] == "NodePort"
    assert svc["externalTrafficPolicy"] == "Cluster"
    assert [(p["name"], p["nodePort"]) for p in svc["ports"]] == [("http", 31080), ("https", 31443)]
    assert "--publish-status-address=192.0.2.10" in controller_args(objs)
    assert not any(a.startswith("--publish-service") for a in controller_args(objs))
    assert (
        build(variant="nodeport", external_traffic_policy="Local")["Service/ingress-nginx-controller"]["spec"][
            "externalTrafficPolicy"
        ]
        == "Local"
    )


def test_hostnetwork_fields() -> None:
    objs = build(variant="hostnetwork", tolerations=[{"operator": "Exists"}])
    assert "Service/ingress-nginx-controller" not in objs
    assert "Deployment/ingress-nginx-controller" not in objs
    ds = objs["DaemonSet/ingress-nginx-controller"]["spec"]
    pod = ds["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    # the old pod leaves a node before the new one starts: never two on one node's ports
    assert ds["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    ports = pod["containers"][0]["ports"]
    assert all(p["hostPort"] == p["containerPort"] for p in ports)
    assert "--report-node-internal-ip-address" in controller_args(objs, "DaemonSet")
    # only the webhook's Service remains, and none without the webhook
    assert [k for k in objs if k.startswith("Service/")] == ["Service/ingress-nginx-controller-admission"]
    assert not [k for k in build(variant="hostnetwork", admission_webhook=False) if k.startswith("Service/")]


def test_externalips_fields() -> None:
    objs = build(variant="externalips", external_ips=["203.0.113.163", "203.0.113.164"])
    svc = objs["Service/ingress-nginx-controller"]["spec"]
    assert svc["type"] == "ClusterIP"  # no node ports opened on every node
    assert svc["externalIPs"] == ["203.0.113.163", "203.0.113.164"]
    assert "--publish-status-address=203.0.113.163,203.0.113.164" in controller_args(objs)


def test_webhook_objects_and_their_absence() -> None:
    on = build()
    webhook = on["ValidatingWebhookConfiguration/ingress-nginx-admission"]["webhooks"][0]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["clientConfig"]["service"]["name"] == "ingress-nginx-controller-admission"
    assert "--validating-webhook=:8443" in controller_args(on)
    patch = on["Job/ingress-nginx-admission-patch"]["spec"]["template"]["spec"]["containers"][0]
    assert patch["image"] == CERTGEN
    assert "--patch-failure-policy=Fail" in patch["args"]
    assert (
        "--patch-failure-policy=Ignore"
        in build(failure_policy="Ignore")["Job/ingress-nginx-admission-patch"]["spec"]["template"]["spec"][
            "containers"
        ][0]["args"]
    )
    off = build(admission_webhook=False)
    assert not [k for k in off if "admission" in k]
    assert not any("webhook" in a for a in controller_args(off))
    assert "volumes" not in off["Deployment/ingress-nginx-controller"]["spec"]["template"]["spec"]


def test_class_name_default_extra_args_and_images() -> None:
    objs = build(class_name="edge", class_default=True, extra_args=["--enable-ssl-passthrough"])
    cls = objs["IngressClass/edge"]
    assert cls["spec"]["controller"] == "k8s.io/ingress-nginx"
    assert cls["metadata"]["annotations"] == {"ingressclass.kubernetes.io/is-default-class": "true"}
    assert "--ingress-class=edge" in controller_args(objs)
    assert controller_args(objs)[-1] == "--enable-ssl-passthrough"
    assert (
        objs["Deployment/ingress-nginx-controller"]["spec"]["template"]["spec"]["containers"][0]["image"] == CONTROLLER
    )
    assert "annotations" not in build()["IngressClass/nginx"]["metadata"]


def test_every_object_is_labelled_and_namespaced_where_it_should_be() -> None:
    cluster_scoped = {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "IngressClass",
        "ValidatingWebhookConfiguration",
    }
    for variant in VARIANTS:
        for obj in ingress_objects(dict(BASE, variant=variant, external_ips=["192.0.2.1"], namespace="edge")):
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "onprem.ingress"
            assert ("namespace" in obj["metadata"]) == (obj["kind"] not in cluster_scoped), obj["kind"]
            if "namespace" in obj["metadata"]:
                assert obj["metadata"]["namespace"] == "edge"


@pytest.mark.parametrize("old", VARIANTS)
@pytest.mark.parametrize("new", VARIANTS)
@pytest.mark.parametrize("old_webhook", [True, False])
def test_a_switch_deletes_exactly_what_the_old_configuration_owned_and_the_new_does_not(
    old: str, new: str, old_webhook: bool
) -> None:
    def keys(variant: str, webhook: bool) -> set[tuple[str, str]]:
        objs = ingress_objects(dict(BASE, variant=variant, admission_webhook=webhook, external_ips=["192.0.2.1"]))
        return {(o["kind"], o["metadata"]["name"]) for o in objs}

    stale = {
        (o["kind"], o["metadata"]["name"])
        for o in ingress_stale_objects(dict(BASE, variant=new, admission_webhook=False, external_ips=["192.0.2.1"]))
    }
    before, after = keys(old, old_webhook), keys(new, False)
    assert before - after <= stale  # nothing of the old configuration is left behind
    assert not stale & after  # and nothing wanted is deleted


def test_tcp_listeners() -> None:
    lines = [
        'LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("apache2",pid=812,fd=4),("apache2",pid=813,fd=4))',
        'LISTEN 0 511 [::]:443 [::]:* users:(("nginx",pid=90,fd=7))',
        'LISTEN 0 511 10.244.1.3:80 0.0.0.0:* users:(("nginx",pid=1485,fd=5))',
        "LISTEN 0 4096 127.0.0.1:10254 0.0.0.0:*",
        'LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))',
    ]
    found = tcp_listeners(lines, [80, 443, 10254], ["10.244.0.0/16"])
    assert [f["text"] for f in found] == [
        "apache2 (pid 812) listening on 0.0.0.0:80",
        "nginx (pid 90) listening on :::443",
        "an unknown program listening on 127.0.0.1:10254",
    ]
    assert tcp_listeners("\n".join(lines), [8080]) == []
    with pytest.raises(AnsibleFilterError):
        tcp_listeners(lines, ["http"])


BAD_SETTINGS = [
    ("variant", "ingress"),
    ("variant", None),
    ("namespace", "Bad NS!"),
    ("namespace", "x" * 64),
    ("class_name", "My_Class"),
    ("replicas", "two"),
    ("replicas", True),
    ("replicas", -1),
    ("http_node_port", "30080a"),
    ("failure_policy", "fail"),
    ("external_traffic_policy", "local"),
    ("external_ips", ["node1"]),
    ("lb_addresses", ["203.0.113.300"]),
    ("resources", "100m"),
    ("extra_args", "--v=2"),
    ("class_default", "maybe"),
]


def test_typed_settings_read_as_ansible_reads_them() -> None:
    """Values given with -e arrive as strings: 'false' is false and '2' is 2, as Ansible converts."""
    objs = build(
        class_default="false", replicas="3", admission_webhook="no", http_node_port="31080", variant="nodeport"
    )
    assert "annotations" not in objs["IngressClass/nginx"]["metadata"]
    assert objs["Deployment/ingress-nginx-controller"]["spec"]["replicas"] == 3
    assert not [k for k in objs if "admission" in k]
    assert objs["Service/ingress-nginx-controller"]["spec"]["ports"][0]["nodePort"] == 31080


@pytest.mark.parametrize(("key", "value"), BAD_SETTINGS)
def test_bad_settings_are_named(key: str, value: Any) -> None:
    settings = dict(BASE, variant="externalips" if key == "external_ips" else "loadbalancer")
    settings[key] = value
    with pytest.raises(AnsibleFilterError) as err:
        ingress_objects(settings)
    # the message names the setting (the IngressClass name is the class_name setting)
    assert key.split("_", maxsplit=1)[0] in str(err.value).lower() or (
        key == "class_name" and "IngressClass" in str(err.value)
    )


def test_externalips_needs_an_address() -> None:
    with pytest.raises(AnsibleFilterError, match="externalips variant needs"):
        ingress_objects(dict(BASE, variant="externalips"))


@given(
    key=st.sampled_from(sorted(BASE)),
    value=st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.lists(st.text(max_size=5), max_size=3)
    ),
)
def test_any_wrong_setting_is_a_filter_error_never_a_traceback(key: str, value: Any) -> None:
    try:
        ingress_objects(dict(BASE, **{key: value}))
        ingress_stale_objects(dict(BASE, **{key: value}))
    except AnsibleFilterError:
        pass


def test_not_a_mapping_or_unknown_setting() -> None:
    with pytest.raises(AnsibleFilterError, match="mapping"):
        ingress_objects(["loadbalancer"])
    with pytest.raises(AnsibleFilterError, match="unknown settings variantt"):
        ingress_objects(dict(BASE, variantt="nodeport"))
