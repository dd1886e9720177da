# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the address work playbooks need: size, membership, expansion of small ranges.

They read pool addresses exactly as the controller does (the IPAM core in module_utils), so a
playbook's arithmetic and the cluster's allocations cannot disagree.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from typing import Any, Callable, Dict, List

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.module_utils.six import string_types

from ansible_collections.onprem.ingress.plugins.module_utils import ipam

# Expanding is for small ranges only (a handful of VIPs to template into a config); a /64 must
# never become a list. The cap can be raised per call, up to this hard limit.
EXPAND_DEFAULT_LIMIT = 1024
EXPAND_HARD_LIMIT = 65536


def _entries(value: Any, filter_name: str) -> List[ipam.AddressRange]:
    """Accept one CIDR/range string or a list of them; return the parsed ranges."""
    if isinstance(value, string_types):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise AnsibleFilterError(
            "%s: expected a CIDR, a first-last range or a list of them, got %s" % (filter_name, type(value).__name__)
        )
    ranges: List[ipam.AddressRange] = []
    for item in items:
        if not isinstance(item, string_types):
            raise AnsibleFilterError(
                "%s: %r is not a string; write a CIDR (192.0.2.0/28) or a range (192.0.2.10-192.0.2.20)"
                % (filter_name, item)
            )
        try:
            ranges.append(ipam.AddressRange.parse(str(item)))
        except ipam.IpamError as exc:
            raise AnsibleFilterError("%s: %s" % (filter_name, exc)) from None
    return ranges


def _require_netaddr(filter_name: str) -> None:
    if not ipam.HAS_NETADDR:
        raise AnsibleFilterError(
            "%s requires the Python library netaddr on the Ansible controller (pip install netaddr)" % filter_name
        )


def _flag(filter_name: str, option: str, value: Any) -> bool:
    """A true/false option as Ansible reads one (values from -e arrive as strings: 'false' is false)."""
    try:
        return bool(boolean(value, strict=True))
    except TypeError:
        raise AnsibleFilterError("%s: %s=%r is not true or false" % (filter_name, option, value)) from None


def range_size(value: Any, avoid_buggy_ips: Any = False) -> int:
    """Number of addresses in the given CIDRs/ranges (overlaps counted once)."""
    _require_netaddr("range_size")
    avoid_buggy_ips = _flag("range_size", "avoid_buggy_ips", avoid_buggy_ips)
    merged = _merge(_entries(value, "range_size"))
    total = 0
    for rng in merged:
        total += rng.size - (rng.buggy_count() if avoid_buggy_ips else 0)
    return total


def _merge(ranges: List[ipam.AddressRange]) -> List[ipam.AddressRange]:
    """Union of ranges per family, as sorted disjoint ranges."""
    out: List[ipam.AddressRange] = []
    for rng in sorted(ranges):
        if out and out[-1].version == rng.version and rng.first <= out[-1].last + 1:
            last = out[-1]
            out[-1] = ipam.AddressRange(last.version, last.first, max(last.last, rng.last))
        else:
            out.append(rng)
    return out


def range_contains(value: Any, address: str) -> bool:
    """True when ``address`` (a plain IP) lies in any of the given CIDRs/ranges."""
    _require_netaddr("range_contains")
    ranges = _entries(value, "range_contains")
    try:
        version, number = ipam.parse_address(address)
    except ipam.IpamError as exc:
        raise AnsibleFilterError("range_contains: %s; give a plain address such as 192.0.2.10" % exc) from None
    return any(rng.version == version and rng.contains(number) for rng in ranges)


def range_expand(value: Any, limit: Any = EXPAND_DEFAULT_LIMIT, avoid_buggy_ips: Any = False) -> List[str]:
    """Every address of small CIDRs/ranges, in order, as strings; refuses above ``limit``."""
    _require_netaddr("range_expand")
    avoid_buggy_ips = _flag("range_expand", "avoid_buggy_ips", avoid_buggy_ips)
    if isinstance(limit, string_types) and limit.strip().isdigit():
        limit = int(limit)  # as Ansible's own int conversion reads "16" from -e
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or limit > EXPAND_HARD_LIMIT:
        raise AnsibleFilterError("range_expand: limit must be an integer from 1 to %d" % EXPAND_HARD_LIMIT)
    merged = _merge(_entries(value, "range_expand"))
    count = sum(rng.size for rng in merged)
    if count > limit:
        raise AnsibleFilterError(
            "range_expand: %s holds %d addresses, more than the limit of %d; expand a smaller range, "
            "raise limit=, or use range_size/range_contains, which never expand" % (value, count, limit)
        )
    result: List[str] = []
    for rng in merged:
        for number in range(rng.first, rng.last + 1):
            if avoid_buggy_ips and rng.version == 4 and (number & 0xFF) in (0, 0xFF):
                continue
            result.append(ipam.address_text(rng.version, number))
    return result


def range_overlaps(value: Any, other: Any) -> List[str]:
    """The parts two sets of CIDRs/ranges have in common, as range strings (empty: disjoint)."""
    _require_netaddr("range_overlaps")
    left = _merge(_entries(value, "range_overlaps"))
    right = _merge(_entries(other, "range_overlaps"))
    common: List[str] = []
    for a in left:
        for b in right:
            part = a.overlap(b)
            if part is not None:
                common.append(str(part))
    return common


class FilterModule(object):
    """onprem.ingress IP range filters."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "range_size": range_size,
            "range_contains": range_contains,
            "range_expand": range_expand,
            "range_overlaps": range_overlaps,
        }
