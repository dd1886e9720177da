#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: lb_pool
short_description: Validate and normalise load-balancer address pools
version_added: 0.1.0
description:
  - Checks address pool definitions from inventory variables before anything is applied to a
    cluster, and returns them as C(metallb.io/v1beta1) C(IPAddressPool) resources.
  - Rejects malformed addresses, ranges that end before they start, CIDRs with host bits set,
    duplicate names, pools that overlap each other, and pools that overlap the cluster's node,
    Service or Pod CIDRs. The error says which pool and what to change.
  - Reports the number of addresses per pool and family (C(avoid_buggy_ips) honoured; a /64 is
    counted, never expanded).
  - Changes nothing anywhere, so check mode and diff mode behave as a normal run.
author:
  - onprem.ingress developers (@onprem)
options:
  pools:
    description:
      - The pools, in the order given. Field names follow C(IPAddressPool.spec); the MetalLB
        camelCase spellings are accepted as aliases.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Pool name (the C(IPAddressPool) object's name).
        type: str
        required: true
      addresses:
        description:
          - CIDRs (V(192.0.2.0/28), V(2001:db8::/64)) and inclusive ranges
            (V(192.0.2.10-192.0.2.20)); IPv4 and IPv6 may be mixed.
        type: list
        elements: str
        required: true
      auto_assign:
        description: Whether Services get addresses from this pool without asking for it by name.
        type: bool
        default: true
        aliases: [autoAssign]
      avoid_buggy_ips:
        description: Skip IPv4 addresses ending in .0 and .255.
        type: bool
        default: false
        aliases: [avoidBuggyIPs]
      service_allocation:
        description:
          - C(serviceAllocation) of the pool, with MetalLB's keys C(priority), C(namespaces),
            C(namespaceSelectors), C(serviceSelectors).
        type: dict
        aliases: [serviceAllocation]
  namespace:
    description: Namespace for the returned C(IPAddressPool) resources.
    type: str
    default: metallb-system
  node_cidrs:
    description: CIDRs of the node network; pools must not overlap them.
    type: list
    elements: str
    default: []
  service_cidrs:
    description: The cluster's Service CIDRs (C(--service-cluster-ip-range)); pools must not overlap them.
    type: list
    elements: str
    default: []
  pod_cidrs:
    description: The cluster's Pod CIDRs; pools must not overlap them.
    type: list
    elements: str
    default: []
requirements:
  - netaddr (Python library)
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
notes:
  - An address assigned to a node's interface is a different problem (it breaks ARP); the
    onprem.ingress.host_network role checks that on the hosts themselves.
"""

EXAMPLES = r"""
- name: Check the pools from inventory and build the IPAddressPool resources
  onprem.ingress.lb_pool:
    pools:
      - name: default
        addresses: [192.0.2.240/28, "2001:db8:0:1::/64"]
      - name: reserved
        addresses: [198.51.100.10-198.51.100.20]
        auto_assign: false
    node_cidrs: [192.0.2.0/26]
    service_cidrs: [10.96.0.0/12]
  register: lb_pools

- name: Apply them
  kubernetes.core.k8s:
    definition: "{{ lb_pools.resources }}"
"""

RETURN = r"""
pools:
  description: Each pool, normalised, with its size per family.
  returned: success
  type: list
  elements: dict
  sample:
    - name: default
      size: {IPv4: 16, IPv6: 18446744073709551616}
      spec: {addresses: [192.0.2.240/28], autoAssign: true, avoidBuggyIPs: false}
resources:
  description: C(IPAddressPool) resources ready for kubernetes.core.k8s.
  returned: success
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.onprem.ingress.plugins.module_utils.ipam import (
    FAMILY_NAMES,
    HAS_NETADDR,
    NETADDR_IMPORT_ERROR,
    IpamError,
    find_cidr_conflicts,
    find_overlaps,
    pools_from_specs,
)

SPEC_KEYS = {"auto_assign": "autoAssign", "avoid_buggy_ips": "avoidBuggyIPs", "service_allocation": "serviceAllocation"}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pools": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "addresses": {"type": "list", "elements": "str", "required": True},
                    "auto_assign": {"type": "bool", "default": True, "aliases": ["autoAssign"]},
                    "avoid_buggy_ips": {"type": "bool", "default": False, "aliases": ["avoidBuggyIPs"]},
                    "service_allocation": {"type": "dict", "aliases": ["serviceAllocation"]},
                },
            },
            "namespace": {"type": "str", "default": "metallb-system"},
            "node_cidrs": {"type": "list", "elements": "str", "default": []},
            "service_cidrs": {"type": "list", "elements": "str", "default": []},
            "pod_cidrs": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    if not HAS_NETADDR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=NETADDR_IMPORT_ERROR)

    specs = []
    for entry in module.params["pools"]:
        spec = {"addresses": entry["addresses"]}
        for key, api_key in SPEC_KEYS.items():
            if entry.get(key) is not None:
                spec[api_key] = entry[key]
        specs.append((entry["name"], spec))
    try:
        pools = pools_from_specs(specs)
        overlaps = find_overlaps(pools)
        conflicts = find_cidr_conflicts(
            pools,
            {
                "node": module.params["node_cidrs"],
                "service": module.params["service_cidrs"],
                "pod": module.params["pod_cidrs"],
            },
        )
    except IpamError as exc:
        module.fail_json(msg=str(exc))

    problems = [f"pools {o.first!r} and {o.second!r} share {o.addresses}" for o in overlaps]
    problems += [f"pool {c.first!r} overlaps the {c.second} CIDRs at {c.addresses}" for c in conflicts]
    if problems:
        module.fail_json(
            msg="address pools conflict: " + "; ".join(problems) + ". Every address must belong to one pool "
            "and to no node, Service or Pod network: shrink or move the pools named.",
            overlaps=[o.__dict__ for o in overlaps],
            conflicts=[c.__dict__ for c in conflicts],
        )

    namespace = module.params["namespace"]
    module.exit_json(
        changed=False,
        pools=[
            {"name": p.name, "size": {FAMILY_NAMES[v]: p.size(v) for v in (4, 6)}, "spec": p.to_spec()} for p in pools
        ],
        resources=[
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": p.name, "namespace": namespace},
                "spec": p.to_spec(),
            }
            for p in pools
        ],
    )


if __name__ == "__main__":
    main()
