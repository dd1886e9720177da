# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for playbooks/doctor.yml: small judgements on what the cluster and the nodes report.

- lease_state: whether a coordination.k8s.io Lease is held and renewed recently enough.
- arp_sysctl_problems: the effective arp_ignore / arp_announce (the larger of "all" and the
  interface's) read from /proc/sys, against what layer 2 announcing needs.
- udp_listening: whether `ss -Hnlu` shows a socket bound to an address and port.
- kube_proxy_mode: kube-proxy's mode and ipvs.strictARP from its ConfigMap (kubeadm layout).
- pending_service_events: each pending Service with the newest Warning Event about it.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import datetime
import ipaddress
import re
from typing import Any, Callable, Dict, List, Mapping, Optional

import yaml
from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

_FRACTION = re.compile(r"\.(\d+)")
_PROC_LINE = re.compile(r"^/proc/sys/net/ipv4/conf/(?P<iface>[^/]+)/(?P<key>[a-z_]+):\s*(?P<value>-?\d+)\s*$")
ARP_KEYS = ("arp_ignore", "arp_announce")


def _parse_time(value: Any, what: str) -> datetime.datetime:
    """RFC 3339 as the API server writes it (Time, MicroTime), on Python 3.9's fromisoformat."""
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00").replace(" ", "T", 1)
        # fromisoformat before 3.11 takes exactly 3 or 6 fraction digits
        text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise AnsibleFilterError("%s: %r is not an RFC 3339 time" % (what, value)) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def lease_state(lease: Any, now: Any = None) -> Dict[str, Any]:
    """What a Lease says about its holder: held, renewed how long ago, fresh.

    ``lease`` is a Lease object as k8s_info returns it, or None/{} when there is none. ``now``
    (a datetime or RFC 3339 string) defaults to the current time. The Lease is fresh when it has
    a holder and was renewed less than leaseDurationSeconds ago (a renewal in the future, from a
    clock ahead of ours, counts as just now)."""
    if lease is not None and not isinstance(lease, Mapping):
        raise AnsibleFilterError("lease_state: expected a Lease object, got %s" % type(lease).__name__)
    spec = (lease or {}).get("spec") or {}
    current = _parse_time(now, "lease_state") if now is not None else datetime.datetime.now(datetime.timezone.utc)
    holder = str(spec.get("holderIdentity") or "")
    duration = spec.get("leaseDurationSeconds")
    renew = spec.get("renewTime") or spec.get("acquireTime")
    age: Optional[float] = None
    if renew:
        age = (current - _parse_time(renew, "lease_state")).total_seconds()
    fresh = bool(holder) and age is not None and duration is not None and age < float(duration)
    if age is not None:
        age = round(age, 1)
    return {
        "exists": bool(lease),
        "holder": holder,
        "renewed": str(renew or ""),
        "age": age,
        "duration": duration,
        "fresh": fresh,
    }


def _proc_values(lines: Any) -> Dict[str, Dict[str, int]]:
    """``grep -H . /proc/sys/net/ipv4/conf/<iface>/<key>`` lines as {iface: {key: value}}."""
    if isinstance(lines, string_types):
        lines = lines.splitlines()
    values: Dict[str, Dict[str, int]] = {}
    for line in lines or []:
        match = _PROC_LINE.match(str(line).strip())
        if match:
            values.setdefault(match.group("iface"), {})[match.group("key")] = int(match.group("value"))
    return values


def arp_sysctl_problems(lines: Any, interfaces: Any = None, arp_ignore: Any = 1, arp_announce: Any = 2) -> List[str]:
    """What is wrong with the ARP settings a node reports, one phrase per setting.

    ``lines``: the output of ``grep -H . /proc/sys/net/ipv4/conf/{all,IFACE...}/{arp_ignore,arp_announce}``
    (a string or its lines). The kernel uses the larger of ``all`` and the interface's value, so
    that is what is judged, for ``all`` and each of ``interfaces``. arp_ignore must be at least
    ``arp_ignore`` and arp_announce exactly ``arp_announce``; None skips that setting."""
    if interfaces is None:
        interfaces = []
    if isinstance(interfaces, string_types) or not isinstance(interfaces, (list, tuple)):
        raise AnsibleFilterError("arp_sysctl_problems: interfaces must be a list of interface names")
    values = _proc_values(lines)
    wanted = {"arp_ignore": arp_ignore, "arp_announce": arp_announce}
    problems: List[str] = []
    for iface in ["all"] + [str(i) for i in interfaces if str(i) != "all"]:
        if iface not in values:
            problems.append(
                "interface %s does not exist" % iface if iface != "all" else "net.ipv4.conf.all cannot be read"
            )
            continue
        for key in ARP_KEYS:
            if wanted[key] is None:
                continue
            want = int(wanted[key])
            parts = [values.get("all", {}).get(key), values[iface].get(key)]
            known = [v for v in parts if v is not None]
            if not known:
                problems.append("%s.%s cannot be read" % (iface, key))
                continue
            effective = max(known)
            ok = effective >= want if key == "arp_ignore" else effective == want
            if not ok:
                where = "net.ipv4.conf.%s.%s" % (iface, key)
                if iface != "all":
                    where += " (in force: the larger of it and all's)"
                wanted_text = ("at least %d" if key == "arp_ignore" else "%d") % want
                problems.append("%s is %d, wanted %s" % (where, effective, wanted_text))
    return problems


def _split_host_port(text: str) -> Any:
    host, sep, port = text.rpartition(":")
    if not sep:
        return None
    host = host.strip("[]").split("%", 1)[0]
    return host, port


def udp_listening(lines: Any, address: Any, port: Any) -> bool:
    """Whether ``ss -Hnlu`` output shows a socket bound to address:port (or to a wildcard address
    of its family on that port)."""
    if isinstance(lines, string_types):
        lines = lines.splitlines()
    want_host = str(address).strip("[]")
    wildcards = {"*", "::"} if ":" in want_host else {"*", "::", "0.0.0.0"}  # noqa: S104 - read, not bound
    for line in lines or []:
        fields = str(line).split()
        # State Recv-Q Send-Q Local:Port Peer:Port; without -H the header line has no match
        if len(fields) < 5:
            continue
        local = _split_host_port(fields[3])
        if local is None or local[1] != str(port):
            continue
        if local[0] == want_host or local[0] in wildcards:
            return True
    return False


SS_USERS = re.compile(r'users:\(\("([^"]*)",pid=([0-9]+)')


def tcp_listeners(lines: Any, ports: Any, exclude: Any = None) -> List[Dict[str, Any]]:
    """The TCP listeners in ``ss -Hnltp`` output on any of ``ports``, except those bound to an
    address inside one of the ``exclude`` CIDRs: [{address, port, program, pid, text}]."""
    if isinstance(lines, string_types):
        lines = lines.splitlines()
    try:
        wanted = {int(p) for p in ports or []}
        networks = [ipaddress.ip_network(str(c), strict=False) for c in exclude or []]
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("tcp_listeners: %s" % exc) from None
    found = []
    for line in lines or []:
        fields = str(line).split()
        if len(fields) < 5:
            continue
        local = _split_host_port(fields[3])
        if local is None or not local[1].isdigit() or int(local[1]) not in wanted:
            continue
        try:
            bound = ipaddress.ip_address(local[0])
        except ValueError:
            bound = None  # "*", a wildcard
        if bound is not None and any(bound.version == n.version and bound in n for n in networks):
            continue
        users = SS_USERS.search(str(line))
        program, pid = (users.group(1), int(users.group(2))) if users else ("an unknown program", 0)
        where = "%s:%s" % (local[0], local[1])
        text = "%s (pid %d) listening on %s" % (program, pid, where) if pid else "%s listening on %s" % (program, where)
        found.append({"address": local[0], "port": int(local[1]), "program": program, "pid": pid, "text": text})
    return found


def kube_proxy_mode(configmap: Any) -> Dict[str, Any]:
    """kube-proxy's mode and ipvs.strictARP from its ConfigMap (key config.conf, kubeadm layout).

    Returns {mode, strict_arp, error}: mode is "none" without a ConfigMap, the platform default
    "iptables" when the mode is empty; error says why the configuration cannot be read."""
    if not configmap:
        return {"mode": "none", "strict_arp": False, "error": ""}
    if not isinstance(configmap, Mapping):
        raise AnsibleFilterError("kube_proxy_mode: expected a ConfigMap object, got %s" % type(configmap).__name__)
    data = configmap.get("data") or {}
    result: Dict[str, Any] = {"mode": "unknown", "strict_arp": False, "error": ""}
    if "config.conf" not in data:
        result["error"] = "it has no key config.conf (keys: %s)" % (", ".join(sorted(data)) or "none")
        return result
    try:
        config = yaml.safe_load(str(data["config.conf"]))
    except yaml.YAMLError as exc:
        result["error"] = "config.conf is not valid YAML (%s)" % str(exc).splitlines()[0]
        return result
    if not isinstance(config, Mapping) or config.get("kind") != "KubeProxyConfiguration":
        result["error"] = "config.conf is not a KubeProxyConfiguration"
        return result
    ipvs = config.get("ipvs") or {}
    result["mode"] = str(config.get("mode") or "iptables")
    result["strict_arp"] = bool(isinstance(ipvs, Mapping) and ipvs.get("strictARP") is True)
    return result


def _event_time(event: Mapping[str, Any]) -> datetime.datetime:
    series = event.get("series") or {}
    meta = event.get("metadata") or {}
    for value in (
        series.get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        meta.get("creationTimestamp"),
    ):
        if value:
            return _parse_time(value, "pending_service_events")
    return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def pending_service_events(services: Any, events: Any) -> List[Dict[str, Any]]:
    """Each Service (items with namespace, name and optionally uid) with ``event``: "reason:
    message" of the newest of ``events`` about it, "" when there is none. Events about an earlier
    Service of the same name (another uid) are not counted."""
    if not isinstance(services, (list, tuple)) or not isinstance(events or [], (list, tuple)):
        raise AnsibleFilterError("pending_service_events: expected a list of Services and a list of Events")
    by_service: Dict[Any, List[Any]] = {}
    for event in events or []:
        obj = event.get("involvedObject") or event.get("regarding") or {}
        if obj.get("kind", "Service") == "Service":
            by_service.setdefault((obj.get("namespace"), obj.get("name")), []).append((obj.get("uid"), event))
    out: List[Dict[str, Any]] = []
    for svc in services:
        uid = svc.get("uid")
        candidates = [
            event
            for event_uid, event in by_service.get((svc.get("namespace"), svc.get("name")), [])
            if not uid or not event_uid or event_uid == uid
        ]
        text = ""
        if candidates:
            event = max(candidates, key=_event_time)
            parts = [str(event.get("reason") or ""), str(event.get("message") or event.get("note") or "")]
            text = ": ".join(p for p in parts if p)
        out.append(dict(svc, event=text))
    return out


class FilterModule(object):
    """onprem.ingress doctor filters."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "lease_state": lease_state,
            "arp_sysctl_problems": arp_sysctl_problems,
            "udp_listening": udp_listening,
            "tcp_listeners": tcp_listeners,
            "kube_proxy_mode": kube_proxy_mode,
            "pending_service_events": pending_service_events,
        }
