"""The ticker: logical time for the consensus core, and the liveness signal of the loop.

Ticks are spaced by a sleep, not caught up after a stall: a busy node slows its clocks
instead of bursting into a spurious election. Only a leader's heartbeat timer counts the
intervals a tick came late (``RaftCore.heartbeat_late``): the followers' clocks do not slow
with the leader's. ``next_tick`` lets /livez wait for the next
one (through the event loop, so an answer proves the loop turns); it exists from the
node's construction, so a probe during startup waits instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from raftkv.raft import RaftCore


class Ticker:
    def __init__(self) -> None:
        self.ticks = 0
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
