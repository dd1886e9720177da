"""MetalLB's legacy ConfigMap (the `config` key, MetalLB <= 0.12) turned into metallb.io objects.

Pure: YAML text in, resource dicts out. Unknown keys and values are errors that name the key,
because a silently dropped setting is a different cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from onprem_lb import ipam


class ConversionError(Exception):
    """The legacy configuration cannot be converted; the message says what to change."""


_TOP_KEYS = {"address-pools", "peers", "bgp-communities", "bfd-profiles"}
_POOL_KEYS = {"name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips", "bgp-advertisements"}
_ADV_KEYS = {"aggregation-length", "aggregation-length-v6", "localpref", "communities"}
_PEER_KEYS = {
    "peer-address": "peerAddress",
    "peer-asn": "peerASN",
    "my-asn": "myASN",
    "peer-port": "peerPort",
    "hold-time": "holdTime",
    "keepalive-time": "keepaliveTime",
    "router-id": "routerID",
    "source-address": "sourceAddress",
    "password": "password",
    "bfd-profile": "bfdProfile",
    "ebgp-multihop": "ebgpMultiHop",
    "vrf": "vrf",
    "node-selectors": "nodeSelectors",
}
_BFD_KEYS = {
    "name": "name",
    "receive-interval": "receiveInterval",
    "transmit-interval": "transmitInterval",
    "detect-multiplier": "detectMultiplier",
    "echo-interval": "echoInterval",
    "echo-mode": "echoMode",
    "passive-mode": "passiveMode",
    "minimum-ttl": "minimumTtl",
}
COMMUNITY_OBJECT = "legacy-communities"


def _check_keys(where: str, data: Mapping[str, Any], allowed: set[str] | Mapping[str, str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConversionError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(allowed))}")


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConversionError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _list(where: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConversionError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _resource(
    kind: str, name: str, namespace: str, spec: Mapping[str, Any], version: str = "v1beta1"
) -> dict[str, Any]:
    return {
        "apiVersion": f"metallb.io/{version}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }


def config_text_from_manifest(text: str) -> str:
    """Accept a whole ConfigMap manifest, or the bare `config` value."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConversionError(f"not valid YAML: {exc}") from None
    if isinstance(doc, Mapping) and doc.get("kind") == "ConfigMap":
        data = doc.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("config"), str):
            raise ConversionError("the ConfigMap has no data.config string; MetalLB reads its configuration from there")
        return str(data["config"])
    return text


def convert(config_text: str, namespace: str = "metallb-system") -> list[dict[str, Any]]:
    """The metallb.io resources equivalent to a legacy `config` document, in apply order."""
    try:
        raw = yaml.safe_load(config_text)
    except yaml.YAMLError as exc:
        raise ConversionError(f"the config is not valid YAML: {exc}") from None
    conf = _mapping("config", raw if raw is not None else {})
    _check_keys("config", conf, _TOP_KEYS)
    out: list[dict[str, Any]] = []

    communities = _mapping("bgp-communities", conf.get("bgp-communities") or {})
    if communities:
        entries = [{"name": str(k), "value": str(v)} for k, v in communities.items()]
        out.append(_resource("Community", COMMUNITY_OBJECT, namespace, {"communities": entries}))

    for i, raw_prof in enumerate(_list("bfd-profiles", conf.get("bfd-profiles"))):
        prof = _mapping(f"bfd-profiles[{i}]", raw_prof)
        _check_keys(f"bfd-profiles[{i}]", prof, _BFD_KEYS)
        if not prof.get("name"):
            raise ConversionError(f"bfd-profiles[{i}] needs a name")
        bfd_spec = {_BFD_KEYS[k]: v for k, v in prof.items() if k != "name"}
        out.append(_resource("BFDProfile", str(prof["name"]), namespace, bfd_spec))

    seen: set[str] = set()
    for i, raw_pool in enumerate(_list("address-pools", conf.get("address-pools"))):
        where = f"address-pools[{i}]"
        pool = _mapping(where, raw_pool)
        _check_keys(where, pool, _POOL_KEYS)
        name = str(pool.get("name") or "")
        if not name:
            raise ConversionError(f"{where} needs a name")
        if name in seen:
            raise ConversionError(f"{where}: pool name {name!r} is used twice")
        seen.add(name)
        spec: dict[str, Any] = {"addresses": [str(a) for a in _list(f"{where}.addresses", pool.get("addresses"))]}
        if "auto-assign" in pool:
            spec["autoAssign"] = bool(pool["auto-assign"])
        if "avoid-buggy-ips" in pool:
            spec["avoidBuggyIPs"] = bool(pool["avoid-buggy-ips"])
        try:
            ipam.Pool.from_spec(name, spec)
        except ipam.IpamError as exc:
            raise ConversionError(f"{where}: {exc}") from None
        out.append(_resource("IPAddressPool", name, namespace, spec))
        protocol = pool.get("protocol")
        if protocol == "layer2":
            if pool.get("bgp-advertisements"):
                raise ConversionError(f"{where}: bgp-advertisements only apply to protocol: bgp")
            out.append(_resource("L2Advertisement", name, namespace, {"ipAddressPools": [name]}))
        elif protocol == "bgp":
            advs = _list(f"{where}.bgp-advertisements", pool.get("bgp-advertisements")) or [{}]
            for j, raw_adv in enumerate(advs):
                awhere = f"{where}.bgp-advertisements[{j}]"
                adv = _mapping(awhere, raw_adv)
                _check_keys(awhere, adv, _ADV_KEYS)
                aspec: dict[str, Any] = {"ipAddressPools": [name]}
                if "aggregation-length" in adv:
                    aspec["aggregationLength"] = int(adv["aggregation-length"])
                if "aggregation-length-v6" in adv:
                    aspec["aggregationLengthV6"] = int(adv["aggregation-length-v6"])
                if "localpref" in adv:
                    aspec["localPref"] = int(adv["localpref"])
                if adv.get("communities"):
                    # A name from bgp-communities stays a name: the Community object defines it.
                    aspec["communities"] = [str(c) for c in _list(f"{awhere}.communities", adv["communities"])]
                adv_name = name if len(advs) == 1 else f"{name}-{j}"
                out.append(_resource("BGPAdvertisement", adv_name, namespace, aspec))
        else:
            raise ConversionError(f"{where}: protocol must be layer2 or bgp, got {protocol!r}")

    for i, raw_peer in enumerate(_list("peers", conf.get("peers"))):
        where = f"peers[{i}]"
        peer = _mapping(where, raw_peer)
        _check_keys(where, peer, _PEER_KEYS)
        for required in ("peer-address", "peer-asn", "my-asn"):
            if required not in peer:
                raise ConversionError(f"{where} needs {required}")
        peer_spec: dict[str, Any] = {}
        for key, value in peer.items():
            if key == "node-selectors":
                peer_spec["nodeSelectors"] = [
                    _node_selector(f"{where}.node-selectors[{k}]", s) for k, s in enumerate(value)
                ]
            elif key in ("peer-asn", "my-asn", "peer-port"):
                peer_spec[_PEER_KEYS[key]] = int(value)
            else:
                peer_spec[_PEER_KEYS[key]] = value
        name = f"peer-{i}-{str(peer['peer-address']).replace(':', '-').replace('.', '-')}"
        out.append(_resource("BGPPeer", name, namespace, peer_spec, version="v1beta2"))
    return out


def _node_selector(where: str, raw: Any) -> dict[str, Any]:
    sel = _mapping(where, raw)
    _check_keys(where, sel, {"match-labels", "match-expressions"})
    out: dict[str, Any] = {}
    if sel.get("match-labels"):
        out["matchLabels"] = dict(_mapping(f"{where}.match-labels", sel["match-labels"]))
    if sel.get("match-expressions"):
        out["matchExpressions"] = [dict(_mapping(f"{where}.match-expressions", e)) for e in sel["match-expressions"]]
    return out
