"""legacy.py: the MetalLB <= 0.12 ConfigMap converted to metallb.io objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from onprem_lb import legacy

SEED000 = Path(__file__).resolve().parents[1] / "integration" / "seeds" / "seed000-config-pool.yaml"

FULL_LEGACY = """
peers:
- peer-address: 192.0.2.1
  peer-asn: 64501
  my-asn: 64500
  hold-time: 90s
  node-selectors:
  - match-labels: {rack: a}
bgp-communities:
  no-advertise: 65535:65282
bfd-profiles:
- name: fast
  receive-interval: 100
  transmit-interval: 100
address-pools:
- name: l2
  protocol: layer2
  addresses: [198.51.100.0/28]
  avoid-buggy-ips: true
- name: routed
  protocol: bgp
  auto-assign: false
  addresses: [203.0.113.0/28, 2001:db8::/124]
  bgp-advertisements:
  - aggregation-length: 32
    localpref: 100
    communities: [no-advertise]
"""


def _by_kind(resources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        out.setdefault(r["kind"], []).append(r)
    return out


def test_legacy_seed_configmap_converts() -> None:
    text = SEED000.read_text().replace("{ip-start}-{ip-stop}", "192.0.2.240-192.0.2.250")
    resources = legacy.convert(legacy.config_text_from_manifest(text))
    assert resources == [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "default", "namespace": "metallb-system"},
            "spec": {"addresses": ["192.0.2.240-192.0.2.250"]},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "default", "namespace": "metallb-system"},
            "spec": {"ipAddressPools": ["default"]},
        },
    ]


def test_legacy_every_section_converts() -> None:
    kinds = _by_kind(legacy.convert(FULL_LEGACY, namespace="lb"))
    assert kinds["Community"][0]["spec"] == {"communities": [{"name": "no-advertise", "value": "65535:65282"}]}
    assert kinds["BFDProfile"][0]["spec"] == {"receiveInterval": 100, "transmitInterval": 100}
    assert kinds["IPAddressPool"][0]["spec"] == {"addresses": ["198.51.100.0/28"], "avoidBuggyIPs": True}
    assert kinds["IPAddressPool"][1]["spec"]["autoAssign"] is False
    assert kinds["BGPAdvertisement"][0]["spec"] == {
        "ipAddressPools": ["routed"],
        "aggregationLength": 32,
        "localPref": 100,
        "communities": ["no-advertise"],
    }
    peer = kinds["BGPPeer"][0]
    assert peer["apiVersion"] == "metallb.io/v1beta2"
    assert peer["spec"] == {
        "peerAddress": "192.0.2.1",
        "peerASN": 64501,
        "myASN": 64500,
        "holdTime": "90s",
        "nodeSelectors": [{"matchLabels": {"rack": "a"}}],
    }
    assert {r["metadata"]["namespace"] for k in kinds.values() for r in k} == {"lb"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("address-pools:\n- name: a\n  protocol: l3\n  addresses: [192.0.2.0/28]", "protocol must be layer2 or bgp"),
        ("address-pools:\n- name: a\n  protocl: layer2", "unknown key(s) protocl"),
        ("adress-pools: []", "config: unknown key(s) adress-pools"),
        ("peers:\n- peer-address: 192.0.2.1\n  my-asn: 1", "peers[0] needs peer-asn"),
        ("address-pools: [a, b", "not valid YAML"),
        (
            "address-pools:\n- {name: a, protocol: layer2, addresses: [192.0.2.0/28]}\n"
            "- {name: a, protocol: layer2, addresses: [192.0.2.16/28]}",
            "pool name 'a' is used twice",
        ),
    ],
)
def test_legacy_errors_name_the_key(config: str, message: str) -> None:
    with pytest.raises(
        legacy.ConversionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        legacy.convert(config)
