# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build the engine's Kubernetes objects as data (the roles apply them as they are).

- engine_access_objects: a daemon's ServiceAccount, token Secret and least-privilege RBAC.
- metallb_objects: metallb.io resources from inventory items written with MetalLB's own spec
  field names (a spec copied from a MetalLB manifest works unchanged).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from typing import Any, Callable, Dict, List, Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

from ansible_collections.onprem.ingress.plugins.module_utils.k8s_names import label_problem, subdomain_problem
from ansible_collections.onprem.ingress.plugins.module_utils.metallb_kinds import CONFIG_KINDS

# kind -> (apiVersion, the spec fields MetalLB's API documents for it)
METALLB_KINDS: Dict[str, Any] = {k.kind: (k.api_version, k.fields) for k in CONFIG_KINDS}
ITEM_KEYS = ("name", "labels")


def metallb_objects(items: Any, kind: str, namespace: str, labels: Any = None) -> List[Dict[str, Any]]:
    """Inventory items ({name, labels, <spec fields>}) -> metallb.io resources of one kind.

    An unknown field is an error that names the item and lists the fields the kind has, so a
    typo never silently drops a setting."""
    if kind not in METALLB_KINDS:
        raise AnsibleFilterError("metallb_objects: unknown kind %r; one of %s" % (kind, ", ".join(METALLB_KINDS)))
    api_version, fields = METALLB_KINDS[kind]
    if label_problem(namespace):
        raise AnsibleFilterError("metallb_objects: namespace %s" % label_problem(namespace))
    if not isinstance(items, list):
        raise AnsibleFilterError("metallb_objects: the %s items must be a list, got %s" % (kind, type(items).__name__))
    objects = []
    seen = set()
    for index, item in enumerate(items):
        where = "%s #%d" % (kind, index + 1)
        if not isinstance(item, Mapping):
            raise AnsibleFilterError("%s: expected a mapping with name and spec fields, got %r" % (where, item))
        name = item.get("name")
        if not isinstance(name, string_types) or not name:
            raise AnsibleFilterError("%s has no name; every %s needs one" % (where, kind))
        if subdomain_problem(name):
            raise AnsibleFilterError("%s: the name %s; rename it" % (where, subdomain_problem(name)))
        if name in seen:
            raise AnsibleFilterError("%s %r is listed twice; names must be unique" % (kind, name))
        seen.add(name)
        unknown = sorted(set(item) - set(fields) - set(ITEM_KEYS))
        if unknown:
            raise AnsibleFilterError(
                "%s %r: unknown field%s %s; a %s has %s (MetalLB's spec field names), plus name and labels"
                % (kind, name, "s" if len(unknown) > 1 else "", ", ".join(unknown), kind, ", ".join(fields))
            )
        meta: Dict[str, Any] = {"name": name, "namespace": namespace}
        merged = dict(labels or {})
        merged.update(item.get("labels") or {})
        if merged:
            meta["labels"] = merged
        spec = {key: item[key] for key in fields if key in item and item[key] is not None}
        _check_texts("%s %r" % (kind, name), spec)
        objects.append({"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec})
    return objects


def _check_texts(where: str, spec: Mapping[str, Any]) -> None:
    """Values MetalLB reads as text that YAML 1.1 (Ansible's inventory reader) may have turned
    into something else: communities (`64500:10` becomes the base-60 number 3870010) and label
    values (`yes` becomes true). The original text is gone by now, so say how to keep it."""
    found: List[str] = []
    communities = spec.get("communities")
    for index, community in enumerate(communities if isinstance(communities, list) else []):
        value = community.get("value") if isinstance(community, Mapping) else community
        if not isinstance(value, string_types):
            found.append("communities[%d] is %r, not text" % (index, value))
    for key in ("nodeSelectors", "ipAddressPoolSelectors"):
        selectors = spec.get(key)
        for index, selector in enumerate(selectors if isinstance(selectors, list) else []):
            labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
            for label, value in (labels or {}).items() if isinstance(labels, Mapping) else ():
                if not isinstance(value, string_types):
                    found.append("%s[%d].matchLabels.%s is %r, not text" % (key, index, label, value))
    if found:
        raise AnsibleFilterError(
            "%s: %s. YAML 1.1 reads unquoted 64500:10 as a base-60 number and yes/no/on/off as true/false;"
            " quote such values in the inventory ('64500:10', 'yes')" % (where, "; ".join(found))
        )


def engine_access_objects(component: str, rbac: Any, namespace: str, labels: Any = None) -> List[Dict[str, Any]]:
    """ServiceAccount, token Secret, ClusterRole(+Binding) and Role(+Binding) of one daemon.

    ``rbac`` maps the component to {cluster: [rules], namespaced: [rules]}."""
    if not isinstance(rbac, Mapping) or component not in rbac:
        raise AnsibleFilterError("engine_access_objects: no RBAC rules for %r" % (component,))
    name = "onprem-lb-%s" % component
    base_labels = dict(labels or {})
    base_labels["app.kubernetes.io/component"] = component

    def meta(obj_name: str, namespaced: bool = True) -> Dict[str, Any]:
        data: Dict[str, Any] = {"name": obj_name, "labels": dict(base_labels)}
        if namespaced:
            data["namespace"] = namespace
        return data

    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    rules = rbac[component]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name)},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": dict(meta(name + "-token"), annotations={"kubernetes.io/service-account.name": name}),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(name, namespaced=False),
            "rules": list(rules.get("cluster") or []),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(name, namespaced=False),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(name),
            "rules": list(rules.get("namespaced") or []),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subject,
        },
    ]


class FilterModule(object):
    """onprem.ingress object builders."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "engine_access_objects": engine_access_objects,
            "metallb_objects": metallb_objects,
        }
