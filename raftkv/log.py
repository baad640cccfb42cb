"""Structured, quiet-by-default logging: ``ts level logger event key=value ...``.

WARNING and above by default; ``-v`` adds the Raft story (elections, term changes,
snapshots, membership) at INFO; ``-vv`` adds DEBUG (connections, forwarding).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


class KeyValueFormatter(logging.Formatter):
    """One line per event; fields from ``extra={"fields": {...}}`` appended as key=value."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        ms = int(record.msecs)
        fields: dict[str, Any] = getattr(record, "fields", {})
        kv = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        line = (f"{self.prefix}{ts}.{ms:03d} {record.levelname:<7} {record.name} "
                f"{record.getMessage()}")
        if kv:
            line += " " + kv
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _fmt(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


def setup_logging(verbosity: int = 0, prefix: str = "") -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(prefix))
    root = logging.getLogger("raftkv")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log ``name`` with structured ``fields`` (cheap when the level is disabled)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
