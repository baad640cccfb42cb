"""A watch on the event loop: how late a short sleep wakes up.

Everything a node does shares one trio loop; a command or a stall that holds it for longer
than an election timeout costs the leadership. The monitor sleeps ``interval`` seconds in a
loop and records how much later than asked it woke (the lag); it keeps the last and largest
figures for INFO (``loop_lag_last_ms``, ``loop_lag_max_ms``) and logs a rate-limited warning
when a lag passes ``warn_ms``.
"""

from __future__ import annotations

import logging

import trio

from raftkv.node.log_throttle import LogThrottle

log = logging.getLogger("raftkv.server")


class LoopLagMonitor:
    def __init__(self, interval: float = 0.01, warn_ms: float = 50.0,
                 log_every: float = 10.0) -> None:
        self.interval = interval
        self.warn_ms = warn_ms
        self.last_ms = 0.0
        self.max_ms = 0.0
        self.stalls = 0  # lags over warn_ms
        self._throttle = LogThrottle(log, log_every)

    def record(self, lag_ms: float) -> None:
        self.last_ms = lag_ms
        if lag_ms > self.max_ms:
            self.max_ms = lag_ms
        if lag_ms > self.warn_ms:
            self.stalls += 1
            self._throttle.log("loop-lag", logging.WARNING, "event loop stalled",
                               lag_ms=round(lag_ms, 1), max_ms=round(self.max_ms, 1))

    def reset(self) -> None:
        self.last_ms = self.max_ms = 0.0
        self.stalls = 0

    def info(self) -> dict[str, float | int]:
        return {"loop_lag_last_ms": round(self.last_ms, 3),
                "loop_lag_max_ms": round(self.max_ms, 3),
                "loop_lag_stalls": self.stalls}

    async def run(self) -> None:
        while True:
            asked = trio.current_time() + self.interval
            await trio.sleep(self.interval)
            self.record(max(0.0, trio.current_time() - asked) * 1000)
