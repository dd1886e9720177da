# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The metallb.io kinds, in one table: what the engine's API client, its informers, the config
model, the controller and the speakers, the Ansible modules and filters, and the RBAC and CRD
lists of the lb_controller role (held equal to this table by a unit test) read.

Names, versions and plurals are MetalLB's (v0.14 and later: BGPPeer is served as v1beta2), so
MetalLB's own manifests and ours are interchangeable. No imports beyond the standard library:
the engine ships this file as ``onprem_lb.metallb_kinds``.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from dataclasses import dataclass
from typing import Dict, Tuple

GROUP = "metallb.io"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    version: str
    # the argument of config_model.build_config that takes these objects; "" for a kind that is
    # not configuration (the speakers' status objects)
    config: str = ""
    # the controller writes a Ready condition into the object's status subresource
    status: bool = False
    # who reads it: "controller", "speaker" (every speaker), "bgp speaker" (a speaker in BGP mode)
    readers: Tuple[str, ...] = ("controller", "speaker")
    # the spec fields MetalLB's API documents for it (what the metallb_objects filter accepts)
    fields: Tuple[str, ...] = ()
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


BGP = ("controller", "bgp speaker")
SELECTS_POOLS_AND_NODES = ("ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors")
KINDS: Tuple[Kind, ...] = (
    Kind(
        "IPAddressPool",
        "ipaddresspools",
        "v1beta1",
        config="pools",
        status=True,
        fields=("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"),
    ),
    Kind(
        "L2Advertisement",
        "l2advertisements",
        "v1beta1",
        config="l2_advertisements",
        status=True,
        fields=(*SELECTS_POOLS_AND_NODES, "interfaces"),
    ),
    Kind(
        "BGPAdvertisement",
        "bgpadvertisements",
        "v1beta1",
        config="bgp_advertisements",
        status=True,
        readers=BGP,
        fields=(
            "aggregationLength",
            "aggregationLengthV6",
            "localPref",
            "communities",
            *SELECTS_POOLS_AND_NODES,
            "peers",
        ),
    ),
    Kind(
        "BGPPeer",
        "bgppeers",
        "v1beta2",
        config="peers",
        status=True,
        readers=BGP,
        fields=(
            "myASN",
            "peerASN",
            "dynamicASN",
            "peerAddress",
            "sourceAddress",
            "peerPort",
            "holdTime",
            "keepaliveTime",
            "connectTime",
            "routerID",
            "ebgpMultiHop",
            "nodeSelectors",
            "password",
            "passwordSecret",
            "bfdProfile",
            "enableGracefulRestart",
            "vrf",
            "disableMP",
        ),
    ),
    # no status subresource (as in MetalLB): a problem is told by a Warning Event only
    Kind("Community", "communities", "v1beta1", config="communities", readers=BGP, fields=("communities",)),
    Kind(
        "BFDProfile",
        "bfdprofiles",
        "v1beta1",
        config="bfd_profiles",
        readers=BGP,
        fields=(
            "receiveInterval",
            "transmitInterval",
            "detectMultiplier",
            "echoInterval",
            "echoMode",
            "passiveMode",
            "minimumTtl",
        ),
    ),
    # one per (Service, node), written by the speaker that announces it, read by `status`
    Kind("ServiceL2Status", "servicel2statuses", "v1beta1", readers=("speaker",)),
    Kind("ServiceBGPStatus", "servicebgpstatuses", "v1beta1", readers=("bgp speaker",)),
)

BY_KIND: Dict[str, Kind] = {k.kind: k for k in KINDS}
# the configuration kinds, in the order build_config takes them
CONFIG_KINDS: Tuple[Kind, ...] = tuple(k for k in KINDS if k.config)
