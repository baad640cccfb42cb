"""A bound on password guessing per source address: failed AUTHs drain a token bucket.

``MAX_AUTH_FAILURES`` closes a connection after 10 failures, but reconnecting is cheap:
one process made 13,390 guesses a second against a node (attack14). So each address has
``BURST`` failures, refilled at ``RATE`` a second; an address with none left is refused
*before* its password is checked (or a right guess would still tell), with a clear error,
and the connection closes. A user who mistyped a few times is never refused; a guesser
gets ``RATE`` tries a second. Redis has no such bound.

Keyed by the whole address (``auth_source``), IPv6 too: a /64 is a whole LAN or cloud
subnet, and one neighbour's guesses must not refuse the others their right password
(attack16). An address with tries used up is never forgotten while the table is full (a
guesser owning many addresses got a fresh burst by filling it: attack16); only entries
refilled to the burst are, losslessly, the one refilled first, found through a heap of the
times the entries refill (scanning all 4,096 addresses on each failed AUTH while the
table was full cost O(n) each: tidy17). Past ``MAX_SOURCES`` addresses with tries used,
new addresses share one more bucket (``OVERFLOW``): such a guesser gets ``RATE`` a second
more in all, and new addresses may wait while it lasts; known ones are not touched.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable

import attrs

BURST = 100  # failed AUTHs an address may make at once
RATE = 10.0  # failures a second an address gets back
MAX_SOURCES = 4096
OVERFLOW = "*"  # the bucket of new addresses while the table is full of used ones
_EPSILON = 1e-9  # (a clock's float steps: 0.1 s at 10 a second is 0.9999999999999 tokens)


def auth_source(addr: str) -> str:
    """The address a connection's failed AUTHs count against: its host without the port
    (``[v6]:port`` or ``v4:port``), an IPv4-mapped IPv6 address as its IPv4 address."""
    host = addr.rpartition(":")[0].strip("[]") or addr
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@attrs.define
class FailedAuths:
    """Per-address tokens of failed authentication (``clock``: seconds, monotonic)."""

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
        """May ``source`` try a password now (has it a failure left)?"""
        return self._left(self._key(source)) >= 1.0 - _EPSILON

    def failed(self, source: str) -> None:
        """Count one failed AUTH of ``source``."""
        key = self._key(source)
        left = self._left(key)
        self._tokens.pop(key, None)
        if key != OVERFLOW and len(self._tokens) >= self.max_sources:
            self._forget_one_refilled()
        tokens, now = max(0.0, left - 1.0), self.clock()
        self._tokens[key] = (tokens, now)
        if key != OVERFLOW:
            heapq.heappush(self._refills, (self._refill_time(tokens, now), key))
            if len(self._refills) > 2 * len(self._tokens) + 16:
                self._compact()

    def retry_after(self, source: str) -> float:
        """Seconds until ``source`` has a try again (0 if it has one)."""
        missing = 1.0 - self._left(self._key(source))
        return 0.0 if missing <= _EPSILON else missing / self.rate

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
            if known is None or when != self._refill_time(*known):
                heapq.heappop(refills)  # forgotten, or counted again since
                continue
            return source if self._left(source) >= self.burst - _EPSILON else None
        return None

    def _refill_time(self, tokens: float, then: float) -> float:
        return then + (self.burst - tokens) / self.rate

    def _compact(self) -> None:
        """``_refills`` with its live pairs only (O(n), once per n failures at least)."""
        self._refills = [(self._refill_time(*known), source)
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
            return float(self.burst)
        tokens, then = known
        return min(float(self.burst), tokens + (self.clock() - then) * self.rate)
