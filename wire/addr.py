"""``HOST:PORT`` addresses: the one parser for every address a node is given or told.

Peer addresses reach a node from flags, from ``RAFT ADDNODE`` and from committed CONFIG
entries, and end up in ``getaddrinfo``. Anything that parser or the resolver would choke on
must be refused here, before it is proposed: a host that is not a valid hostname or IP
literal, that IDNA cannot encode (``a..b`` has an empty label: the resolver raises
``UnicodeError``), or a port outside 1-65535. Port 0 is allowed only for addresses we
listen on (``listen=True``: the OS picks the port).

Accepted hosts: an IPv4 literal, an IPv6 literal in brackets (``[::1]:7001``), or a
hostname of 1-63 character labels (letters, digits, ``-``, and ``_`` which container
engines use in names), 253 characters at most, internationalised names in their IDNA 2008
form (the encoding trio uses before it resolves).
"""

from __future__ import annotations

import ipaddress
import re

import idna

MAX_PORT = 65535
MAX_HOSTNAME = 253

_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_NUMERIC = re.compile(r"[0-9.]+")


def parse_addr(text: str, *, listen: bool = False) -> tuple[str, int]:
    """``host:port`` -> (host, port); ``[::1]:7001`` for IPv6. ValueError says why not."""
    if not isinstance(text, str):
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not _PORT.fullmatch(port):
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    number = int(port)
    if not (0 if listen else 1) <= number <= MAX_PORT:
        raise ValueError(f"port {number} is out of range 1-{MAX_PORT} in {text!r}")
    return check_host(host, text), number


def check_host(host: str, text: str = "") -> str:
    """``host`` without IPv6 brackets if it is a valid host, else ValueError."""
    where = text or host
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"invalid IPv6 address in {where!r}") from None
    if ":" in host:
        raise ValueError(f"an IPv6 host must be in brackets ([::1]:7001), got {where!r}")
    if _NUMERIC.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"invalid IPv4 address in {where!r}") from None
    try:
        ascii_host = host if host.isascii() else idna.encode(host, uts46=True).decode()
    except idna.IDNAError as exc:
        raise ValueError(f"host name not IDNA-encodable in {where!r}: {exc}") from None
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if len(name) > MAX_HOSTNAME or not all(_LABEL.fullmatch(p) for p in name.split(".")):
        raise ValueError(f"invalid host name in {where!r}")
    return host
