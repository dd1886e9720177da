# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory checks that run before anything changes: variables no role knows.

A name that is one of kubespray's (module_utils/kubespray_variables.py) is never reported: an
inventory shared with kubespray sets kube_proxy_mode, ingress_nginx_enabled, ... for kubespray."""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import difflib
from typing import Any, Callable, Dict, List, Mapping, Set

from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.ingress.plugins.module_utils.kubespray_variables import KUBESPRAY_VARIABLES


# Variables a release renamed: the old name is an error that names the new one. The ingress_nginx
# role became the controller-neutral ingress role (its exposure variables are the same for Traefik
# and ingress-nginx); the ingress-nginx-only ones kept their ingress_nginx_ prefix. Three old names
# are kubespray's too (ingress_nginx_namespace, _tolerations, _extra_args): those pass unreported,
# as an inventory shared with kubespray sets them for kubespray's own ingress-nginx.
_INGRESS_NEUTRAL = [
    "api_host",
    "kubeconfig",
    "context",
    "namespace",
    "class_name",
    "class_default",
    "replicas",
    "resources",
    "extra_args",
    "node_selector",
    "tolerations",
    "external_traffic_policy",
    "lb_pool",
    "lb_address",
    "http_node_port",
    "https_node_port",
    "publish_status_address",
    "external_ips",
    "node_name",
    "wait_timeout",
]
RENAMED = dict(
    {"ingress_nginx_%s" % name: "ingress_%s" % name for name in _INGRESS_NEUTRAL},
    ingress_nginx_variant="ingress_exposure",
)


def _known_options(specs: Any) -> Set[str]:
    known: Set[str] = set()
    for spec in specs:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("argument_specs"), Mapping):
            raise AnsibleFilterError("unknown_role_variables: expected the contents of meta/argument_specs.yml files")
        for entry in spec["argument_specs"].values():
            known.update((entry or {}).get("options") or {})
    return known


def _closest(name: str, ours: List[str], kubespray: List[str]) -> str:
    """The hint for an unknown name: the closest of our options, or of kubespray's names with the
    same prefix when one of those is closer (then said to be kubespray's); "" when none is close."""
    mine = difflib.get_close_matches(name, ours, n=1, cutoff=0.75)
    theirs = difflib.get_close_matches(name, kubespray, n=1, cutoff=0.75)

    def score(candidate: str) -> float:
        return difflib.SequenceMatcher(None, candidate, name).ratio()

    if theirs and (not mine or score(theirs[0]) > score(mine[0])):
        return "did you mean %s (a kubespray variable)?" % theirs[0]
    return "did you mean %s?" % mine[0] if mine else ""


def unknown_role_variables(names: Any, specs: Any, roles: Any) -> List[str]:
    """Messages for variables named like a role's (``<role>_...``) that no argument spec declares.

    ``names``: the variable names set for a host; ``specs``: the parsed argument_specs.yml files;
    ``roles``: the role names (their ``<role>_`` prefixes are checked). Names starting with ``_``
    are internal and never reported, nor are kubespray's own variables (KUBESPRAY_VARIABLES):
    those are for kubespray, not a typo or an old name of ours. A name that is neither gets the
    closest known name as a hint, ours or kubespray's."""
    known = _known_options(specs)
    prefixes = tuple("%s_" % role for role in roles)
    messages = []
    for name in sorted(str(n) for n in names):
        if name in known or name in KUBESPRAY_VARIABLES:
            continue
        if name in RENAMED:
            messages.append(
                "%s was renamed %s (the onprem.ingress.ingress role, for Traefik and ingress-nginx alike)"
                % (name, RENAMED[name])
            )
        elif name.startswith(prefixes):
            role = max((r for r in roles if name.startswith("%s_" % r)), key=len)
            theirs = sorted(v for v in KUBESPRAY_VARIABLES if v.startswith("%s_" % role))
            hint = _closest(name, sorted(known), theirs) or "see roles/%s/meta/argument_specs.yml" % role
            messages.append("%s is not a variable of the onprem.ingress.%s role; %s" % (name, role, hint))
    return messages


class FilterModule(object):
    """onprem.ingress inventory checks."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {"unknown_role_variables": unknown_role_variables}
