"""A bound on password guessing per source address: failed AUTHs drain a token bucket.

``MAX_AUTH_FAILURES`` closes a connection after 10 failures, but reconnecting is cheap:
one process made 13,390 guesses a second against a node (attack14). So each address has
``BURST`` failures, refilled at ``RATE`` a second; an address with none left is refused
*before* its password is checked (or a right guess would still tell), with a clear error,
and the connection closes. A user who mistyped a few times is never refused; a guesser
gets ``RATE`` tries a second. Redis has no such bound.

Keyed by the whole address (``auth_source``), IPv6 too: a /64 is a whole LAN or cloud
subnet, and one neighbour's guesses must not refuse the others their right password
(attack16). But one machine may hold a whole /64 and take a new address every ``BURST``
failures (attack17: 409,600 guesses at once, 40,960 a second after), so an IPv6 address's
/64 has a bucket too, ``SUBNET_FACTOR`` times the burst and the rate, and a try needs a
token of both. A neighbour uses at most ``BURST`` of its subnet's ``SUBNET_FACTOR *
BURST`` before its own address is refused, so it alone never locks the subnet out; a
guesser cycling addresses gets the subnet's 1,000, then 100 a second. IPv4 (and
IPv4-mapped IPv6) stays per address: NAT puts many users behind one, and a /24 is not one
machine.

An entry (address or /64) with tries used up is never forgotten while the table is full
(a guesser owning many addresses got a fresh burst by filling it: attack16); only entries
refilled to their burst are, losslessly, the one refilled first, found through a heap of
the times the entries refill (scanning all 4,096 addresses on each failed AUTH while the
table was full cost O(n) each: tidy17). Past ``MAX_SOURCES`` entries with tries used,
new addresses (and subnets) share one more bucket (``OVERFLOW``): such a guesser gets
``RATE`` a second more in all, and new addresses may wait while it lasts; known ones are
not touched.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable

import attrs

BURST = 100  # failed AUTHs an address may make at once
RATE = 10.0  # failures a second an address gets back
SUBNET_FACTOR = 10  # an IPv6 /64's bucket: this many times an address's burst and rate
SUBNET_PREFIX = 64  # the IPv6 prefix one machine may own (SLAAC, a cloud VM's prefix)
MAX_SOURCES = 4096
OVERFLOW = "*"  # the bucket of new addresses while the table is full of used ones
_EPSILON = 1e-9  # (a clock's float steps: 0.1 s at 10 a second is 0.9999999999999 tokens)


def auth_source(addr: str) -> str:
    """The address a connection's failed AUTHs count against: its host without the port
    (``[v6]:port`` or ``v4:port``) as ``host_address`` gives it."""
    return host_address(addr.rpartition(":")[0].strip("[]") or addr)


def host_address(host: str) -> str:
    """``host`` in one spelling: an IP address's canonical text (an IPv4-mapped IPv6
    address as its IPv4 address, a zone dropped); anything else as it is."""
    ip = _ip(host)
    return host if ip is None else str(ip)


def subnet_of(source: str) -> str | None:
    """The IPv6 /64 (``2001:db8::/64``) whose bucket ``source`` also drains, or None (IPv4,
    a mapped IPv4, not an address)."""
    ip = _ip(source) if ":" in source else None
    return _subnet(ip) if isinstance(ip, ipaddress.IPv6Address) else None


def machine_of(host: str) -> str:
    """What one machine at ``host`` is known by: an IPv6 address's /64 (one machine may
    own all of it, and take a new address per connection), else ``host_address(host)``."""
    ip = _ip(host)
    if isinstance(ip, ipaddress.IPv6Address):
        return _subnet(ip)
    return host if ip is None else str(ip)


def _subnet(ip: ipaddress.IPv6Address) -> str:
    return str(ipaddress.IPv6Network((ip, SUBNET_PREFIX), strict=False))


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells (an IPv4-mapped one as IPv4), None if not one."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@attrs.define
class FailedAuths:
    """Per-address (and per IPv6 /64) tokens of failed authentication (``clock``:
    seconds, monotonic; ``burst`` and ``rate`` are an address's, a /64 has
    ``SUBNET_FACTOR`` times both)."""

    clock: Callable[[], float]
    burst: int = BURST
    rate: float = RATE
    max_sources: int = MAX_SOURCES
    # address -> (tokens, when counted)
    _tokens: dict[str, tuple[float, float]] = attrs.Factory(dict)
    # (when it is refilled to the burst, address) for every address in ``_tokens`` but
    # OVERFLOW, and stale pairs of addresses counted again since or forgotten: dropped
    # when met at the top, and all at once when they outnumber the live ones
    _refills: list[tuple[float, str]] = attrs.Factory(list)

    def allowed(self, source: str) -> bool:
        """May ``source`` try a password now (has it, and its /64, a failure left)?"""
        return all(self._left(key) >= 1.0 - _EPSILON for key in self._keys(source))

    def failed(self, source: str) -> None:
        """Count one failed AUTH of ``source`` (and of its /64)."""
        counted: set[str] = set()
        for name in (source, subnet_of(source)):
            if name is None:
                continue
            key = self._key(name)
            if key in counted:  # (one OVERFLOW token a failure at most)
                continue
            counted.add(key)
            self._count(key)

    def retry_after(self, source: str) -> float:
        """Seconds until ``source`` has a try again (0 if it has one)."""
        waits = [0.0]
        for key in self._keys(source):
            missing = 1.0 - self._left(key)
            if missing > _EPSILON:
                waits.append(missing / self._rate(key))
        return max(waits)

    def _count(self, key: str) -> None:
        left = self._left(key)
        self._tokens.pop(key, None)
        if key != OVERFLOW and len(self._tokens) >= self.max_sources:
            self._forget_one_refilled()
        tokens, now = max(0.0, left - 1.0), self.clock()
        self._tokens[key] = (tokens, now)
        if key != OVERFLOW:
            heapq.heappush(self._refills, (self._refill_time(key, tokens, now), key))
            if len(self._refills) > 2 * len(self._tokens) + 16:
                self._compact()

    def _keys(self, source: str) -> list[str]:
        """The buckets a try of ``source`` needs: its own, and its /64's for IPv6."""
        subnet = subnet_of(source)
        keys = [self._key(source)]
        if subnet is not None:
            keys.append(self._key(subnet))
        return keys

    def _burst(self, key: str) -> float:
        return float(self.burst * (SUBNET_FACTOR if "/" in key else 1))

    def _rate(self, key: str) -> float:
        return self.rate * (SUBNET_FACTOR if "/" in key else 1)

    def _key(self, source: str) -> str:
        """``source``, or OVERFLOW for an unknown one while the table is full of used ones."""
        if source in self._tokens or len(self._tokens) < self.max_sources:
            return source
        return source if self._refilled() is not None else OVERFLOW

    def _refilled(self) -> str | None:
        """The address refilled to the burst first, if one is (forgetting it loses
        nothing): the top of ``_refills`` once its stale pairs are dropped."""
        refills = self._refills
        while refills:
            when, source = refills[0]
            known = self._tokens.get(source)
            if known is None or when != self._refill_time(source, *known):
                heapq.heappop(refills)  # forgotten, or counted again since
                continue
            return source if self._left(source) >= self._burst(source) - _EPSILON else None
        return None

    def _refill_time(self, key: str, tokens: float, then: float) -> float:
        return then + (self._burst(key) - tokens) / self._rate(key)

    def _compact(self) -> None:
        """``_refills`` with its live pairs only (O(n), once per n failures at least)."""
        self._refills = [(self._refill_time(source, *known), source)
                         for source, known in self._tokens.items() if source != OVERFLOW]
        heapq.heapify(self._refills)

    def _forget_one_refilled(self) -> None:
        source = self._refilled()
        if source is not None:
            del self._tokens[source]
            heapq.heappop(self._refills)  # (its pair: the top)

    def _left(self, source: str) -> float:
        known = self._tokens.get(source)
        if known is None:
            return self._burst(source)
        tokens, then = known
        return min(self._burst(source), tokens + (self.clock() - then) * self._rate(source))
