"""Structured, quiet-by-default logging, as text or JSON lines.

WARNING and above by default; ``-v`` adds the Raft story (elections, term changes,
snapshots, membership) at INFO; ``-vv`` adds DEBUG (connections, forwarding). The one
"node serving" line (logger ``raftkv.serving``) is printed at INFO even without ``-v``.

``--log-format text``: ``2026-12-04T01:02:03.456+00:00 INFO    raftkv.node msg key=value``.
``--log-format json``: one JSON object per line with ``ts`` (RFC 3339, date and UTC
offset), ``level``, ``logger``, ``msg``, ``node_id``, ``term`` (once the node runs) and the
event's own fields (``event(log, level, msg, **fields)``); a field never overwrites those.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
_term_source: Callable[[], int] | None = None


def set_term_source(source: Callable[[], int] | None) -> None:
    """Where the formatters read the current term from (the running node's core)."""
    global _term_source
    _term_source = source


def _current_term() -> int | None:
    source = _term_source
    if source is None:
        return None
    try:
        return source()
    except Exception:  # never let a log line fail because the node is mid-teardown
        return None


def rfc3339(created: float) -> str:
    """``2026-12-04T01:02:03.456+00:00``: date, milliseconds and the UTC offset."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class KeyValueFormatter(logging.Formatter):
    """One line per event; fields from ``extra={"fields": {...}}`` appended as key=value."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        kv = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        line = (f"{self.prefix}{rfc3339(record.created)} {record.levelname:<7} {record.name} "
                f"{record.getMessage()}")
        if kv:
            line += " " + kv
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines (Loki, Elasticsearch, Cloud Logging)."""

    def __init__(self, node_id: int | None = None) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.node_id is not None:
            doc["node_id"] = self.node_id
        term = _current_term()
        if term is not None:
            doc["term"] = term
        for key, value in getattr(record, "fields", {}).items():
            if key == "term" or key not in doc:  # an event's own term is the precise one
                doc[key] = _jsonable(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _fmt(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


def setup_logging(verbosity: int = 0, prefix: str = "", fmt: str = "text",
                  node_id: int | None = None) -> None:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {fmt!r}")
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node_id) if fmt == "json" else KeyValueFormatter(prefix))
    root = logging.getLogger("raftkv")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("raftkv.serving").setLevel(min(level, logging.INFO))


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log ``name`` with structured ``fields`` (cheap when the level is disabled)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
