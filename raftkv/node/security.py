"""Which listen addresses reach beyond this machine (for protected mode in ``serve``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from wire.addr import parse_addr

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and the usual localhost names; anything else (0.0.0.0, a LAN IP,
    a name that may resolve anywhere) counts as exposed."""
    host = host.strip("[]")
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposed_addresses(addrs: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (flag, address) pairs whose host is not loopback."""
    return [(flag, addr) for flag, addr in addrs.items()
            if not is_loopback_host(parse_addr(addr)[0])]
