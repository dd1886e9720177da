# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingress-nginx v1.15.1 as a controller profile: its RBAC, arguments and admission webhook
(ingress_exposure.py gives the exposure). ingress-nginx was retired upstream in March 2026 and
v1.15.1 (chart 4.15.1) is its last release."""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from typing import Any, Dict, List, Mapping

from ansible_collections.onprem.ingress.plugins.module_utils.ingress_exposure import (
    Exposure,
    Identity,
    access,
    ingress_class,
    namespace,
    resources,
    rule,
)

VERSION = "1.15.1"
WHO = Identity("ingress-nginx", VERSION)
NAMES = {
    "controller": "ingress-nginx-controller",
    "account": "ingress-nginx",
    "admission": "ingress-nginx-admission",
    "admission_service": "ingress-nginx-controller-admission",
}
# Ports the hostnetwork variant binds on each node: http, https, the webhook, health.
HOST_PORTS = (80, 443, 8443, 10254)

# What the controller reads and writes, as the release documents it (cluster-wide, and in its
# own namespace).
CLUSTER_RULES = [
    rule([""], ["configmaps", "endpoints", "nodes", "pods", "secrets", "namespaces"], ["list", "watch"]),
    rule(["coordination.k8s.io"], ["leases"], ["list", "watch"]),
    rule([""], ["nodes"], ["get"]),
    rule([""], ["services"], ["get", "list", "watch"]),
    rule(["networking.k8s.io"], ["ingresses"], ["get", "list", "watch"]),
    rule([""], ["events"], ["create", "patch"]),
    rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
    rule(["networking.k8s.io"], ["ingressclasses"], ["get", "list", "watch"]),
    rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch", "get"]),
]
NAMESPACED_RULES = [
    rule([""], ["namespaces"], ["get"]),
    rule([""], ["configmaps", "pods", "secrets", "endpoints"], ["get", "list", "watch"]),
    rule([""], ["services"], ["get", "list", "watch"]),
    rule(["networking.k8s.io"], ["ingresses"], ["get", "list", "watch"]),
    rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
    rule(["networking.k8s.io"], ["ingressclasses"], ["get", "list", "watch"]),
    rule(["coordination.k8s.io"], ["leases"], ["get", "update"], ["ingress-nginx-leader"]),
    rule(["coordination.k8s.io"], ["leases"], ["create"]),
    rule([""], ["events"], ["create", "patch"]),
    rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch", "get"]),
]
# The certificate Jobs: create the Secret, then put its CA into the webhook configuration.
ADMISSION_CLUSTER_RULES = [
    rule(["admissionregistration.k8s.io"], ["validatingwebhookconfigurations"], ["get", "update"]),
]
ADMISSION_NAMESPACED_RULES = [rule([""], ["secrets"], ["get", "create"])]
RESTRICTED = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _status_args(shape: Exposure) -> List[str]:
    if shape.status is None:
        return []
    how, what = shape.status
    if how == "service":
        return ["--publish-service=%s" % what]
    if how == "addresses":
        return ["--publish-status-address=%s" % ",".join(what)]
    return ["--report-node-internal-ip-address"]


def _pod(settings: Mapping[str, Any], shape: Exposure) -> Dict[str, Any]:
    webhook = settings["admission_webhook"]
    args = [
        "/nginx-ingress-controller",
        "--election-id=ingress-nginx-leader",
        "--controller-class=k8s.io/ingress-nginx",
        "--ingress-class=%s" % settings["class_name"],
        "--configmap=$(POD_NAMESPACE)/%s" % NAMES["controller"],
    ]
    args += _status_args(shape)
    if webhook:
        args += [
            "--validating-webhook=:8443",
            "--validating-webhook-certificate=/usr/local/certificates/cert",
            "--validating-webhook-key=/usr/local/certificates/key",
        ]
    args += [str(a) for a in settings["extra_args"]]
    ports = [("http", 80), ("https", 443)] + ([("webhook", 8443)] if webhook else [])

    def probe(failures: int) -> Dict[str, Any]:
        return {
            "httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": failures,
        }

    security = dict(RESTRICTED, capabilities={"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})
    security.update(readOnlyRootFilesystem=False, runAsGroup=82, runAsUser=101)
    container: Dict[str, Any] = {
        "name": "controller",
        "image": settings["controller_image"],
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "LD_PRELOAD", "value": "/usr/local/lib/libmimalloc.so"},
        ],
        "lifecycle": {"preStop": {"exec": {"command": ["/wait-shutdown"]}}},
        "livenessProbe": probe(5),
        "readinessProbe": probe(3),
        "ports": shape.container_ports(ports),
        "resources": resources(settings),
        "securityContext": security,
    }
    pod: Dict[str, Any] = {"containers": [container], "dnsPolicy": "ClusterFirst"}
    pod["serviceAccountName"] = NAMES["account"]
    pod["terminationGracePeriodSeconds"] = 300
    if webhook:
        container["volumeMounts"] = [
            {"name": "webhook-cert", "mountPath": "/usr/local/certificates/", "readOnly": True}
        ]
        pod["volumes"] = [{"name": "webhook-cert", "secret": {"secretName": NAMES["admission"]}}]
    return pod


def _job(settings: Mapping[str, Any], name: str, args: List[str]) -> Dict[str, Any]:
    component = "admission-webhook"
    security = dict(RESTRICTED, capabilities={"drop": ["ALL"]})
    security.update(readOnlyRootFilesystem=True, runAsGroup=65532, runAsUser=65532)
    container = {
        "name": name,
        "image": settings["certgen_image"],
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "securityContext": security,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": WHO.meta(settings, "%s-%s" % (NAMES["admission"], name), component),
        "spec": {
            "backoffLimit": 6,
            "template": {
                "metadata": {"labels": WHO.labels(settings, component)},
                "spec": {
                    "containers": [container],
                    "nodeSelector": dict(settings["node_selector"]),
                    "restartPolicy": "OnFailure",
                    "serviceAccountName": NAMES["admission"],
                },
            },
        },
    }


def _admission(settings: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The webhook's Service and configuration, and the two Jobs that make its certificate."""
    ns = settings["namespace"]
    component = "admission-webhook"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": WHO.meta(settings, NAMES["admission_service"], "controller"),
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "https-webhook", "port": 443, "targetPort": "webhook", "appProtocol": "https"}],
            "selector": WHO.selector(),
        },
    }
    hosts = "%s,%s.%s.svc" % (NAMES["admission_service"], NAMES["admission_service"], ns)
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": WHO.meta(settings, NAMES["admission"], component, False),
        "webhooks": [
            {
                "name": "validate.nginx.ingress.kubernetes.io",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {
                    "service": {
                        "name": NAMES["admission_service"],
                        "namespace": ns,
                        "path": "/networking/v1/ingresses",
                        "port": 443,
                    }
                },
                "failurePolicy": settings["failure_policy"],
                "matchPolicy": "Equivalent",
                "rules": [
                    {
                        "apiGroups": ["networking.k8s.io"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["ingresses"],
                    }
                ],
                "sideEffects": "None",
            }
        ],
    }
    secret = "--secret-name=%s" % NAMES["admission"]
    create = _job(settings, "create", ["create", "--host=%s" % hosts, "--namespace=$(POD_NAMESPACE)", secret])
    patch = _job(
        settings,
        "patch",
        [
            "patch",
            "--webhook-name=%s" % NAMES["admission"],
            "--namespace=$(POD_NAMESPACE)",
            "--patch-mutating=false",
            secret,
            "--patch-failure-policy=%s" % settings["failure_policy"],
        ],
    )
    rbac = access(
        settings,
        WHO,
        NAMES["admission"],
        component,
        cluster=ADMISSION_CLUSTER_RULES,
        namespaced=ADMISSION_NAMESPACED_RULES,
    )
    return [service, webhook, *rbac, create, patch]


def objects(settings: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every object, in apply order: namespace, access, configuration, Services, the controller
    workload, the IngressClass, then the admission webhook."""
    shape = Exposure(settings, WHO)
    out: List[Dict[str, Any]] = [namespace(settings, WHO)]
    out += access(settings, WHO, NAMES["account"], "controller", cluster=CLUSTER_RULES, namespaced=NAMESPACED_RULES)
    out.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": WHO.meta(settings, NAMES["controller"], "controller"),
            "data": {},
        }
    )
    if shape.service is not None:
        out.append(shape.service)
    admission = _admission(settings) if settings["admission_webhook"] else []
    out += admission[:1]  # the webhook's Service, before the pods it selects
    out.append(shape.workload(settings, WHO, NAMES["controller"], _pod(settings, shape)))
    out.append(ingress_class(settings, WHO))
    out += admission[1:]
    return out


def host_ports(settings: Mapping[str, Any]) -> List[int]:
    return [p for p in HOST_PORTS if settings["admission_webhook"] or p != 8443]
