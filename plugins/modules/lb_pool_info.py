#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: lb_pool_info
short_description: Report size, use and holders of load-balancer address pools in a cluster
version_added: 0.1.0
description:
  - Reads the C(IPAddressPool) objects and every C(type=LoadBalancer) Service of a live cluster
    and reports, per pool, its size, how many addresses are used and free per family, and which
    Services hold which address.
  - What a Service holds is read from its C(status.loadBalancer.ingress), i.e. what the load
    balancer actually gave it.
  - Counts are those the pools' C(status) shows, so the two never disagree; past 2^63-1 (an IPv6
    /64 holds 2^64) they stop at 2^63-1, the largest number Kubernetes stores.
  - Pools are read as the onprem-lb controller reads them (the same code). On overlap the older
    pool keeps its addresses and the newer one is reported as ignored, with the reason; an
    invalid pool is reported, not a failure. Only Services of O(lb_class) hold addresses.
author:
  - onprem.ingress developers (@onprem)
extends_documentation_fragment:
  - onprem.ingress.cluster
options:
  name:
    description: Report only this pool.
    type: str
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
"""

EXAMPLES = r"""
- name: How full are the pools?
  onprem.ingress.lb_pool_info:
    kubeconfig: /etc/kubernetes/admin.conf
  register: usage

- name: Warn when the default pool runs low
  ansible.builtin.debug:
    msg: "only {{ (usage.pools | selectattr('name', 'equalto', 'default') | first).free.IPv4 }} IPv4 addresses left"
"""

RETURN = r"""
pools:
  description:
    - One entry per pool, in name order.
    - C(ready) is false for a pool the controller ignores (overlap with an older pool, invalid
      addresses); C(reason) and C(message) say why, as the pool's Ready condition does, and its
      counts are zero.
  returned: success
  type: list
  elements: dict
  sample:
    - name: default
      ready: true
      reason: Valid
      message: a pool of 16 IPv4 addresses, in use for allocation
      size: {IPv4: 16, IPv6: 0}
      used: {IPv4: 2, IPv6: 0}
      free: {IPv4: 14, IPv6: 0}
      holders: {192.0.2.240: [ingress-nginx/ingress-nginx-controller]}
unassigned:
  description: Held addresses that belong to no pool (or clash), as warnings.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.onprem.ingress.plugins.module_utils.cluster import (
    CLUSTER_ARGSPEC,
    HAS_KUBERNETES,
    KUBERNETES_IMPORT_ERROR,
    ClusterError,
    connect,
    read_config,
    read_namespace_labels,
    read_services,
)
from ansible_collections.onprem.ingress.plugins.module_utils.ipam import (
    HAS_NETADDR,
    NETADDR_IMPORT_ERROR,
    address_text,
    restore_allocator,
)


def main() -> None:
    module = AnsibleModule(argument_spec=dict(CLUSTER_ARGSPEC, name={"type": "str"}), supports_check_mode=True)
    if not HAS_NETADDR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=NETADDR_IMPORT_ERROR)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    namespace = module.params["pool_namespace"]
    try:
        api = connect(module.params["kubeconfig"], module.params["context"])
        config = read_config(api, namespace)
        allocator, warnings = restore_allocator(
            config.pools,
            read_services(api),
            read_namespace_labels(api),
            lb_class=module.params["lb_class"],
            ignored=config.ignored_pools(),
        )
    except ClusterError as exc:
        module.fail_json(msg=str(exc))

    wanted = module.params["name"]
    if wanted is not None and wanted not in config.pool_labels:
        known = ", ".join(sorted(config.pool_labels)) or "none"
        module.fail_json(msg=f"pool {wanted!r} not found in {namespace}; pools: {known}")
    holders: dict[str, dict[str, list[str]]] = {}
    for alloc in allocator.allocations():
        for version, value in alloc.addresses:
            holders.setdefault(alloc.pool, {}).setdefault(address_text(version, value), []).append(alloc.service)
    conditions = {ref.name: c for ref, c in config.conditions.items() if ref.kind == "IPAddressPool"}
    report = []
    for name in sorted(config.pool_labels):
        if wanted is not None and name != wanted:
            continue
        cond = conditions[name]
        if name in allocator.pools:
            counts = allocator.usage(name).shown()
        else:
            zero = {"IPv4": 0, "IPv6": 0}
            counts = {"size": dict(zero), "used": dict(zero), "free": dict(zero)}
        entry = dict(counts, name=name, ready=cond.status == "True", reason=cond.reason, message=cond.message)
        entry["holders"] = holders.get(name, {})
        report.append(entry)
    module.exit_json(changed=False, pools=report, unassigned=warnings)


if __name__ == "__main__":
    main()
