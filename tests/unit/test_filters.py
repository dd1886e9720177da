"""onprem.ingress IP range filters: table tests on the functions, and one run through Ansible's Jinja."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.ingress.plugins.filter import ip_ranges

from tests.support.ansible import run_local_playbook

PLAYBOOK = Path(__file__).parent / "playbooks" / "filters.yml"


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        ("192.0.2.0/28", {}, 16),
        ("192.0.2.10-192.0.2.20", {}, 11),
        (["192.0.2.0/28", "192.0.2.8-192.0.2.31"], {}, 32),  # overlap counted once
        (["198.51.100.10-198.51.100.20", "2001:db8::/64"], {}, 11 + 2**64),
        ("203.0.113.0/24", {"avoid_buggy_ips": True}, 254),
        ("192.0.2.0-192.0.3.255", {"avoid_buggy_ips": True}, 512 - 4),
        ("2001:db8::/64", {"avoid_buggy_ips": True}, 2**64),  # IPv6 has no "buggy" addresses
        ([], {}, 0),
    ],
)
def test_range_size(value: Any, kwargs: dict[str, Any], expected: int) -> None:
    assert ip_ranges.range_size(value, **kwargs) == expected


@pytest.mark.parametrize(
    ("value", "address", "expected"),
    [
        ("192.0.2.0/28", "192.0.2.15", True),
        ("192.0.2.0/28", "192.0.2.16", False),
        (["198.51.100.10-198.51.100.20"], "198.51.100.10", True),
        (["198.51.100.10-198.51.100.20"], "198.51.100.21", False),
        (["192.0.2.0/28", "2001:db8::/64"], "2001:db8::ffff:ffff:ffff:ffff", True),
        (["192.0.2.0/28"], "::ffff:192.0.2.1", False),  # a v4-mapped v6 address is IPv6
        ("2001:db8::/64", "2001:db8:0:1::", False),
    ],
)
def test_range_contains(value: Any, address: str, expected: bool) -> None:
    assert ip_ranges.range_contains(value, address) is expected


def test_range_expand_orders_merges_and_skips_buggy() -> None:
    assert ip_ranges.range_expand("192.0.2.10-192.0.2.12") == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert ip_ranges.range_expand(["2001:db8::1-2001:db8::2", "192.0.2.254/31", "192.0.2.254-192.0.3.0"]) == [
        "192.0.2.254",
        "192.0.2.255",
        "192.0.3.0",
        "2001:db8::1",
        "2001:db8::2",
    ]
    assert ip_ranges.range_expand("192.0.2.254-192.0.3.1", avoid_buggy_ips=True) == ["192.0.2.254", "192.0.3.1"]


def test_range_overlaps() -> None:
    assert ip_ranges.range_overlaps(["192.0.2.0/24"], ["192.0.2.128/25", "2001:db8::/64"]) == ["192.0.2.128/25"]
    assert ip_ranges.range_overlaps("192.0.2.10-192.0.2.20", "192.0.2.15-192.0.2.30") == ["192.0.2.15-192.0.2.20"]
    assert ip_ranges.range_overlaps("192.0.2.0/24", "198.51.100.0/24") == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ip_ranges.range_expand("2001:db8::/64"), "18446744073709551616 addresses, more than the limit"),
        (lambda: ip_ranges.range_expand("192.0.2.0/24", limit=10), "256 addresses, more than the limit of 10"),
        (lambda: ip_ranges.range_expand("192.0.2.0/24", limit=0), "limit must be an integer"),
        (lambda: ip_ranges.range_size("192.0.2.20-192.0.2.10"), "ends before it starts"),
        (lambda: ip_ranges.range_size(42), "expected a CIDR, a first-last range or a list"),
        (lambda: ip_ranges.range_size([None]), "is not a string"),
        (lambda: ip_ranges.range_contains("192.0.2.0/24", "192.0.2.1/32"), "give a plain address"),
        (lambda: ip_ranges.range_overlaps("192.0.2.0/24", "nonsense"), "neither a CIDR"),
    ],
)
def test_bad_input_is_a_clear_filter_error(call: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        call()


def test_filters_through_ansible() -> None:
    """The collection's filters resolve by FQCN in a real playbook and give the same answers."""
    tasks = run_local_playbook(PLAYBOOK)["plays"][0]["tasks"]
    results = {t["task"]["name"]: t["hosts"]["localhost"] for t in tasks}
    assert results["Compute"]["ansible_facts"]["answers"] == {
        "size": 3 + 2**64,
        "inside": True,
        "outside": False,
        "expanded": ["192.0.2.10", "192.0.2.11", "192.0.2.12"],
        "overlap": ["192.0.2.10-192.0.2.12"],
    }
    assert results["Refuse a /64 expansion"]["failed"] is True
    assert "more than the limit" in results["Refuse a /64 expansion"]["msg"]
