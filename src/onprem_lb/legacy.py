"""MetalLB's legacy ConfigMap (the `config` key, MetalLB <= 0.12) turned into metallb.io objects.

Pure: YAML text in, resource dicts out. Unknown keys and values are errors that name the key,
because a silently dropped setting is a different cluster.

The text is read as MetalLB reads it, into typed fields: every plain scalar stays the text
written (a community `64500:10` is not the base-60 integer YAML 1.1 makes of it, a key `y` is
not `true`), and the numeric and true/false fields are converted here, each checked and named.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

import yaml

from onprem_lb import ipam, k8s_names


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
# BFD numbers and their ranges (MetalLB's BFDProfile validation)
_BFD_RANGES = {
    "receive-interval": (10, 60000),
    "transmit-interval": (10, 60000),
    "detect-multiplier": (2, 255),
    "echo-interval": (10, 60000),
    "minimum-ttl": (1, 254),
}


class _TextLoader(yaml.SafeLoader):
    """YAML without implicit types: plain scalars are strings, only null (`~`, `null`, empty) is
    None. Quoted and explicitly tagged scalars are read as written."""


_TextLoader.yaml_implicit_resolvers = {}
_TextLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_TextLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def load_text(text: str) -> Any:
    """Parse YAML keeping plain scalars as the text written (see the module docstring)."""
    return yaml.load(text, Loader=_TextLoader)  # noqa: S506 - a SafeLoader subclass


# The words Go's YAML library (MetalLB's) reads as booleans.
_TRUE = {"true", "True", "TRUE", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE = {"false", "False", "FALSE", "n", "N", "no", "No", "NO", "off", "Off", "OFF"}
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def _bool(where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _TRUE | _FALSE:
        return value in _TRUE
    raise ConversionError(f"{where}: {value!r} is not true or false")


def _int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ConversionError(f"{where}: {value!r} is not a number")
    try:
        number = value if isinstance(value, int) else int(str(value), 0)
    except ValueError:
        raise ConversionError(f"{where}: {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise ConversionError(f"{where}: {number} is out of range ({low}-{high})")
    return number


def _duration(where: str, value: Any) -> str:
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ConversionError(f"{where}: {value!r} is not a duration with a unit, e.g. 90s or 1m30s")
    return value


def _address(where: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConversionError(f"{where}: {value!r} is not an IP address") from None


def _name(where: str, value: Any) -> str:
    text = "" if value is None else str(value)
    if not text:
        raise ConversionError(f"{where} needs a name")
    problem = k8s_names.subdomain_problem(text)
    if problem:
        raise ConversionError(f"{where}: the name {problem}; rename it")
    return text


def check_namespace(namespace: str) -> str:
    problem = k8s_names.label_problem(namespace)
    if problem:
        raise ConversionError(f"--namespace: {problem}")
    return namespace


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
        doc = load_text(text)
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
    check_namespace(namespace)
    try:
        raw = load_text(config_text)
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
        bfd_name = _name(f"bfd-profiles[{i}]", prof.get("name"))
        bfd_spec: dict[str, Any] = {}
        for key, value in prof.items():
            kwhere = f"bfd-profiles[{i}].{key}"
            if key in ("echo-mode", "passive-mode"):
                bfd_spec[_BFD_KEYS[key]] = _bool(kwhere, value)
            elif key in _BFD_RANGES:
                bfd_spec[_BFD_KEYS[key]] = _int(kwhere, value, *_BFD_RANGES[key])
        out.append(_resource("BFDProfile", bfd_name, namespace, bfd_spec))

    seen: set[str] = set()
    for i, raw_pool in enumerate(_list("address-pools", conf.get("address-pools"))):
        where = f"address-pools[{i}]"
        pool = _mapping(where, raw_pool)
        _check_keys(where, pool, _POOL_KEYS)
        name = _name(where, pool.get("name"))
        if name in seen:
            raise ConversionError(f"{where}: pool name {name!r} is used twice")
        seen.add(name)
        spec: dict[str, Any] = {"addresses": [str(a) for a in _list(f"{where}.addresses", pool.get("addresses"))]}
        if "auto-assign" in pool:
            spec["autoAssign"] = _bool(f"{where}.auto-assign", pool["auto-assign"])
        if "avoid-buggy-ips" in pool:
            spec["avoidBuggyIPs"] = _bool(f"{where}.avoid-buggy-ips", pool["avoid-buggy-ips"])
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
                    aspec["aggregationLength"] = _int(f"{awhere}.aggregation-length", adv["aggregation-length"], 0, 32)
                if "aggregation-length-v6" in adv:
                    aspec["aggregationLengthV6"] = _int(
                        f"{awhere}.aggregation-length-v6", adv["aggregation-length-v6"], 0, 128
                    )
                if "localpref" in adv:
                    aspec["localPref"] = _int(f"{awhere}.localpref", adv["localpref"], 0, 4294967295)
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
            kwhere = f"{where}.{key}"
            if key == "node-selectors":
                peer_spec["nodeSelectors"] = [
                    _node_selector(f"{kwhere}[{k}]", s) for k, s in enumerate(_list(kwhere, value))
                ]
            elif key in ("peer-asn", "my-asn"):
                peer_spec[_PEER_KEYS[key]] = _int(kwhere, value, 1, 4294967295)
            elif key == "peer-port":
                peer_spec[_PEER_KEYS[key]] = _int(kwhere, value, 1, 65535)
            elif key in ("hold-time", "keepalive-time"):
                peer_spec[_PEER_KEYS[key]] = _duration(kwhere, value)
            elif key in ("peer-address", "source-address", "router-id"):
                peer_spec[_PEER_KEYS[key]] = _address(kwhere, value)
            elif key == "ebgp-multihop":
                peer_spec[_PEER_KEYS[key]] = _bool(kwhere, value)
            else:
                peer_spec[_PEER_KEYS[key]] = value if value is None else str(value)
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
