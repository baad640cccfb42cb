"""Exponential back-off with jitter: re-dialling a peer, retrying a join or a snapshot,
a client retrying a command.

A neutral helper (no trio, no sockets), so the runtime, client/ and chaos/ share it
without reaching into each other. Jitter keeps the nodes of a cluster that lost a peer at
the same moment from re-dialling it in lock-step; the random source is passed in so a
seeded run reproduces its delays.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays ``base * 2**(n-1)`` capped at ``cap``, each scaled by a factor in [0.5, 1].

    ``failures`` counts consecutive failures; zero means "try again at once", so a link
    that was up reconnects immediately and only repeated failures wait.
    """

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.rng = rng
        self.failures = 0

    def delay(self) -> float:
        """Seconds to wait before the next attempt."""
        if self.failures == 0:
            return 0.0
        # Cap the exponent too, so a long outage cannot overflow the float.
        exp = min(self.failures - 1, 62)
        return min(self.cap, self.base * 2.0**exp) * self.rng.uniform(0.5, 1.0)

    def failed(self) -> None:
        self.failures += 1

    def reset(self) -> None:
        self.failures = 0
