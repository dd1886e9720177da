#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: lb_address
short_description: Choose, and optionally reserve, a load-balancer address for a Service
version_added: 0.1.0
description:
  - Chooses the address the load balancer would give a Service, from the pools and the
    allocations currently in the cluster, with the same rules as the onprem-lb controller
    (requested pool, sharing key, families, C(serviceAllocation)).
  - The choice is deterministic, the same cluster state gives the same address. A Service that
    already holds an address keeps it.
  - With O(reserve=true) the address is pinned by writing the C(metallb.io/loadBalancerIPs)
    annotation on the Service (which must exist), e.g. to keep ingress-nginx's address stable
    across reinstalls. Nothing is written when the annotation already says so.
author:
  - onprem.ingress developers (@onprem)
extends_documentation_fragment:
  - onprem.ingress.cluster
options:
  service:
    description: The Service, as V(namespace/name).
    type: str
    required: true
  pool:
    description: Take the address from this pool (as the C(metallb.io/address-pool) annotation does).
    type: str
  families:
    description:
      - Address families when the Service does not exist yet; an existing Service's
        C(spec.ipFamilies) wins.
    type: list
    elements: str
    choices: [IPv4, IPv6]
    default: [IPv4]
  sharing_key:
    description: The C(metallb.io/allow-shared-ip) key, when the Service does not exist yet.
    type: str
  reserve:
    description: Write the chosen address into the Service's C(metallb.io/loadBalancerIPs) annotation.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
"""

EXAMPLES = r"""
- name: Pin ingress-nginx to the address it would get anyway
  onprem.ingress.lb_address:
    service: ingress-nginx/ingress-nginx-controller
    pool: default
    reserve: true
  register: ingress_vip
"""

RETURN = r"""
addresses:
  description: The chosen addresses, primary family first.
  returned: success
  type: list
  elements: str
  sample: [192.0.2.240]
pool:
  description: The pool the addresses come from.
  returned: success
  type: str
held:
  description: Whether the Service already held these addresses (status) before this run.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.onprem.ingress.plugins.module_utils.cluster import (
    CLUSTER_ARGSPEC,
    HAS_KUBERNETES,
    KUBERNETES_IMPORT_ERROR,
    ClusterError,
    annotate_service,
    connect,
    read_config,
    read_namespace_labels,
    read_service,
    read_services,
)
from ansible_collections.onprem.ingress.plugins.module_utils.ipam import (
    HAS_NETADDR,
    NETADDR_IMPORT_ERROR,
    IpamError,
    handles,
    held_addresses,
    request_from_service,
    restore_allocator,
)

ANNOTATION = "metallb.io/loadBalancerIPs"


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            CLUSTER_ARGSPEC,
            service={"type": "str", "required": True},
            pool={"type": "str"},
            families={"type": "list", "elements": "str", "choices": ["IPv4", "IPv6"], "default": ["IPv4"]},
            sharing_key={"type": "str", "no_log": False},
            reserve={"type": "bool", "default": False},
        ),
        supports_check_mode=True,
    )
    if not HAS_NETADDR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=NETADDR_IMPORT_ERROR)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    namespace, sep, name = module.params["service"].partition("/")
    if not sep or not namespace or not name or "/" in name:
        module.fail_json(msg=f"service must be namespace/name, got {module.params['service']!r}")
    families = module.params["families"]
    if len(families) != len(set(families)):
        module.fail_json(msg=f"families lists a family twice: {families}")

    try:
        api = connect(module.params["kubeconfig"], module.params["context"])
        config = read_config(api, module.params["pool_namespace"])
        services = read_services(api)
        ns_labels = read_namespace_labels(api)
        existing = read_service(api, namespace, name)
    except ClusterError as exc:
        module.fail_json(msg=str(exc))

    lb_class = module.params["lb_class"] or None
    # A Service of another type is asked about as it will be once it is a LoadBalancer (a role
    # switching it over pins its address first); one of another load-balancer class is not ours.
    spec = (existing or {}).get("spec") or {}
    other_class = spec.get("loadBalancerClass") or None
    if existing is not None and spec.get("type") == "LoadBalancer" and other_class != lb_class:
        serves = f"class {lb_class!r}" if lb_class else "no loadBalancerClass (the default load balancer)"
        module.fail_json(
            msg=f"Service {namespace}/{name} has loadBalancerClass {other_class!r}; the controller asked about serves "
            f"Services of {serves}. Set lb_class to the Service's class, or change the Service"
        )
    if module.params["reserve"] and existing is None:
        module.fail_json(msg=f"Service {namespace}/{name} does not exist; create it before reserving an address for it")
    manifest = existing or {
        "metadata": {"name": name, "namespace": namespace, "annotations": {}},
        "spec": {
            "type": "LoadBalancer",
            "ipFamilies": families,
            "ipFamilyPolicy": "RequireDualStack" if len(families) == 2 else "SingleStack",
            "loadBalancerClass": lb_class,
        },
    }
    annotations = dict(manifest["metadata"].get("annotations") or {})
    if module.params["pool"]:
        annotations["metallb.io/address-pool"] = module.params["pool"]
    if module.params["sharing_key"]:
        annotations["metallb.io/allow-shared-ip"] = module.params["sharing_key"]
    manifest = dict(manifest, metadata=dict(manifest["metadata"], annotations=annotations))
    try:
        allocator, _warnings = restore_allocator(
            config.pools,
            [s for s in services if s is not existing],
            ns_labels,
            lb_class=lb_class,
            ignored=config.ignored_pools(),
        )
        held = held_addresses(existing) if existing and handles(existing, lb_class) else []
        request = request_from_service(manifest, ns_labels.get(namespace))
        if held:
            try:
                allocation = allocator.assign(request, held)
            except IpamError:
                held = []
                allocation = allocator.allocate(request)
        else:
            allocation = allocator.allocate(request)
    except IpamError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)

    addresses = allocation.ips
    wanted = ",".join(addresses)
    current = (existing or {}).get("metadata", {}).get("annotations", {}) or {}
    changed = bool(module.params["reserve"]) and current.get(ANNOTATION) != wanted
    result = {"changed": changed, "addresses": addresses, "pool": allocation.pool, "held": bool(held)}
    if changed and module._diff:
        result["diff"] = {
            "before": {ANNOTATION: current.get(ANNOTATION)},
            "after": {ANNOTATION: wanted},
            "before_header": f"Service {namespace}/{name}",
            "after_header": f"Service {namespace}/{name}",
        }
    if changed and not module.check_mode:
        try:
            annotate_service(api, namespace, name, {ANNOTATION: wanted})
        except ClusterError as exc:
            module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
