"""The time a node stamps on the entries it proposes as leader, and reads with.

The rules (never backwards, a bounded rate, unanchored trust in the wall clock) live in the
pure ``raftkv.kv.clock.StampClock`` so that the simulator runs the same code on virtual
clocks; this module binds it to the process's clocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from raftkv.kv.clock import AGREE_MS, SLEW, StampClock

__all__ = ["AGREE_MS", "SLEW", "LeaderClock"]


class LeaderClock(StampClock):
    """``StampClock`` on this host's wall clock (``time.time``) and ``time.monotonic``."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(wall, mono)
