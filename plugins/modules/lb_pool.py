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
    duplicate names, pools that overlap each other, and pools that overlap the cluster's Service or
    Pod CIDRs. The error says which pool and what to change.
  - Checks the pools against the node network. In layer 2 mode a pool must lie B(inside) a node
    subnet (O(node_cidrs)), because only hosts on the segment can reach it by ARP (IPv4) or NDP
    (IPv6); a pool inside a node subnet is therefore fine. A pool that contains an address a node
    holds (O(node_addresses)), or the network or broadcast address of an IPv4 node subnet (/30 and
    larger), is rejected. A layer 2 pool (O(l2_pools)) with addresses outside every node subnet
    gets a warning, not an error, since a router may still carry them; see RV(l2_warnings).
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
  strict_cidrs:
    description:
      - A CIDR with host bits set (V(192.168.1.5/24)) is read as its network (V(192.168.1.0/24)),
        as MetalLB reads it, with a warning. V(true) refuses it instead.
    type: bool
    default: false
  node_cidrs:
    description:
      - The subnets the nodes sit on (V(192.168.120.0/24)); interface notation
        (V(192.168.120.11/24)) means its subnet.
      - A pool inside one of them is what layer 2 needs. The IPv4 network and broadcast addresses
        of a subnet larger than /31 must not be in a pool.
      - Layer 2 pools (O(l2_pools)) with addresses outside all of them get a warning. Empty
        skips that check.
    type: list
    elements: str
    default: []
  node_addresses:
    description:
      - The addresses the nodes themselves hold (V(192.168.120.11)), without prefix length. A pool
        that contains one of them is rejected, since MetalLB would hand it to a Service and the
        node and the Service would answer ARP/NDP for the same address.
      - The segment's router and other hosts with fixed addresses may be listed too.
    type: list
    elements: str
    default: []
  l2_pools:
    description:
      - Names of the pools announced in layer 2 mode, as listed in an C(L2Advertisement)'s
        C(ipAddressPools). These are checked to lie inside O(node_cidrs).
      - When omitted, every pool counts as layer 2, like an C(L2Advertisement) that names no
        pools. V([]) means no pool is announced in layer 2 (BGP only); nothing is checked then.
      - Every name must be one of O(pools).
    type: list
    elements: str
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
  - O(node_addresses) is checked against the inventory here, before anything is applied; the
    onprem.ingress.host_network role checks the addresses really assigned on the hosts themselves.
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
    service_cidrs: [10.96.0.0/12]
  register: lb_pools

- name: Layer 2 pool inside the node subnet (MetalLB's "part of the host network")
  onprem.ingress.lb_pool:
    pools:
      - name: default
        addresses: [192.168.120.200-192.168.120.250]
      - name: bgp
        addresses: [198.51.100.0/24]
    node_cidrs: [192.168.120.0/24]
    node_addresses: [192.168.120.11, 192.168.120.12, 192.168.120.13, 192.168.120.1]
    l2_pools: [default]
    service_cidrs: [10.96.0.0/12]
    pod_cidrs: [10.244.0.0/16]
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
l2_warnings:
  description:
    - Layer 2 pools with addresses outside every node subnet, one entry per pool; the same
      messages are also given as warnings. Empty when O(node_cidrs) is empty.
  returned: success
  type: list
  elements: dict
  contains:
    pool:
      description: The pool's name.
      type: str
    addresses:
      description: The parts of the pool outside every node subnet.
      type: list
      elements: str
    msg:
      description: What is wrong and what to change.
      type: str
  sample:
    - pool: default
      addresses: [10.0.0.0/24]
      msg: "pool 'default' is announced in layer 2, but 10.0.0.0/24 is outside every node subnet ..."
node_conflicts:
  description: Pools holding a node address or a node subnet's network or broadcast address.
  returned: failure
  type: list
  elements: dict
  contains:
    pool:
      description: The pool's name.
      type: str
    addresses:
      description: The addresses it must not contain.
      type: list
      elements: dict
      contains:
        address:
          description: The address, e.g. V(192.168.120.11).
          type: str
        what:
          description: V(node address), or which node subnet's network or broadcast address it is.
          type: str
    suggestion:
      description: The pool's addresses without them (empty when too long to show).
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.onprem.ingress.plugins.module_utils.k8s_names import label_problem, subdomain_problem
from ansible_collections.onprem.ingress.plugins.module_utils.ipam import (
    FAMILY_NAMES,
    HAS_NETADDR,
    NETADDR_IMPORT_ERROR,
    IpamError,
    find_overlaps,
    pools_from_specs,
)
from ansible_collections.onprem.ingress.plugins.module_utils.pool_checks import (
    find_cidr_conflicts,
    find_node_conflicts,
    find_outside_node_subnets,
    parse_node_addresses,
    parse_node_subnets,
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
            "strict_cidrs": {"type": "bool", "default": False},
            "node_cidrs": {"type": "list", "elements": "str", "default": []},
            "node_addresses": {"type": "list", "elements": "str", "default": []},
            "l2_pools": {"type": "list", "elements": "str"},
            "service_cidrs": {"type": "list", "elements": "str", "default": []},
            "pod_cidrs": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    if not HAS_NETADDR:
        module.fail_json(msg=missing_required_lib("netaddr"), exception=NETADDR_IMPORT_ERROR)

    for where, problem in [("namespace", label_problem(module.params["namespace"]))] + [
        ("pools[%d].name" % i, subdomain_problem(entry["name"])) for i, entry in enumerate(module.params["pools"])
    ]:
        if problem:
            module.fail_json(msg="%s: %s; the API server would refuse it" % (where, problem))

    specs = []
    for entry in module.params["pools"]:
        spec = {"addresses": entry["addresses"]}
        for key, api_key in SPEC_KEYS.items():
            if entry.get(key) is not None:
                spec[api_key] = entry[key]
        specs.append((entry["name"], spec))
    try:
        pools = pools_from_specs(specs, strict=module.params["strict_cidrs"])
        node_subnets = parse_node_subnets(module.params["node_cidrs"])
        node_addresses = parse_node_addresses(module.params["node_addresses"])
        overlaps = find_overlaps(pools)
        conflicts = find_cidr_conflicts(
            pools, {"service": module.params["service_cidrs"], "pod": module.params["pod_cidrs"]}
        )
        node_conflicts = find_node_conflicts(pools, node_subnets, node_addresses)
    except IpamError as exc:
        module.fail_json(msg=str(exc))

    for pool in pools:
        for note in pool.notes:
            module.warn("pool %r: %s" % (pool.name, note))

    names = [p.name for p in pools]
    l2_names = module.params["l2_pools"]
    if l2_names is None:
        l2_names = names
    unknown = sorted(set(l2_names) - set(names))
    if unknown:
        module.fail_json(
            msg=f"l2_pools names {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} not "
            f"among the pools ({', '.join(names)}); list only pool names, as in an L2Advertisement's ipAddressPools"
        )
    l2_warnings = []
    if node_subnets:
        l2_pools = [p for p in pools if p.name in set(l2_names)]
        for outside in find_outside_node_subnets(l2_pools, node_subnets):
            module.warn(outside.message())
            l2_warnings.append({"pool": outside.pool, "addresses": list(outside.addresses), "msg": outside.message()})

    parts = []
    problems = [f"pools {o.first!r} and {o.second!r} share {o.addresses}" for o in overlaps]
    problems += [f"pool {c.first!r} overlaps the {c.second} CIDRs at {c.addresses}" for c in conflicts]
    if problems:
        parts.append(
            "; ".join(problems) + ". Every address must belong to one pool and to no Service or Pod network: "
            "shrink or move the pools named"
        )
    parts += [c.message() for c in node_conflicts]
    if parts:
        module.fail_json(
            msg="address pools conflict: " + ". ".join(parts) + ".",
            overlaps=[o.__dict__ for o in overlaps],
            conflicts=[c.__dict__ for c in conflicts],
            node_conflicts=[
                {
                    "pool": c.pool,
                    "addresses": [{"address": a, "what": w} for a, w in c.addresses],
                    "suggestion": list(c.suggestion),
                }
                for c in node_conflicts
            ],
            l2_warnings=l2_warnings,
        )

    namespace = module.params["namespace"]
    module.exit_json(
        changed=False,
        l2_warnings=l2_warnings,
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
