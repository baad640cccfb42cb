"""Rate-limited logging, so a flapping or hostile peer cannot flood the log.

Each key (e.g. ``("refused", "10.0.0.7")``) logs at most once per ``interval`` seconds;
the next line that gets through says how many were suppressed in between.
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
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
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
        if last is None and len(self._seen) >= self.max_keys:
            self._forget_old(now)
        if last is not None and last[1]:
            fields["suppressed"] = last[1]
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
