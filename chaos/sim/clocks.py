"""Every simulated node's wall and monotonic clocks, on the cluster's virtual time.

One unit of virtual time is one millisecond (a tick is ``TICK`` units, the runtime's
default 10 ms tick). Node i's wall clock reads ``EPOCH_MS + now + offset(i)``: a fixed skew
drawn in [-skew, +skew], plus any jumps (an operator or NTP stepping the clock) made while
it runs. Its monotonic clock starts anywhere and never jumps. A restarted node comes back
with its skew only: a process restarted on a clock that jumped cannot tell the jump from
downtime (``StampClock``'s documented limit), so the simulator checks jumps on live nodes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from raftkv.kv.clock import StampClock

EPOCH_MS = 1_767_225_600_000  # 2026-01-01: stamps look like real ones


class NodeClocks:
    """The clocks of every node id (new ones get their skew drawn on first use)."""

    def __init__(self, rng: random.Random, skew_ms: int,
                 now: Callable[[], int] = lambda: 0) -> None:
        self.rng = rng
        self.skew_ms = skew_ms
        self.now = now  # the virtual time (ms); the cluster sets it to its own
        self._base: dict[int, int] = {}
        self._jump: dict[int, int] = {}
        self.first_jump: int | None = None  # virtual time of the first jump, if any
        self.jumps = 0

    def offset(self, node: int) -> int:
        if node not in self._base:
            self._base[node] = self.rng.randint(-self.skew_ms, self.skew_ms)
        return self._base[node] + self._jump.get(node, 0)

    def spread(self) -> int:
        """The largest difference between two nodes' skews (jumps aside)."""
        base = self._base.values()
        return max(base) - min(base) if base else 0

    def clock(self, node: int) -> StampClock:
        """A fresh process's stamp clock on node ``node``'s clocks (its jumps undone)."""
        self._jump.pop(node, None)
        self.offset(node)
        start = self.rng.randrange(1_000_000)  # the monotonic clock's arbitrary origin (ms)

        def wall() -> float:
            return (EPOCH_MS + self.now() + self.offset(node)) / 1000

        def mono() -> float:
            return (start + self.now()) / 1000

        return StampClock(wall, mono)

    def jump(self, node: int, ms: int) -> None:
        self._jump[node] = self._jump.get(node, 0) + ms
        self.jumps += 1
        if self.first_jump is None:
            self.first_jump = self.now()
