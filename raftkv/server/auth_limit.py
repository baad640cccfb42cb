"""A bound on password guessing per source address: failed AUTHs drain a token bucket.

``MAX_AUTH_FAILURES`` closes a connection after 10 failures, but reconnecting is cheap:
one process made 13,390 guesses a second against a node (attack14). So each source
(``client_port.source_key``: an IPv4 address, an IPv6 /64) has ``BURST`` failures, refilled
at ``RATE`` a second; a source with none left is refused *before* its password is checked
(or a right guess would still tell), with a clear error, and the connection closes. A user
who mistyped a few times is never refused; a guesser gets ``RATE`` tries a second.
Redis has no such bound (``requirepass`` brute force is its documented weak spot).

The table is bounded (``MAX_SOURCES``, the stalest forgotten first), so a spoofed spread of
sources costs memory it cannot grow; forgetting a source only gives it a fresh burst.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

BURST = 100  # failed AUTHs a source may make at once
RATE = 10.0  # failures a second a source gets back
MAX_SOURCES = 4096
_EPSILON = 1e-9  # (a clock's float steps: 0.1 s at 10 a second is 0.9999999999999 tokens)


@attrs.define
class FailedAuths:
    """Per-source tokens of failed authentication (``clock``: seconds, monotonic)."""

    clock: Callable[[], float]
    burst: int = BURST
    rate: float = RATE
    max_sources: int = MAX_SOURCES
    # source -> (tokens, when counted); insertion order is staleness (moved on each use)
    _tokens: dict[str, tuple[float, float]] = attrs.Factory(dict)

    def allowed(self, source: str) -> bool:
        """May ``source`` try a password now (has it a failure left)?"""
        return self._left(source) >= 1.0 - _EPSILON

    def failed(self, source: str) -> None:
        """Count one failed AUTH of ``source``."""
        left = self._left(source)
        self._tokens.pop(source, None)
        if len(self._tokens) >= self.max_sources:
            del self._tokens[next(iter(self._tokens))]  # the stalest
        self._tokens[source] = (max(0.0, left - 1.0), self.clock())

    def retry_after(self, source: str) -> float:
        """Seconds until ``source`` has a try again (0 if it has one)."""
        missing = 1.0 - self._left(source)
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def _left(self, source: str) -> float:
        known = self._tokens.get(source)
        if known is None:
            return float(self.burst)
        tokens, then = known
        return min(float(self.burst), tokens + (self.clock() - then) * self.rate)
