"""onprem.ingress.ingress_objects for Traefik (the ingress role's default controller), the switch
between controllers (ingress_stale_objects across controllers, exposures and options), and
ingress_unread_annotations: the fields each exposure needs, the Service that stays, and the
ingress-nginx annotations Traefik would ignore."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.ingress.plugins.filter.ingress_objects import (
    ingress_host_ports,
    ingress_objects,
    ingress_stale_objects,
    ingress_unread_annotations,
)
from ansible_collections.onprem.ingress.plugins.module_utils.ingress_traefik_profile import READ_ANNOTATIONS
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_filters_ingress import BASE, TRAEFIK, VARIANTS

TBASE: dict[str, Any] = dict(BASE, controller="traefik")
SERVICE = "Service/ingress-nginx-controller"


def build(**changes: Any) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in ingress_objects(dict(TBASE, **changes))}


def container(objs: dict[str, dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    found: dict[str, Any] = objs[f"{kind}/traefik"]["spec"]["template"]["spec"]["containers"][0]
    return found


def test_loadbalancer_serves_class_nginx_behind_the_same_service() -> None:
    objs = build(lb_addresses=["203.0.113.168"], lb_pool="lab")
    traefik = container(objs)
    assert traefik["image"] == TRAEFIK
    args = traefik["args"]
    for arg in (
        "--providers.kubernetesIngressNGINX=true",
        "--providers.kubernetesIngressNGINX.ingressClass=nginx",
        "--providers.kubernetesIngressNGINX.controllerClass=k8s.io/ingress-nginx",
        "--providers.kubernetesIngressNGINX.publishService=ingress-nginx/ingress-nginx-controller",
        "--entryPoints.http.address=:8000",
        "--entryPoints.https.address=:8443",
        "--entryPoints.https.http.tls=true",
        "--ping=true",
    ):
        assert arg in args, arg
    assert not any("kubernetesGateway" in a for a in args)
    svc = objs[SERVICE]
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == "203.0.113.168"
    # the Service's named target ports are Traefik's unprivileged container ports
    named = {p["name"]: p["containerPort"] for p in traefik["ports"]}
    assert {p["targetPort"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 80, "https": 443}
    assert named == {"http": 8000, "https": 8443, "ping": 8080}
    pod_labels = objs["Deployment/traefik"]["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["selector"]["app.kubernetes.io/name"] == "traefik"
    assert traefik["readinessProbe"]["httpGet"] == {"path": "/ping", "port": 8080, "scheme": "HTTP"}
    assert (
        traefik["securityContext"]["runAsNonRoot"] is True and "add" not in traefik["securityContext"]["capabilities"]
    )
    # no namespaced Role: Traefik reads cluster-wide and writes Ingress status only
    assert not [k for k in objs if k.startswith(("Role/", "RoleBinding/", "ConfigMap/", "Job/"))]
    assert objs["IngressClass/nginx"]["spec"]["controller"] == "k8s.io/ingress-nginx"


def test_hostnetwork_binds_the_nodes_ports() -> None:
    objs = build(variant="hostnetwork")
    assert SERVICE not in objs and "Deployment/traefik" not in objs
    traefik = container(objs, "DaemonSet")
    assert "--entryPoints.http.address=:80" in traefik["args"]
    assert all(p["hostPort"] == p["containerPort"] for p in traefik["ports"])
    assert traefik["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    assert ingress_host_ports(dict(TBASE, variant="hostnetwork")) == [80, 443, 8080]
    assert ingress_host_ports(dict(BASE, variant="hostnetwork")) == [80, 443, 8443, 10254]
    assert ingress_host_ports(dict(BASE, variant="hostnetwork", admission_webhook=False)) == [80, 443, 10254]


@pytest.mark.parametrize(
    ("variant", "extra", "status"),
    [
        ("nodeport", {"publish_status_address": "192.0.2.10"}, "192.0.2.10"),
        ("externalips", {"external_ips": ["203.0.113.163", "203.0.113.164"]}, "203.0.113.163,203.0.113.164"),
    ],
)
def test_status_addresses(variant: str, extra: dict[str, Any], status: str) -> None:
    args = container(build(variant=variant, **extra))["args"]
    assert f"--providers.kubernetesIngressNGINX.publishStatusAddress={status}" in args
    assert not any("publishService" in a for a in args)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gateway_api(variant: str) -> None:
    objs = build(variant=variant, gateway_api=True, lb_addresses=["203.0.113.168"], external_ips=["203.0.113.163"])
    assert objs["GatewayClass/traefik"]["spec"] == {"controllerName": "traefik.io/gateway-controller"}
    gateway = objs["Gateway/ingress-nginx-controller"]
    listener = gateway["spec"]["listeners"][0]
    assert listener["port"] == (80 if variant == "hostnetwork" else 8000)  # the entry point's own port
    assert listener["allowedRoutes"] == {"namespaces": {"from": "All"}}
    args = container(objs, "DaemonSet" if variant == "hostnetwork" else "Deployment")["args"]
    assert "--providers.kubernetesGateway=true" in args
    if variant == "loadbalancer":
        assert gateway["spec"]["addresses"] == [{"type": "IPAddress", "value": "203.0.113.168"}]
        assert "--providers.kubernetesGateway.statusAddress.service.name=ingress-nginx-controller" in args
    rules = objs["ClusterRole/traefik"]["rules"]
    assert any("httproutes" in r["resources"] for r in rules)
    assert any("gateways/status" in r["resources"] for r in rules)


CONFIGS = [
    {"controller": c, "variant": v, "admission_webhook": w, "gateway_api": g}
    for c, v, w, g in itertools.product(("traefik", "ingress-nginx"), VARIANTS, (True, False), (True, False))
]


@pytest.mark.parametrize("new", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_a_switch_of_controller_or_exposure_deletes_exactly_what_the_old_one_owned(new: dict[str, Any]) -> None:
    def keys(config: dict[str, Any]) -> set[tuple[str, str, str]]:
        objs = ingress_objects(dict(BASE, external_ips=["192.0.2.1"], **config))
        return {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objs}

    settings = dict(BASE, external_ips=["192.0.2.1"], **new)
    stale = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in ingress_stale_objects(settings)}
    after = keys(new)
    assert not stale & after  # nothing wanted is deleted
    for old in CONFIGS:
        assert keys(old) - after <= stale, old  # nothing of any old configuration is left behind


def test_the_service_namespace_and_class_survive_a_switch() -> None:
    stale = {(o["kind"], o["metadata"]["name"]) for o in ingress_stale_objects(TBASE)}
    assert ("Deployment", "ingress-nginx-controller") in stale and ("ClusterRole", "ingress-nginx") in stale
    for kept in (("Service", "ingress-nginx-controller"), ("Namespace", "ingress-nginx"), ("IngressClass", "nginx")):
        assert kept not in stale
    back = {(o["kind"], o["metadata"]["name"]) for o in ingress_stale_objects(BASE)}
    assert ("Deployment", "traefik") in back and ("Service", "ingress-nginx-controller") not in back


def test_a_wrong_controller_is_named() -> None:
    with pytest.raises(AnsibleFilterError, match="controller 'haproxy' is not one of traefik, ingress-nginx"):
        ingress_objects(dict(TBASE, controller="haproxy"))


NGINX = "nginx.ingress.kubernetes.io/"
UNREAD = [NGINX + n for n in ("rewrite-target", "configuration-snippet", "proxy-body-size", "whitelist-source-range")]


def ingress(ns: str, name: str, annotations: dict[str, str], class_name: str | None = "nginx") -> dict[str, Any]:
    spec = {"ingressClassName": class_name} if class_name else {}
    return {"metadata": {"namespace": ns, "name": name, "annotations": annotations}, "spec": spec}


def test_unread_annotations_named_per_ingress() -> None:
    found = ingress_unread_annotations(
        [
            ingress("shop", "web", {NGINX + "rewrite-target": "/", NGINX + "ssl-redirect": "true"}),
            ingress("shop", "api", {NGINX + "backend-protocol": "HTTPS"}),
            ingress("other", "theirs", {NGINX + "rewrite-target": "/"}, "haproxy"),
            ingress("old", "style", {"kubernetes.io/ingress.class": "nginx", NGINX + "proxy-body-size": "8m"}, None),
        ]
    )
    assert found == [
        "old/style: nginx.ingress.kubernetes.io/proxy-body-size",
        "shop/web: nginx.ingress.kubernetes.io/rewrite-target",
    ]
    with pytest.raises(AnsibleFilterError, match="expected a list of Ingress objects"):
        ingress_unread_annotations("not a list")


@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from(sorted(READ_ANNOTATIONS) + UNREAD + ["example.com/other"]), max_size=6),
            st.sampled_from(["nginx", "traefik", None]),
        ),
        max_size=6,
    )
)
def test_unread_annotations_are_exactly_the_unknown_nginx_ones(cases: list[tuple[set[str], str | None]]) -> None:
    ingresses = [ingress("ns", f"i{n}", dict.fromkeys(names, "x"), cls) for n, (names, cls) in enumerate(cases)]
    expected = sorted(
        f"ns/i{n}: {', '.join(sorted(a for a in names if a in UNREAD))}"
        for n, (names, cls) in enumerate(cases)
        if cls == "nginx" and any(a in UNREAD for a in names)
    )
    assert ingress_unread_annotations(ingresses, "nginx") == expected
