"""The control-plane address's settings: one local YAML file, read before anything starts.

    node: cp1                                  # this node's name among the members (default: hostname)
    addresses: [192.0.2.250, "2001:db8::250"]  # at most one IPv4 and one IPv6 address
    interfaces: [eth0]                         # where to answer ARP/NDP (empty or absent: every up interface)
    members:                                   # every control-plane node, this one included
      - {name: cp1, heartbeat: "198.51.100.11:7947"}
      - {name: cp2, heartbeat: "198.51.100.12:7947"}
    secretFile: /etc/onprem-lb/control-plane.secret   # signs the heartbeats (required with 2+ members)
    health:   {url: "https://127.0.0.1:6443/readyz", interval: 0.2, timeout: 0.5, rise: 2, fall: 2, caFile: null}
    heartbeat: {interval: 0.1, deadAfter: 0.4, maxSkew: 10}
    garp:     {count: 3, interval: 0.2}

Every key is checked: an unknown one, a wrong type, an address that no host can hold, a member
listed twice or a node that is not a member is refused with the key's path, what is wrong and
what to change, before any socket is opened.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from onprem_lb import file_input, hostport, k8s_names


class SettingsError(ValueError):
    """The settings file cannot be used; the text says which key and why."""


@dataclass(frozen=True)
class Member:
    name: str
    heartbeat: tuple[str, int]


@dataclass(frozen=True)
class Health:
    url: str = "https://127.0.0.1:6443/readyz"
    interval: float = 0.2
    timeout: float = 0.5
    rise: int = 2
    fall: int = 2
    ca_file: str | None = None


@dataclass(frozen=True)
class Settings:
    node: str
    addresses: tuple[str, ...]
    interfaces: tuple[str, ...]
    members: tuple[Member, ...]
    secret: bytes | None
    health: Health
    heartbeat_interval: float = 0.1
    dead_after: float = 0.4
    max_skew: float = 10.0
    garp_count: int = 3
    garp_interval: float = 0.2

    @property
    def me(self) -> Member:
        return next(m for m in self.members if m.name == self.node)


TOP = {"node", "addresses", "interfaces", "members", "secretFile", "insecureHeartbeats", "health", "heartbeat", "garp"}


def _keys(where: str, value: object, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SettingsError(f"{where}: must be a mapping, not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(allowed))}")
    return value


def _number(where: str, value: object, low: float, high: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not low <= value <= high:
        what = "a whole number" if integer else "a number of seconds"
        raise SettingsError(f"{where}: {file_input.shown(value)} is not {what} from {low:g} to {high:g}")
    return value


def _text(where: str, value: object) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise SettingsError(f"{where}: {file_input.shown(value)} must be a non-empty string of printable characters")
    return value


def _name(where: str, value: object) -> str:
    text = _text(where, value)
    problem = k8s_names.subdomain_problem(text)
    if problem:
        raise SettingsError(f"{where}: {problem} (a Node's name)")
    return text


def _address(where: str, value: object) -> str:
    try:
        ip = ipaddress.ip_address(_text(where, value))
    except ValueError:
        raise SettingsError(f"{where}: {file_input.shown(value)} is not an IP address") from None
    bad = (ip.is_loopback, ip.is_multicast, ip.is_unspecified, ip.is_link_local, ip.version == 4 and ip.is_reserved)
    if any(bad):
        raise SettingsError(f"{where}: {ip} cannot be a shared address (loopback, multicast, link-local or reserved)")
    return str(ip)


def _addresses(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SettingsError("addresses: list one or two addresses (at most one IPv4 and one IPv6)")
    out = tuple(_address(f"addresses[{i}]", v) for i, v in enumerate(value))
    families = [ipaddress.ip_address(a).version for a in out]
    if len(set(families)) != len(families):
        raise SettingsError(f"addresses: {', '.join(out)}: at most one IPv4 and one IPv6 address")
    return out


def _interfaces(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SettingsError("interfaces: must be a list of interface names (empty: every up interface)")
    out = []
    for i, v in enumerate(value):
        name = _text(f"interfaces[{i}]", v)
        if len(name) > 15 or "/" in name or name in (".", ".."):
            raise SettingsError(f"interfaces[{i}]: {file_input.shown(name)} is not a Linux interface name")
        out.append(name)
    return tuple(out)


def _members(value: object) -> tuple[Member, ...]:
    if not isinstance(value, list) or not value:
        raise SettingsError("members: list every control-plane node as {name: NODE, heartbeat: HOST:PORT}")
    out: list[Member] = []
    for i, entry in enumerate(value):
        item = _keys(f"members[{i}]", entry, {"name", "heartbeat"})
        name = _name(f"members[{i}].name", item.get("name"))
        try:
            heartbeat = hostport.parse(_text(f"members[{i}].heartbeat", item.get("heartbeat")))
        except ValueError as exc:
            raise SettingsError(f"members[{i}].heartbeat: {exc}") from None
        if any(m.name == name for m in out):
            raise SettingsError(f"members[{i}]: {name} is listed twice; list each node once")
        if any(m.heartbeat == heartbeat for m in out):
            raise SettingsError(f"members[{i}]: {hostport.join(*heartbeat)} is another member's heartbeat address")
        out.append(Member(name, heartbeat))
    return tuple(out)


def _health(value: object) -> Health:
    item = _keys("health", {} if value is None else value, {"url", "interval", "timeout", "rise", "fall", "caFile"})
    url = _text("health.url", item.get("url", Health.url))
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(f"health.url: {file_input.shown(url)} must be an http(s) URL, e.g. {Health.url}")
    ca_file = item.get("caFile")
    if ca_file is not None:
        problem = file_input.file_problem(_text("health.caFile", ca_file))
        if problem is None:
            try:
                ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError, ValueError):
                problem = "it holds no PEM certificate the TLS library reads (the cluster CA's ca.crt is one)"
        if problem:
            raise SettingsError(f"health.caFile: {file_input.shown(ca_file)}: {problem}")
    health = Health(
        url=url,
        interval=_number("health.interval", item.get("interval", Health.interval), 0.05, 60),
        timeout=_number("health.timeout", item.get("timeout", Health.timeout), 0.05, 60),
        rise=_number("health.rise", item.get("rise", Health.rise), 1, 20, integer=True),
        fall=_number("health.fall", item.get("fall", Health.fall), 1, 20, integer=True),
        ca_file=ca_file,
    )
    return health


def parse(text: str, *, source: str = "settings", node: str | None = None) -> Settings:
    """Settings from the file's text; SettingsError (prefixed with ``source``) says what is wrong."""
    try:
        return _parse(text, node)
    except SettingsError as exc:
        raise SettingsError(f"{source}: {exc}") from None


def _parse(text: str, node: str | None) -> Settings:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"not YAML: {str(exc).splitlines()[0]}") from None
    top = _keys("the file", data, TOP)
    for key in ("addresses", "members"):
        if key not in top:
            raise SettingsError(f"{key}: required")
    me = node or top.get("node") or socket.gethostname()
    me = _name("node", me)
    members = _members(top["members"])
    if me not in {m.name for m in members}:
        names = ", ".join(m.name for m in members)
        raise SettingsError(f"node: {me} is not one of the members ({names}); add it, or set node to its name")
    beat = _keys("heartbeat", top.get("heartbeat") or {}, {"interval", "deadAfter", "maxSkew"})
    interval = _number("heartbeat.interval", beat.get("interval", 0.1), 0.01, 10)
    dead_after = _number("heartbeat.deadAfter", beat.get("deadAfter", 0.4), 0.02, 60)
    if interval >= dead_after:
        raise SettingsError(f"heartbeat: interval ({interval:g} s) must be shorter than deadAfter ({dead_after:g} s)")
    garp = _keys("garp", top.get("garp") or {}, {"count", "interval"})
    secret = _secret(top, len(members))
    return Settings(
        node=me,
        addresses=_addresses(top["addresses"]),
        interfaces=_interfaces(top.get("interfaces")),
        members=members,
        secret=secret,
        health=_health(top.get("health")),
        heartbeat_interval=interval,
        dead_after=dead_after,
        max_skew=_number("heartbeat.maxSkew", beat.get("maxSkew", 10.0), 1, 3600),
        garp_count=_number("garp.count", garp.get("count", 3), 1, 20, integer=True),
        garp_interval=_number("garp.interval", garp.get("interval", 0.2), 0.01, 10),
    )


def _secret(top: Mapping[str, Any], members: int) -> bytes | None:
    insecure = top.get("insecureHeartbeats", False)
    if not isinstance(insecure, bool):
        raise SettingsError(f"insecureHeartbeats: {file_input.shown(insecure)} must be true or false")
    path = top.get("secretFile")
    if path is None:
        if members > 1 and not insecure:
            raise SettingsError(
                "secretFile: required with more than one member (a shared secret, the same on every node, signs the "
                "heartbeats); or set insecureHeartbeats: true to accept unsigned ones"
            )
        return None
    try:
        data = file_input.read_file(_text("secretFile", path), "secretFile", binary=True)
    except file_input.InputFileError as exc:
        raise SettingsError(str(exc)) from None
    secret = data.strip() if isinstance(data, bytes) else b""
    if not secret:
        raise SettingsError(f"secretFile: {file_input.shown(path)} is empty; write the shared secret into it")
    return secret


def load(path: str, node: str | None = None) -> Settings:
    """Settings from the file at ``path`` (SettingsError names the file and the key)."""
    try:
        text = file_input.read_file(path, "--config", hint="point it at the control-plane address's settings file")
    except file_input.InputFileError as exc:
        raise SettingsError(str(exc)) from None
    return parse(str(text), source=path, node=node)
