"""The ticker: logical time for the consensus core, and the liveness signal of the loop.

Ticks are spaced by a sleep, not caught up after a stall: a busy node slows its clocks
instead of bursting into a spurious election. Only a leader's heartbeat timer counts the
intervals a tick came late (``RaftCore.heartbeat_late``): the followers' clocks do not slow
with the leader's. ``next_tick`` lets /livez wait for the next
one (through the event loop, so an answer proves the loop turns); it exists from the
node's construction, so a probe during startup waits instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from raftkv.raft import RaftCore


class Ticker:
    def __init__(self) -> None:
        self.ticks = 0
        self.ticked_at = -math.inf  # trio.current_time() of the last tick
        self._tick_event: trio.Event | None = None
        self.hold = False  # the core gets no ticks (a founder asking whether it served)

    async def run(self, core: RaftCore, tick_ms: float, wake: Callable[[], None]) -> None:
        interval = tick_ms / 1000
        while True:
            asleep = trio.current_time()
            await trio.sleep(interval)
            if not self.hold:
                # Late by whole intervals: a leader's heartbeat is still sent on time
                # (RaftCore.heartbeat_late); nothing else is caught up.
                late = int((trio.current_time() - asleep) / interval) - 1
                if late > 0:
                    core.heartbeat_late(late)
                core.tick()
            self.ticks += 1
            self.ticked_at = trio.current_time()
            if self._tick_event is not None:
                self._tick_event.set()
                self._tick_event = None
            wake()

    def ticked_within(self, seconds: float) -> int | None:
        """The tick count if the ticker ticked within the last ``seconds``, else None."""
        return self.ticks if trio.current_time() - self.ticked_at <= seconds else None

    async def next_tick(self) -> int:
        """Wait for the ticker's next tick (liveness: the loop and the ticker turn)."""
        if self._tick_event is None:
            self._tick_event = trio.Event()
        await self._tick_event.wait()
        return self.ticks
