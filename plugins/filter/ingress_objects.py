# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build an ingress controller's Kubernetes objects as data (the onprem.ingress.ingress
role applies them as they are): one of two controllers, in one of four bare-metal exposures.

The exposure (how clients reach the controller) is controller-neutral and lives in
module_utils/ingress_exposure.py; each controller's own objects are a profile beside it
(ingress_traefik_profile.py, ingress_nginx_profile.py).

- ingress_objects: every object of one configuration, in apply order.
- ingress_stale_objects: the objects another controller, variant or option of the same
  installation would own that this configuration does not (kind, namespace and name): what a
  switch deletes.
- ingress_host_ports: the ports the hostnetwork variant's controller binds on each node.
- ingress_unread_annotations: the cluster's Ingresses whose nginx.ingress.kubernetes.io
  annotations Traefik does not read (the preflight's warning before a switch).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from typing import Any, Callable, Dict, List, Mapping, Tuple

from ansible.errors import AnsibleFilterError

from ansible_collections.onprem.ingress.plugins.module_utils import ingress_nginx_profile, ingress_traefik_profile
from ansible_collections.onprem.ingress.plugins.module_utils.ingress_exposure import (
    CONTROLLERS,
    VARIANTS,
    IngressSettingsError,
    check,
)


def _objects(settings: Mapping[str, Any]) -> List[Dict[str, Any]]:
    if settings["controller"] == "traefik":
        return ingress_traefik_profile.objects(settings)
    return ingress_nginx_profile.objects(settings)


def _checked(name: str, settings: Any) -> Dict[str, Any]:
    try:
        return check(settings)
    except IngressSettingsError as exc:
        raise AnsibleFilterError("%s: %s" % (name, exc)) from None


def ingress_objects(settings: Any) -> List[Dict[str, Any]]:
    """Every object of one configuration, in apply order."""
    s = _checked("ingress_objects", settings)
    return _objects(s)


def _key(obj: Mapping[str, Any]) -> Tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def ingress_stale_objects(settings: Any) -> List[Dict[str, Any]]:
    """Objects (apiVersion, kind, metadata.name/namespace) that another controller, variant or
    option of this installation creates and this configuration does not: a switch deletes
    exactly these."""
    s = _checked("ingress_stale_objects", settings)
    wanted = {_key(o) for o in _objects(s)}
    stale: Dict[Tuple[str, str, str, str], Dict[str, Any]] = {}
    for controller in CONTROLLERS:
        for variant in VARIANTS:
            for option in (True, False):
                other = dict(
                    s,
                    controller=controller,
                    variant=variant,
                    admission_webhook=option,
                    gateway_api=option,
                    external_ips=s["external_ips"] or ["192.0.2.1"],
                )
                for obj in _objects(other):
                    key = _key(obj)
                    if key not in wanted and key not in stale:
                        meta: Dict[str, Any] = {"name": key[3]}
                        if key[2]:
                            meta["namespace"] = key[2]
                        stale[key] = {"apiVersion": key[0], "kind": key[1], "metadata": meta}
    return list(stale.values())


def ingress_host_ports(settings: Any) -> List[int]:
    """The TCP ports the hostnetwork variant's controller binds on every node it runs on."""
    s = _checked("ingress_host_ports", settings)
    if s["controller"] == "traefik":
        return ingress_traefik_profile.host_ports(s)
    return ingress_nginx_profile.host_ports(s)


def ingress_unread_annotations(ingresses: Any, class_name: Any = "nginx") -> List[str]:
    """ "ns/name: annotation, ..." for each Ingress of ``class_name`` that Traefik would serve
    without some of its nginx.ingress.kubernetes.io annotations."""
    if not isinstance(ingresses, list) or not all(isinstance(i, Mapping) for i in ingresses):
        raise AnsibleFilterError(
            "ingress_unread_annotations: expected a list of Ingress objects, got %r" % (ingresses,)
        )
    return ingress_traefik_profile.unread_annotations(ingresses, str(class_name))


class FilterModule(object):
    """onprem.ingress ingress-controller object builders."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "ingress_objects": ingress_objects,
            "ingress_stale_objects": ingress_stale_objects,
            "ingress_host_ports": ingress_host_ports,
            "ingress_unread_annotations": ingress_unread_annotations,
        }
