"""hostport.py: HOST:PORT read and written one way."""

from __future__ import annotations

import pytest

from onprem_lb import hostport


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("192.0.2.1:7946", ("192.0.2.1", 7946)), ("[2001:db8::1]:80", ("2001:db8::1", 80)), ("node-1:1", ("node-1", 1))],
)
def test_parse_and_join_round_trip(text: str, parsed: tuple[str, int]) -> None:
    assert hostport.parse(text) == parsed
    assert hostport.join(*parsed) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("192.0.2.1", "is not HOST:PORT"),
        (":80", "is not HOST:PORT"),
        ("192.0.2.1:0", "the port must be a number from 1 to 65535"),
        ("192.0.2.1:x", "the port must be"),
        ("2001:db8::1:80", "write an IPv6 address in brackets, [2001:db8::1]:80"),
        ("[node]:80", "is not an IP address or host name"),
        ("bad_host:80", "is not an IP address or host name"),
    ],
)
def test_parse_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=r".*") as caught:
        hostport.parse(text)
    assert says in str(caught.value)
