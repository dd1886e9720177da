# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build an ingress controller's Kubernetes objects as data, in one of four
bare-metal variants (the onprem.ingress.ingress_nginx role applies them as they are).

The variant decides how traffic reaches the controller, and that part is the same whatever the
controller is (``exposure``): a LoadBalancer Service, a NodePort Service with fixed ports, a
hostNetwork DaemonSet, or a ClusterIP Service with externalIPs. What the controller itself needs
(RBAC, arguments, its admission webhook) is a profile; ingress-nginx v1.15.1 is the only one.

- ingress_objects: every object of one configuration, in apply order.
- ingress_stale_objects: the objects another variant or option of the same installation would
  own that this configuration does not (kind, namespace and name): what a switch deletes.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import copy
import ipaddress
from typing import Any, Callable, Dict, List, Mapping, Tuple

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.module_utils.six import string_types

from ansible_collections.onprem.ingress.plugins.module_utils.k8s_names import label_problem, subdomain_problem

VARIANTS = ("loadbalancer", "nodeport", "hostnetwork", "externalips")
CONTROLLERS = ("ingress-nginx",)

# The release this collection installs: ingress-nginx was retired upstream in March 2026 and
# controller v1.15.1 (chart 4.15.1) is its last release.
INGRESS_NGINX_VERSION = "1.15.1"

RBAC_API = "rbac.authorization.k8s.io/v1"


def _rule(groups: List[str], resources: List[str], verbs: List[str], names: Any = None) -> Dict[str, Any]:
    rule: Dict[str, Any] = {"apiGroups": groups, "resources": resources}
    if names:
        rule["resourceNames"] = names
    rule["verbs"] = verbs
    return rule


# What the controller reads and writes, as the release documents it (cluster-wide, and in its
# own namespace).
CONTROLLER_CLUSTER_RULES = [
    _rule([""], ["configmaps", "endpoints", "nodes", "pods", "secrets", "namespaces"], ["list", "watch"]),
    _rule(["coordination.k8s.io"], ["leases"], ["list", "watch"]),
    _rule([""], ["nodes"], ["get"]),
    _rule([""], ["services"], ["get", "list", "watch"]),
    _rule(["networking.k8s.io"], ["ingresses"], ["get", "list", "watch"]),
    _rule([""], ["events"], ["create", "patch"]),
    _rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
    _rule(["networking.k8s.io"], ["ingressclasses"], ["get", "list", "watch"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch", "get"]),
]
CONTROLLER_NAMESPACED_RULES = [
    _rule([""], ["namespaces"], ["get"]),
    _rule([""], ["configmaps", "pods", "secrets", "endpoints"], ["get", "list", "watch"]),
    _rule([""], ["services"], ["get", "list", "watch"]),
    _rule(["networking.k8s.io"], ["ingresses"], ["get", "list", "watch"]),
    _rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
    _rule(["networking.k8s.io"], ["ingressclasses"], ["get", "list", "watch"]),
    _rule(["coordination.k8s.io"], ["leases"], ["get", "update"], ["ingress-nginx-leader"]),
    _rule(["coordination.k8s.io"], ["leases"], ["create"]),
    _rule([""], ["events"], ["create", "patch"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch", "get"]),
]
# The certificate Jobs: create the Secret, then put its CA into the webhook configuration.
ADMISSION_CLUSTER_RULES = [
    _rule(["admissionregistration.k8s.io"], ["validatingwebhookconfigurations"], ["get", "update"]),
]
ADMISSION_NAMESPACED_RULES = [_rule([""], ["secrets"], ["get", "create"])]

NAMES = {
    "controller": "ingress-nginx-controller",
    "account": "ingress-nginx",
    "admission": "ingress-nginx-admission",
    "admission_service": "ingress-nginx-controller-admission",
}
SETTINGS = {
    "variant": string_types,
    "namespace": string_types,
    "controller_image": string_types,
    "certgen_image": string_types,
    "class_name": string_types,
    "class_default": bool,
    "replicas": int,
    "resources": Mapping,
    "extra_args": list,
    "admission_webhook": bool,
    "failure_policy": string_types,
    "external_traffic_policy": string_types,
    "lb_addresses": list,
    "lb_pool": string_types,
    "http_node_port": int,
    "https_node_port": int,
    "publish_status_address": string_types,
    "node_selector": Mapping,
    "tolerations": list,
    "external_ips": list,
    "labels": Mapping,
}
OPTIONAL = ("lb_pool", "publish_status_address", "external_traffic_policy")


def _check(settings: Any) -> Dict[str, Any]:
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError("ingress_objects: expected the settings as a mapping, got %r" % (settings,))
    unknown = sorted(set(settings) - set(SETTINGS) - {"controller"})
    if unknown:
        raise AnsibleFilterError("ingress_objects: unknown settings %s" % ", ".join(unknown))
    out = dict(settings)
    for key, kind in SETTINGS.items():
        value = out.get(key)
        if value is None and key in OPTIONAL:
            continue
        if key not in out:
            raise AnsibleFilterError("ingress_objects: setting %s is missing" % key)
        # as Ansible reads typed values (from -e they arrive as strings): 'false' is false, '2' is 2
        if kind is bool and not isinstance(value, bool):
            try:
                value = out[key] = boolean(value, strict=True)
            except TypeError:
                raise AnsibleFilterError("ingress_objects: setting %s=%r is not true or false" % (key, value)) from None
        if kind is int and isinstance(value, string_types) and value.strip().isdigit():
            value = out[key] = int(value)
        # bool is an int in Python: a port or a replica count must not be True
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise AnsibleFilterError("ingress_objects: setting %s=%r has the wrong type" % (key, value))
    if out["variant"] not in VARIANTS:
        raise AnsibleFilterError("ingress_objects: variant %r is not one of %s" % (out["variant"], ", ".join(VARIANTS)))
    for key, problem in (
        ("namespace", label_problem(out["namespace"])),
        ("class_name", subdomain_problem(out["class_name"])),
    ):
        if problem:
            raise AnsibleFilterError("ingress_objects: %s %s" % (key, problem))
    for key in ("external_ips", "lb_addresses"):
        for value in out[key]:
            try:
                ipaddress.ip_address(str(value))
            except ValueError:
                raise AnsibleFilterError("%s: %r is not an IP address" % (key, value)) from None
    if out["replicas"] < 0:
        raise AnsibleFilterError("replicas must be 0 or more, got %d" % out["replicas"])
    if out.get("controller", "ingress-nginx") not in CONTROLLERS:
        raise AnsibleFilterError("ingress_objects: controller %r is not one of %s" % (out["controller"], CONTROLLERS))
    return out


def _labels(settings: Mapping[str, Any], component: str) -> Dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "ingress-nginx",
        "app.kubernetes.io/instance": "ingress-nginx",
        "app.kubernetes.io/version": INGRESS_NGINX_VERSION,
        "app.kubernetes.io/part-of": "ingress-nginx",
        "app.kubernetes.io/component": component,
    }
    labels.update(settings["labels"])
    return labels


def _selector() -> Dict[str, str]:
    return {
        "app.kubernetes.io/name": "ingress-nginx",
        "app.kubernetes.io/instance": "ingress-nginx",
        "app.kubernetes.io/component": "controller",
    }


def _meta(settings: Mapping[str, Any], name: str, component: str, namespaced: bool = True) -> Dict[str, Any]:
    meta: Dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = settings["namespace"]
    meta["labels"] = _labels(settings, component)
    return meta


def _access(
    settings: Mapping[str, Any], name: str, component: str, cluster: Any, namespaced: Any
) -> List[Dict[str, Any]]:
    """A ServiceAccount and its ClusterRole, Role and bindings, all named ``name``."""
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": settings["namespace"]}]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(settings, name, component),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": RBAC_API,
            "kind": "ClusterRole",
            "metadata": _meta(settings, name, component, False),
            "rules": cluster,
        },
        {
            "apiVersion": RBAC_API,
            "kind": "ClusterRoleBinding",
            "metadata": _meta(settings, name, component, False),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject,
        },
        {"apiVersion": RBAC_API, "kind": "Role", "metadata": _meta(settings, name, component), "rules": namespaced},
        {
            "apiVersion": RBAC_API,
            "kind": "RoleBinding",
            "metadata": _meta(settings, name, component),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subject,
        },
    ]


def _etp(settings: Mapping[str, Any]) -> str:
    """externalTrafficPolicy: Local keeps the client address for a LoadBalancer (seed 003);
    Cluster elsewhere, where Local drops traffic sent to a node without a controller pod."""
    chosen = settings.get("external_traffic_policy")
    if chosen:
        if chosen not in ("Local", "Cluster"):
            raise AnsibleFilterError("external_traffic_policy %r is not Local or Cluster" % (chosen,))
        return str(chosen)
    return "Local" if settings["variant"] == "loadbalancer" else "Cluster"


# -- exposure: the part every controller shares ----------------------------------------------


def exposure(settings: Mapping[str, Any], name: str, ports: List[Tuple[str, int]]) -> Dict[str, Any]:
    """How the variant exposes ``ports`` ([(name, port)]): the workload kind, what its Pod spec
    and containers need, the Service (None for hostnetwork), and the controller arguments that
    make Ingress status show the address clients use."""
    variant = settings["variant"]
    namespace = settings["namespace"]
    out: Dict[str, Any] = {"kind": "Deployment", "pod": {}, "host_ports": False, "service": None, "args": []}
    if variant == "hostnetwork":
        out["kind"] = "DaemonSet"
        out["pod"] = {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
        out["host_ports"] = True  # one pod per node owns these ports: the scheduler sees them
        out["args"] = ["--report-node-internal-ip-address"]
        return out
    service_ports: List[Dict[str, Any]] = [
        {"name": port_name, "port": number, "protocol": "TCP", "targetPort": port_name, "appProtocol": port_name}
        for port_name, number in ports
    ]
    spec: Dict[str, Any] = {
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
        "ports": service_ports,
        "selector": _selector(),
    }
    annotations: Dict[str, str] = {}
    if variant == "loadbalancer":
        spec["type"] = "LoadBalancer"
        spec["externalTrafficPolicy"] = _etp(settings)
        if settings["lb_addresses"]:
            annotations["metallb.io/loadBalancerIPs"] = ",".join(settings["lb_addresses"])
        if settings.get("lb_pool"):
            annotations["metallb.io/address-pool"] = settings["lb_pool"]
        out["args"] = ["--publish-service=%s/%s" % (namespace, name)]
    elif variant == "nodeport":
        spec["type"] = "NodePort"
        spec["externalTrafficPolicy"] = _etp(settings)
        node_ports = {"http": settings["http_node_port"], "https": settings["https_node_port"]}
        for port in service_ports:
            port["nodePort"] = node_ports[str(port["name"])]
        if settings.get("publish_status_address"):
            out["args"] = ["--publish-status-address=%s" % settings["publish_status_address"]]
    else:  # externalips: no node ports at all, the Service answers on the listed node addresses
        if not settings["external_ips"]:
            raise AnsibleFilterError("the externalips variant needs at least one address in external_ips")
        spec["type"] = "ClusterIP"
        spec["externalIPs"] = list(settings["external_ips"])
        spec["externalTrafficPolicy"] = _etp(settings)
        out["args"] = ["--publish-status-address=%s" % ",".join(settings["external_ips"])]
    meta = _meta(settings, name, "controller")
    if annotations:
        meta["annotations"] = annotations
    out["service"] = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
    return out


# -- ingress-nginx ------------------------------------------------------------------------------


def _controller_pod(settings: Mapping[str, Any], shape: Mapping[str, Any]) -> Dict[str, Any]:
    webhook = settings["admission_webhook"]
    args = [
        "/nginx-ingress-controller",
        "--election-id=ingress-nginx-leader",
        "--controller-class=k8s.io/ingress-nginx",
        "--ingress-class=%s" % settings["class_name"],
        "--configmap=$(POD_NAMESPACE)/%s" % NAMES["controller"],
    ]
    args += shape["args"]
    if webhook:
        args += [
            "--validating-webhook=:8443",
            "--validating-webhook-certificate=/usr/local/certificates/cert",
            "--validating-webhook-key=/usr/local/certificates/key",
        ]
    args += [str(a) for a in settings["extra_args"]]
    ports = [("http", 80), ("https", 443)] + ([("webhook", 8443)] if webhook else [])
    container_ports = []
    for port_name, number in ports:
        port: Dict[str, Any] = {"name": port_name, "containerPort": number, "protocol": "TCP"}
        if shape["host_ports"]:
            port["hostPort"] = number
        container_ports.append(port)

    def probe(failures: int) -> Dict[str, Any]:
        return {
            "httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": failures,
        }

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
        "ports": container_ports,
        "resources": copy.deepcopy(dict(settings["resources"])),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": False,
            "runAsGroup": 82,
            "runAsNonRoot": True,
            "runAsUser": 101,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod: Dict[str, Any] = {"containers": [container], "dnsPolicy": "ClusterFirst"}
    pod.update(shape["pod"])
    pod["nodeSelector"] = dict(settings["node_selector"])
    if settings["tolerations"]:
        pod["tolerations"] = list(settings["tolerations"])
    pod["serviceAccountName"] = NAMES["account"]
    pod["terminationGracePeriodSeconds"] = 300
    if webhook:
        container["volumeMounts"] = [
            {"name": "webhook-cert", "mountPath": "/usr/local/certificates/", "readOnly": True}
        ]
        pod["volumes"] = [{"name": "webhook-cert", "secret": {"secretName": NAMES["admission"]}}]
    return pod


def _admission(settings: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The webhook's Service and configuration, and the two Jobs that make its certificate."""
    ns = settings["namespace"]
    component = "admission-webhook"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(settings, NAMES["admission_service"], "controller"),
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "https-webhook", "port": 443, "targetPort": "webhook", "appProtocol": "https"}],
            "selector": _selector(),
        },
    }
    hosts = "%s,%s.%s.svc" % (NAMES["admission_service"], NAMES["admission_service"], ns)

    def job(name: str, args: List[str]) -> Dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(settings, "%s-%s" % (NAMES["admission"], name), component),
            "spec": {
                "backoffLimit": 6,
                "template": {
                    "metadata": {"labels": _labels(settings, component)},
                    "spec": {
                        "containers": [
                            {
                                "name": name,
                                "image": settings["certgen_image"],
                                "imagePullPolicy": "IfNotPresent",
                                "args": args,
                                "env": [
                                    {
                                        "name": "POD_NAMESPACE",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                    }
                                ],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                    "runAsGroup": 65532,
                                    "runAsNonRoot": True,
                                    "runAsUser": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"},
                                },
                            }
                        ],
                        "nodeSelector": dict(settings["node_selector"]),
                        "restartPolicy": "OnFailure",
                        "serviceAccountName": NAMES["admission"],
                    },
                },
            },
        }

    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": _meta(settings, NAMES["admission"], component, False),
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
    create = job(
        "create",
        ["create", "--host=%s" % hosts, "--namespace=$(POD_NAMESPACE)", "--secret-name=%s" % NAMES["admission"]],
    )
    patch = job(
        "patch",
        [
            "patch",
            "--webhook-name=%s" % NAMES["admission"],
            "--namespace=$(POD_NAMESPACE)",
            "--patch-mutating=false",
            "--secret-name=%s" % NAMES["admission"],
            "--patch-failure-policy=%s" % settings["failure_policy"],
        ],
    )
    access = _access(settings, NAMES["admission"], component, ADMISSION_CLUSTER_RULES, ADMISSION_NAMESPACED_RULES)
    return [service, webhook, *access, create, patch]


def ingress_objects(settings: Any) -> List[Dict[str, Any]]:
    """Every object of one configuration, in apply order: namespace, access, configuration,
    Services, the controller workload, the IngressClass, then the admission webhook."""
    s = _check(settings)
    if s["failure_policy"] not in ("Fail", "Ignore"):
        raise AnsibleFilterError("failure_policy %r is not Fail or Ignore" % (s["failure_policy"],))
    name = NAMES["controller"]
    shape = exposure(s, name, [("http", 80), ("https", 443)])
    pod = _controller_pod(s, shape)
    workload_spec: Dict[str, Any] = {
        "selector": {"matchLabels": _selector()},
        "revisionHistoryLimit": 10,
        "minReadySeconds": 0,
        "template": {"metadata": {"labels": _labels(s, "controller")}, "spec": pod},
    }
    if shape["kind"] == "Deployment":
        workload_spec["replicas"] = s["replicas"]
        workload_spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    else:
        # never two pods on one node's ports: the old pod goes before the new one starts
        workload_spec["updateStrategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }
    objects: List[Dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": s["namespace"], "labels": _labels(s, "controller")},
        },
    ]
    objects += _access(s, NAMES["account"], "controller", CONTROLLER_CLUSTER_RULES, CONTROLLER_NAMESPACED_RULES)
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(s, name, "controller"), "data": {}})
    if shape["service"] is not None:
        objects.append(shape["service"])
    admission = _admission(s) if s["admission_webhook"] else []
    objects += admission[:1]  # the webhook's Service, before the pods it selects
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": shape["kind"],
            "metadata": _meta(s, name, "controller"),
            "spec": workload_spec,
        }
    )
    ingress_class: Dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": _meta(s, s["class_name"], "controller", False),
        "spec": {"controller": "k8s.io/ingress-nginx"},
    }
    if s["class_default"]:
        ingress_class["metadata"]["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    objects.append(ingress_class)
    objects += admission[1:]
    return objects


def _key(obj: Mapping[str, Any]) -> Tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def ingress_stale_objects(settings: Any) -> List[Dict[str, Any]]:
    """Objects (apiVersion, kind, metadata.name/namespace) that another variant or option of this
    installation creates and this configuration does not: a switch deletes exactly these."""
    s = _check(settings)
    wanted = {_key(o) for o in ingress_objects(s)}
    stale: Dict[Tuple[str, str, str, str], Dict[str, Any]] = {}
    for variant in VARIANTS:
        for webhook in (True, False):
            other = dict(s, variant=variant, admission_webhook=webhook, external_ips=s["external_ips"] or ["192.0.2.1"])
            for obj in ingress_objects(other):
                key = _key(obj)
                if key not in wanted and key not in stale:
                    meta: Dict[str, Any] = {"name": key[3]}
                    if key[2]:
                        meta["namespace"] = key[2]
                    stale[key] = {"apiVersion": key[0], "kind": key[1], "metadata": meta}
    return list(stale.values())


class FilterModule(object):
    """onprem.ingress ingress-controller object builders."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "ingress_objects": ingress_objects,
            "ingress_stale_objects": ingress_stale_objects,
        }
