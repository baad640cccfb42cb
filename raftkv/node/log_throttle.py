"""Rate-limited logging, so a flapping or hostile peer cannot flood the log.

Each key (e.g. ``("refused", "10.0.0.7")``) logs at most once per ``interval`` seconds;
the next line that gets through says how many were suppressed in between. With
``max_lines``, all keys together log at most that many lines per ``interval`` (one
attacker may own many keys: the /64s of a /48); the first line of the next interval says
how many others were dropped (``others_suppressed``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any


class LogThrottle:
    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
        max_lines: int | None = None,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self.max_lines = max_lines
        # The global cap's window: when it began, lines logged in it, lines dropped by it
        # (in it and since the last line that reported them).
        self._window = (-float("inf"), 0)
        self._dropped = 0
        # key -> (time of the last line logged, lines suppressed since)
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def log(self, key: Hashable, level: int, name: str, **fields: Any) -> bool:
        """Log ``name`` unless ``key`` logged within ``interval``; True if it was logged."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if self.max_lines is not None:
            start, lines = self._window
            if now - start >= self.interval:
                start, lines = now, 0
            if lines >= self.max_lines:
                self._dropped += 1  # the next line that gets through reports it
                return False
            self._window = (start, lines + 1)
        if last is None and len(self._seen) >= self.max_keys:
            self._forget_old(now)
        if last is not None and last[1]:
            fields["suppressed"] = last[1]
        if self._dropped:
            fields["others_suppressed"], self._dropped = self._dropped, 0
        self._seen[key] = (now, 0)
        # The ``fields`` extra is what raftkv.log's formatter prints as key=value pairs.
        self.logger.log(level, name, extra={"fields": fields})
        return True

    def _forget_old(self, now: float) -> None:
        stale = [k for k, (t, _) in self._seen.items() if now - t >= self.interval]
        for k in stale:
            del self._seen[k]
        if len(self._seen) >= self.max_keys:  # all recent: drop the oldest half
            for k in sorted(self._seen, key=lambda k: self._seen[k][0])[: self.max_keys // 2]:
                del self._seen[k]
