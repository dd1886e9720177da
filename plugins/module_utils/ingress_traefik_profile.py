# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Traefik v3.6 as a controller profile: the maintained successor that serves ingress-nginx's
Ingresses unchanged (its kubernetesIngressNGINX provider claims the IngressClass whose controller
is k8s.io/ingress-nginx and reads the nginx.ingress.kubernetes.io annotations), and Gateway API
(its kubernetesGateway provider, GatewayClass ``traefik``).

Traefik listens on unprivileged ports (8000 for http, 8443 for https, 8080 for /ping) and the
Service maps 80 and 443 onto them; in the hostnetwork variant it binds 80 and 443 of the node
itself. A Gateway's listener port is the entry point's own port (8000, or 80 for hostnetwork).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from typing import Any, Dict, List, Mapping

from ansible_collections.onprem.ingress.plugins.module_utils import ingress_exposure as common

VERSION = "3.6.12"
WHO = common.Identity("traefik", VERSION)
NAME = "traefik"
GATEWAY_CLASS = "traefik"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
GATEWAY_API = "gateway.networking.k8s.io"
PING_PORT = 8080

# The nginx.ingress.kubernetes.io annotations v3.6.12's provider reads (its annotations.go);
# an Ingress carrying any other is served as if it were absent (rewrite-target among them: v3.7
# reads it, and v3.7 cannot be built from the Go module proxy today, see lab/ingress/versions.env).
NGINX_PREFIX = "nginx.ingress.kubernetes.io/"
READ_ANNOTATIONS = frozenset(
    NGINX_PREFIX + name
    for name in [
        "affinity",
        "auth-realm",
        "auth-response-headers",
        "auth-secret",
        "auth-secret-type",
        "auth-type",
        "auth-url",
        "backend-protocol",
        "cors-allow-credentials",
        "cors-allow-headers",
        "cors-allow-methods",
        "cors-allow-origin",
        "cors-expose-headers",
        "cors-max-age",
        "enable-cors",
        "force-ssl-redirect",
        "proxy-ssl-name",
        "proxy-ssl-secret",
        "proxy-ssl-server-name",
        "proxy-ssl-verify",
        "service-upstream",
        "session-cookie-domain",
        "session-cookie-max-age",
        "session-cookie-name",
        "session-cookie-path",
        "session-cookie-samesite",
        "session-cookie-secure",
        "ssl-passthrough",
        "ssl-redirect",
        "use-regex",
    ]
)

READ = ["get", "list", "watch"]
CLUSTER_RULES = [
    common.rule([""], ["services", "secrets", "configmaps", "namespaces", "nodes"], READ),
    common.rule([""], ["pods"], ["get"]),
    common.rule(["discovery.k8s.io"], ["endpointslices"], READ),
    common.rule(["networking.k8s.io"], ["ingresses", "ingressclasses"], READ),
    common.rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
]
GATEWAY_RULES = [
    common.rule(
        [GATEWAY_API],
        ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies"],
        READ,
    ),
    common.rule(
        [GATEWAY_API],
        [
            "gatewayclasses/status",
            "gateways/status",
            "httproutes/status",
            "grpcroutes/status",
            "backendtlspolicies/status",
        ],
        ["update"],
    ),
]


def ports(settings: Mapping[str, Any]) -> Dict[str, int]:
    """The entry points' own ports: the node's 80 and 443 for hostnetwork, unprivileged ones
    behind a Service otherwise."""
    if settings["variant"] == "hostnetwork":
        return {"http": 80, "https": 443}
    return {"http": 8000, "https": 8443}


def host_ports(settings: Mapping[str, Any]) -> List[int]:
    own = ports(settings)
    return [own["http"], own["https"], PING_PORT]


def _args(settings: Mapping[str, Any], shape: common.Exposure) -> List[str]:
    own = ports(settings)
    nginx = "--providers.kubernetesIngressNGINX"
    args = [
        "--entryPoints.http.address=:%d" % own["http"],
        "--entryPoints.https.address=:%d" % own["https"],
        "--entryPoints.https.http.tls=true",
        "--entryPoints.traefik.address=:%d" % PING_PORT,
        "--ping=true",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        nginx + "=true",
        "%s.ingressClass=%s" % (nginx, settings["class_name"]),
        "%s.controllerClass=k8s.io/ingress-nginx" % nginx,
    ]
    gateway = "--providers.kubernetesGateway"
    if settings["gateway_api"]:
        args.append(gateway + "=true")
    if shape.status is not None and shape.status[0] == "service":
        args.append("%s.publishService=%s" % (nginx, shape.status[1]))
        if settings["gateway_api"]:
            ns, name = shape.status[1].split("/", 1)
            args += [
                "%s.statusAddress.service.namespace=%s" % (gateway, ns),
                "%s.statusAddress.service.name=%s" % (gateway, name),
            ]
    elif shape.status is not None and shape.status[0] == "addresses":
        args.append("%s.publishStatusAddress=%s" % (nginx, ",".join(shape.status[1])))
        if settings["gateway_api"]:
            args.append("%s.statusAddress.ip=%s" % (gateway, shape.status[1][0]))
    return args + [str(a) for a in settings["extra_args"]]


def _pod(settings: Mapping[str, Any], shape: common.Exposure) -> Dict[str, Any]:
    own = ports(settings)
    probe = {
        "httpGet": {"path": "/ping", "port": PING_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": 2,
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    # 80 and 443 of the node need the one capability; the unprivileged ports need none
    caps: Dict[str, List[str]] = {"drop": ["ALL"]}
    if own["http"] < 1024:
        caps["add"] = ["NET_BIND_SERVICE"]
    container: Dict[str, Any] = {
        "name": "traefik",
        "image": settings["traefik_image"],
        "imagePullPolicy": "IfNotPresent",
        "args": _args(settings, shape),
        "ports": shape.container_ports([("http", own["http"]), ("https", own["https"]), ("ping", PING_PORT)]),
        "readinessProbe": dict(probe, failureThreshold=1),
        "livenessProbe": probe,
        "resources": common.resources(settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": caps,
            "readOnlyRootFilesystem": True,
            "runAsGroup": 65532,
            "runAsNonRoot": own["http"] >= 1024,
            "runAsUser": 65532 if own["http"] >= 1024 else 0,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own /tmp, an emptyDir
        ],
    }
    return {
        "containers": [container],
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": NAME,
        "terminationGracePeriodSeconds": 60,
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }


def _gateway(settings: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """GatewayClass ``traefik`` and one Gateway, ``<service_name>``, in the controller's
    namespace: its http listener on the entry point's port, open to routes of every namespace,
    and the Service's pinned address as its requested address."""
    gateway_class = {
        "apiVersion": GATEWAY_API + "/v1",
        "kind": "GatewayClass",
        "metadata": WHO.meta(settings, GATEWAY_CLASS, "controller", False),
        "spec": {"controllerName": GATEWAY_CONTROLLER},
    }
    spec: Dict[str, Any] = {
        "gatewayClassName": GATEWAY_CLASS,
        "listeners": [
            {
                "name": "http",
                "protocol": "HTTP",
                "port": ports(settings)["http"],
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }
        ],
    }
    if settings["lb_addresses"]:
        spec["addresses"] = [{"type": "IPAddress", "value": str(a)} for a in settings["lb_addresses"]]
    gateway = {
        "apiVersion": GATEWAY_API + "/v1",
        "kind": "Gateway",
        "metadata": WHO.meta(settings, settings["service_name"], "controller"),
        "spec": spec,
    }
    return [gateway_class, gateway]


def objects(settings: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every object, in apply order: namespace, access, the Service, the workload, the
    IngressClass, then (gateway_api) the GatewayClass and the Gateway."""
    shape = common.Exposure(settings, WHO)
    cluster = CLUSTER_RULES + (GATEWAY_RULES if settings["gateway_api"] else [])
    out: List[Dict[str, Any]] = [common.namespace(settings, WHO)]
    out += common.access(settings, WHO, NAME, "controller", cluster=cluster, namespaced=None)
    if shape.service is not None:
        out.append(shape.service)
    out.append(shape.workload(settings, WHO, NAME, _pod(settings, shape)))
    out.append(common.ingress_class(settings, WHO))
    if settings["gateway_api"]:
        out += _gateway(settings)
    return out


def unread_annotations(ingresses: List[Mapping[str, Any]], class_name: str) -> List[str]:
    """For each Ingress of ``class_name`` (by spec.ingressClassName or the old annotation), the
    nginx.ingress.kubernetes.io annotations Traefik does not read, as "ns/name: a, b"."""
    out = []
    for ing in ingresses:
        meta = ing.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        chosen = (ing.get("spec") or {}).get("ingressClassName") or annotations.get("kubernetes.io/ingress.class")
        if chosen != class_name:
            continue
        unread = sorted(a for a in annotations if a.startswith(NGINX_PREFIX) and a not in READ_ANNOTATIONS)
        if unread:
            out.append("%s/%s: %s" % (meta.get("namespace", ""), meta.get("name", ""), ", ".join(unread)))
    return sorted(out)
