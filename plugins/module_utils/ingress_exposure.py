# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller-neutral half of an ingress installation: the settings, and how clients reach
the controller (the exposure), which is the same whatever controller runs behind it.

Four bare-metal exposures: a LoadBalancer Service (its address from our pools), a NodePort
Service with fixed ports, a hostNetwork DaemonSet, or a ClusterIP Service with externalIPs. The
Service keeps one name and namespace whichever controller it selects, so switching controller
changes the Service's selector and never its address.

Each controller is a profile (ingress_nginx_profile.py, ingress_traefik_profile.py) that turns
the same settings and this exposure into its own objects. Standard library only; bad settings
raise IngressSettingsError with a message that names the setting.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import copy
import ipaddress
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.onprem.ingress.plugins.module_utils.k8s_names import label_problem, subdomain_problem

VARIANTS = ("loadbalancer", "nodeport", "hostnetwork", "externalips")
CONTROLLERS = ("traefik", "ingress-nginx")
RBAC_API = "rbac.authorization.k8s.io/v1"
# The IngressClass both controllers serve: ingress-nginx's own controller value, which Traefik's
# kubernetesIngressNGINX provider also claims, so an Ingress of class nginx needs no change.
NGINX_CONTROLLER_CLASS = "k8s.io/ingress-nginx"

TEXT = (str,)

SETTINGS: Dict[str, Any] = {
    "controller": TEXT,
    "variant": TEXT,
    "namespace": TEXT,
    "service_name": TEXT,
    "class_name": TEXT,
    "class_default": bool,
    "replicas": int,
    "resources": Mapping,
    "extra_args": list,
    "external_traffic_policy": TEXT,
    "lb_addresses": list,
    "lb_pool": TEXT,
    "http_node_port": int,
    "https_node_port": int,
    "publish_status_address": TEXT,
    "node_selector": Mapping,
    "tolerations": list,
    "external_ips": list,
    "labels": Mapping,
    # ingress-nginx
    "controller_image": TEXT,
    "certgen_image": TEXT,
    "admission_webhook": bool,
    "failure_policy": TEXT,
    # traefik
    "traefik_image": TEXT,
    "gateway_api": bool,
}
OPTIONAL = ("lb_pool", "publish_status_address", "external_traffic_policy")


class IngressSettingsError(ValueError):
    """A setting no controller can be built from: the message names it and says why."""


def _typed(key: str, value: Any, kind: Any) -> Any:
    # as Ansible reads typed values (from -e they arrive as strings): 'false' is false, '2' is 2
    if kind is bool and not isinstance(value, bool):
        try:
            return boolean(value, strict=True)
        except TypeError:
            raise IngressSettingsError("setting %s=%r is not true or false" % (key, value)) from None
    if kind is int and isinstance(value, TEXT) and value.strip().isdigit():
        return int(value)
    # bool is an int in Python: a port or a replica count must not be True
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IngressSettingsError("setting %s=%r has the wrong type" % (key, value))
    return value


def check(settings: Any) -> Dict[str, Any]:
    """The settings, typed and checked (IngressSettingsError names what is wrong)."""
    if not isinstance(settings, Mapping):
        raise IngressSettingsError("expected the settings as a mapping, got %r" % (settings,))
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise IngressSettingsError("unknown settings %s" % ", ".join(unknown))
    out = dict(settings)
    for key, kind in SETTINGS.items():
        if out.get(key) is None and key in OPTIONAL:
            out[key] = None
            continue
        if key not in out:
            raise IngressSettingsError("setting %s is missing" % key)
        out[key] = _typed(key, out[key], kind)
    if out["controller"] not in CONTROLLERS:
        raise IngressSettingsError("controller %r is not one of %s" % (out["controller"], ", ".join(CONTROLLERS)))
    if out["variant"] not in VARIANTS:
        raise IngressSettingsError("variant %r is not one of %s" % (out["variant"], ", ".join(VARIANTS)))
    for key, problem in (
        ("namespace", label_problem(out["namespace"])),
        ("service_name", label_problem(out["service_name"])),
        ("class_name", subdomain_problem(out["class_name"])),
    ):
        if problem:
            raise IngressSettingsError("%s %s" % (key, problem))
    for key in ("external_ips", "lb_addresses"):
        for value in out[key]:
            try:
                ipaddress.ip_address(str(value))
            except ValueError:
                raise IngressSettingsError("%s: %r is not an IP address" % (key, value)) from None
    if out["replicas"] < 0:
        raise IngressSettingsError("replicas must be 0 or more, got %d" % out["replicas"])
    if out["failure_policy"] not in ("Fail", "Ignore"):
        raise IngressSettingsError("failure_policy %r is not Fail or Ignore" % (out["failure_policy"],))
    policy = out["external_traffic_policy"]
    if policy is not None and policy not in ("Local", "Cluster"):
        raise IngressSettingsError("external_traffic_policy %r is not Local or Cluster" % (policy,))
    if out["variant"] == "externalips" and not out["external_ips"]:
        raise IngressSettingsError("the externalips variant needs at least one address in external_ips")
    return out


class Identity:
    """Who the objects belong to: the app.kubernetes.io labels of one controller."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version

    def selector(self) -> Dict[str, str]:
        return {
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": "controller",
        }

    def labels(self, settings: Mapping[str, Any], component: str) -> Dict[str, str]:
        labels = {
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/version": self.version,
            "app.kubernetes.io/part-of": self.name,
            "app.kubernetes.io/component": component,
        }
        labels.update(settings["labels"])
        return labels

    def meta(self, settings: Mapping[str, Any], name: str, component: str, namespaced: bool = True) -> Dict[str, Any]:
        meta: Dict[str, Any] = {"name": name}
        if namespaced:
            meta["namespace"] = settings["namespace"]
        meta["labels"] = self.labels(settings, component)
        return meta


def rule(groups: List[str], resources: List[str], verbs: List[str], names: Any = None) -> Dict[str, Any]:
    """One RBAC rule."""
    out: Dict[str, Any] = {"apiGroups": groups, "resources": resources}
    if names:
        out["resourceNames"] = names
    out["verbs"] = verbs
    return out


def access(
    settings: Mapping[str, Any],
    who: Identity,
    name: str,
    component: str,
    *,
    cluster: List[Dict[str, Any]],
    namespaced: Optional[List[Dict[str, Any]]],
) -> List[Dict[str, Any]]:
    """A ServiceAccount and its ClusterRole (and Role, when ``namespaced``) with bindings, all
    named ``name``."""
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": settings["namespace"]}]
    out: List[Dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": who.meta(settings, name, component),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": RBAC_API,
            "kind": "ClusterRole",
            "metadata": who.meta(settings, name, component, False),
            "rules": cluster,
        },
        {
            "apiVersion": RBAC_API,
            "kind": "ClusterRoleBinding",
            "metadata": who.meta(settings, name, component, False),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject,
        },
    ]
    if namespaced is not None:
        out += [
            {
                "apiVersion": RBAC_API,
                "kind": "Role",
                "metadata": who.meta(settings, name, component),
                "rules": namespaced,
            },
            {
                "apiVersion": RBAC_API,
                "kind": "RoleBinding",
                "metadata": who.meta(settings, name, component),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject,
            },
        ]
    return out


def traffic_policy(settings: Mapping[str, Any]) -> str:
    """externalTrafficPolicy: Local keeps the client address for a LoadBalancer (seed 003);
    Cluster elsewhere, where Local drops traffic sent to a node without a controller pod."""
    chosen = settings.get("external_traffic_policy")
    if chosen:
        return str(chosen)
    return "Local" if settings["variant"] == "loadbalancer" else "Cluster"


class Exposure:
    """How the variant exposes the controller's http and https ports.

    ``kind``: the workload (Deployment, or DaemonSet for hostnetwork); ``pod``: what the Pod
    spec needs; ``host_ports``: whether container ports are host ports; ``service``: the
    Service (None for hostnetwork); ``status``: what Ingress status should show, as
    ("service", "ns/name"), ("addresses", [...]), ("node", None) or None."""

    def __init__(self, settings: Mapping[str, Any], who: Identity) -> None:
        variant = settings["variant"]
        self.kind = "Deployment"
        self.pod: Dict[str, Any] = {}
        self.host_ports = False
        self.service: Optional[Dict[str, Any]] = None
        self.status: Optional[Tuple[str, Any]] = None
        if variant == "hostnetwork":
            self.kind = "DaemonSet"
            self.pod = {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
            self.host_ports = True  # one pod per node owns these ports: the scheduler sees them
            self.status = ("node", None)
            return
        self.service = self._service(settings, who)

    def _service(self, settings: Mapping[str, Any], who: Identity) -> Dict[str, Any]:
        variant, name = settings["variant"], settings["service_name"]
        ports: List[Dict[str, Any]] = [
            {"name": port_name, "port": number, "protocol": "TCP", "targetPort": port_name, "appProtocol": port_name}
            for port_name, number in (("http", 80), ("https", 443))
        ]
        spec: Dict[str, Any] = {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "ports": ports}
        spec["selector"] = who.selector()
        annotations: Dict[str, str] = {}
        if variant == "loadbalancer":
            spec["type"] = "LoadBalancer"
            if settings["lb_addresses"]:
                annotations["metallb.io/loadBalancerIPs"] = ",".join(settings["lb_addresses"])
            if settings.get("lb_pool"):
                annotations["metallb.io/address-pool"] = settings["lb_pool"]
            self.status = ("service", "%s/%s" % (settings["namespace"], name))
        elif variant == "nodeport":
            spec["type"] = "NodePort"
            ports[0]["nodePort"] = settings["http_node_port"]
            ports[1]["nodePort"] = settings["https_node_port"]
            if settings.get("publish_status_address"):
                self.status = ("addresses", [settings["publish_status_address"]])
        else:  # externalips: no node ports at all, the Service answers on the listed node addresses
            spec["type"] = "ClusterIP"
            spec["externalIPs"] = list(settings["external_ips"])
            self.status = ("addresses", list(settings["external_ips"]))
        spec["externalTrafficPolicy"] = traffic_policy(settings)
        meta = who.meta(settings, name, "controller")
        if annotations:
            meta["annotations"] = annotations
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}

    def container_ports(self, ports: List[Tuple[str, int]]) -> List[Dict[str, Any]]:
        out = []
        for port_name, number in ports:
            port: Dict[str, Any] = {"name": port_name, "containerPort": number, "protocol": "TCP"}
            if self.host_ports:
                port["hostPort"] = number
            out.append(port)
        return out

    def workload(self, settings: Mapping[str, Any], who: Identity, name: str, pod: Dict[str, Any]) -> Dict[str, Any]:
        """The Deployment or DaemonSet running ``pod`` (the exposure's Pod fields, the node
        selector and tolerations added)."""
        pod = dict(pod)
        pod.update(self.pod)
        pod["nodeSelector"] = dict(settings["node_selector"])
        if settings["tolerations"]:
            pod["tolerations"] = list(settings["tolerations"])
        spec: Dict[str, Any] = {
            "selector": {"matchLabels": who.selector()},
            "revisionHistoryLimit": 10,
            "minReadySeconds": 0,
            "template": {"metadata": {"labels": who.labels(settings, "controller")}, "spec": pod},
        }
        if self.kind == "Deployment":
            spec["replicas"] = settings["replicas"]
            spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
        else:
            # never two pods on one node's ports: the old pod goes before the new one starts
            spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
        return {
            "apiVersion": "apps/v1",
            "kind": self.kind,
            "metadata": who.meta(settings, name, "controller"),
            "spec": spec,
        }


def namespace(settings: Mapping[str, Any], who: Identity) -> Dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings["namespace"], "labels": who.labels(settings, "controller")},
    }


def ingress_class(settings: Mapping[str, Any], who: Identity) -> Dict[str, Any]:
    """The IngressClass the seeds' Ingresses name (ingress-nginx's controller value, which both
    controllers serve)."""
    out: Dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": who.meta(settings, settings["class_name"], "controller", False),
        "spec": {"controller": NGINX_CONTROLLER_CLASS},
    }
    if settings["class_default"]:
        out["metadata"]["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return out


def resources(settings: Mapping[str, Any]) -> Dict[str, Any]:
    return copy.deepcopy(dict(settings["resources"]))
