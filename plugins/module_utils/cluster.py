# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading address pools and LoadBalancer Services from a live cluster, for the modules."""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import os
import traceback
from typing import Any, Dict, List, Mapping, Optional

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException
except ImportError:  # pragma: no cover - reported with missing_required_lib
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR: Optional[str] = traceback.format_exc()
else:
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None

from ansible_collections.onprem.ingress.plugins.module_utils.config_model import ConfigSnapshot, build_config
from ansible_collections.onprem.ingress.plugins.module_utils.kubeconfig import kubeconfig_problem
from ansible_collections.onprem.ingress.plugins.module_utils.metallb_kinds import BY_KIND, GROUP

_POOL = BY_KIND["IPAddressPool"]
POOL_GROUP, POOL_VERSION, POOL_PLURAL = GROUP, _POOL.version, _POOL.plural

CLUSTER_ARGSPEC: Dict[str, Dict[str, Any]] = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "pool_namespace": {"type": "str", "default": "metallb-system"},
    "lb_class": {"type": "str"},
}


class ClusterError(Exception):
    """The cluster could not be read; the message says what to check."""


def connect(kubeconfig: Optional[str], context: Optional[str]) -> Any:
    """An ApiClient from kubeconfig / K8S_AUTH_* / default kubeconfig / in-cluster."""
    path = kubeconfig or os.environ.get("K8S_AUTH_KUBECONFIG")
    source = "option kubeconfig" if kubeconfig else "K8S_AUTH_KUBECONFIG"
    ctx = context or os.environ.get("K8S_AUTH_CONTEXT")
    default = os.path.expanduser("~/.kube/config")
    if not path and os.path.isfile(default):
        path, source = default, "the default kubeconfig"
    if path:
        problem = kubeconfig_problem(path, ctx)
        if problem:
            raise ClusterError(f"kubeconfig {path} ({source}): {problem}")
    try:
        if path:
            return k8s_config.new_client_from_config(config_file=path, context=ctx)
        k8s_config.load_incluster_config()
        return k8s_client.ApiClient()
    except (ConfigException, ValueError, OSError) as exc:
        if not path:
            raise ClusterError(
                "no kubeconfig (option kubeconfig, K8S_AUTH_KUBECONFIG or ~/.kube/config) and not running in a"
                f" cluster ({exc}); set kubeconfig to the cluster's admin kubeconfig"
            ) from None
        raise ClusterError(f"cannot load cluster credentials ({path}): {exc}") from None


def _call(what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except ApiException as exc:
        raise ClusterError(f"{what} failed: HTTP {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors and the like; no traceback for users
        raise ClusterError(f"{what} failed: {exc}") from None


def read_config(api: Any, namespace: str) -> ConfigSnapshot:
    """The IPAddressPools of ``namespace`` read as the controller reads them (config_model):
    oldest first, an overlapping or invalid pool ignored and said why, never a failure."""
    custom = k8s_client.CustomObjectsApi(api)
    try:
        listing = custom.list_namespaced_custom_object(POOL_GROUP, POOL_VERSION, namespace, POOL_PLURAL)
    except ApiException as exc:
        if exc.status == 404:
            raise ClusterError(
                f"no IPAddressPool API ({POOL_GROUP}/{POOL_VERSION}) in the cluster; install the CRDs "
                "(the onprem.ingress.lb_controller role) first"
            ) from None
        raise ClusterError(f"listing IPAddressPools in {namespace} failed: HTTP {exc.status} {exc.reason}") from None
    except Exception as exc:
        raise ClusterError(f"listing IPAddressPools in {namespace} failed: {exc}") from None
    items = listing.get("items") if isinstance(listing, Mapping) else None
    return build_config(pools=[item for item in items or [] if isinstance(item, Mapping)])


def read_services(api: Any) -> List[Dict[str, Any]]:
    core = k8s_client.CoreV1Api(api)
    listing = _call("listing Services", core.list_service_for_all_namespaces)
    return [
        s for s in api.sanitize_for_serialization(listing)["items"] if s.get("spec", {}).get("type") == "LoadBalancer"
    ]


def read_service(api: Any, namespace: str, name: str) -> Optional[Dict[str, Any]]:
    core = k8s_client.CoreV1Api(api)
    try:
        return api.sanitize_for_serialization(core.read_namespaced_service(name, namespace))  # type: ignore[no-any-return]
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise ClusterError(f"reading Service {namespace}/{name} failed: HTTP {exc.status} {exc.reason}") from None


def read_namespace_labels(api: Any) -> Dict[str, Dict[str, str]]:
    core = k8s_client.CoreV1Api(api)
    listing = _call("listing Namespaces", core.list_namespace)
    return {ns.metadata.name: dict(ns.metadata.labels or {}) for ns in listing.items}


def annotate_service(api: Any, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
    core = k8s_client.CoreV1Api(api)
    _call(
        f"writing annotations on Service {namespace}/{name}",
        core.patch_namespaced_service,
        name,
        namespace,
        {"metadata": {"annotations": dict(annotations)}},
    )
