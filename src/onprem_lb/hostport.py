"""HOST:PORT, the one way the engine reads and writes it (options, the heartbeat annotation).

IPv6 addresses are written in brackets ([2001:db8::1]:7946), as URLs and Go's net.JoinHostPort do.
"""

from __future__ import annotations

import ipaddress
import re

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
)
EXAMPLE = "e.g. 192.0.2.11:7946, [2001:db8::11]:7946"


def parse(text: str) -> tuple[str, int]:
    """(host, port) from HOST:PORT; ValueError says what is wrong with ``text``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT ({EXAMPLE})")
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if bracketed or not HOSTNAME.fullmatch(bare):
            raise ValueError(f"{text!r}: {host!r} is not an IP address or host name") from None
        return bare, int(port)
    if address.version == 6 and not bracketed:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [{bare}]:{port}")
    return bare, int(port)


def join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
