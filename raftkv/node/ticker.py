"""The ticker: logical time for the consensus core, and the liveness signal of the loop.

Ticks fall on a grid of ``tick_ms`` from the start, one per grid point at most: a wake that
comes late still ticks at the next point, so the lateness of each wake no longer adds up
(with a sleep per tick, a loop that woke each 10 ms sleep 20 ms late ticked every 30 ms,
and a leader's 5-tick heartbeat came every 150 ms, a follower's shortest election
timeout: issue 15's stability run). Not caught up after a stall either: the points missed
are skipped, so a busy node still slows its clocks instead of bursting into a spurious
election, and a node never ticks more often than the wall clock allows.

``next_tick`` lets /livez wait for the next one (through the event loop, so an answer
proves the loop turns); it exists from the node's construction, so a probe during startup
waits instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from raftkv.raft import RaftCore


class Ticker:
    def __init__(self) -> None:
        self.ticks = 0
        self._tick_event: trio.Event | None = None

    async def run(self, core: RaftCore, tick_ms: float, wake: Callable[[], None]) -> None:
        interval = tick_ms / 1000
        start = trio.current_time()
        n = 0  # the grid point of the last tick
        while True:
            # The next point after the last tick, or the first still ahead after a stall.
            n = max(n + 1, int((trio.current_time() - start) / interval) + 1)
            await trio.sleep_until(start + n * interval)
            core.tick()
            self.ticks += 1
            if self._tick_event is not None:
                self._tick_event.set()
                self._tick_event = None
            wake()

    async def next_tick(self) -> int:
        """Wait for the ticker's next tick (liveness: the loop and the ticker turn)."""
        if self._tick_event is None:
            self._tick_event = trio.Event()
        await self._tick_event.wait()
        return self.ticks
