"""A watch on the garbage collector's full passes, which run on the event loop.

CPython's full (generation 2) collection walks every tracked object in one go, on whichever
thread allocated last: here nearly always the trio loop. A node holding a large tracked
population pays it as a loop stall, and a stall longer than a heartbeat interval plus an
election timeout can cost the leadership (the feed keeps its retained changes as untracked
plain tuples for this reason: raftkv.kv.feed). The loop-lag monitor sees such a stall; this
says when the collector caused it: INFO's ``gc_full_collections``, ``gc_full_last_ms`` and
``gc_full_max_ms``, and a rate-limited warning when one pass takes over ``warn_ms``.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import trio

from raftkv.node.log_throttle import LogThrottle

log = logging.getLogger("raftkv.server")


class GcWatch:
    def __init__(self, warn_ms: float = 50.0, log_every: float = 10.0) -> None:
        self.warn_ms = warn_ms
        self.full = 0  # full collections seen
        self.last_ms = 0.0
        self.max_ms = 0.0
        self._started = 0.0
        self._throttle = LogThrottle(log, log_every)

    def observe(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` entry: times the passes over generation 2 only."""
        if info.get("generation") != 2:
            return
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        ms = (now - self._started) * 1000
        self.full += 1
        self.last_ms = ms
        if ms > self.max_ms:
            self.max_ms = ms
        if ms > self.warn_ms:
            self._throttle.log("gc-full", logging.WARNING, "full garbage collection held the loop",
                               ms=round(ms, 1), collected=info.get("collected", 0))

    def info(self) -> dict[str, float | int]:
        return {"gc_full_collections": self.full, "gc_full_last_ms": round(self.last_ms, 3),
                "gc_full_max_ms": round(self.max_ms, 3)}

    def reset(self) -> None:
        self.last_ms = self.max_ms = 0.0

    async def run(self) -> None:
        """Watch while this task runs (the node's lifetime)."""
        gc.callbacks.append(self.observe)
        try:
            await trio.sleep_forever()
        finally:
            gc.callbacks.remove(self.observe)
