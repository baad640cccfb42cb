"""The operation record of a chaos history and its JSON-lines form.

One line per client operation, written by the harness and re-read by ``raftkv-chaos check``.

Decisions (the checkers rely on them):

- ``outcome`` says what the client *knows*: ``ok`` (it happened and the result is known),
  ``fail`` (it definitely did not happen: the checkers drop it), ``info`` (unknown: it may
  have taken effect at any time after ``invoke``, or never). An info operation's
  ``complete`` is only the time the client gave up (or ``None``); for real-time ordering it
  is +infinity.
- A CAS that definitely executed is ``outcome="ok"`` whatever it answered, with
  ``result=True`` if it swapped and ``result=False`` if the compare failed: a failed
  compare is an observation (the value was not ``expected`` at that point), so it constrains
  the register like a read. ``fail`` is kept for "definitely did not execute".
- Values are JSON scalars (``str`` or ``int``); ``None`` means the key is missing. A read's
  ``value`` is what it returned; a read that is not ``ok`` constrains nothing and is dropped.
- ``cas`` values are ``(expected, new)``; ``expected=None`` means "only if missing".
- ``ttl`` (seconds, writes only) makes the write expire: ``SET k v PX ms``. The key then
  reads as missing from the write's apply time plus ``ttl`` on; a CAS keeps the deadline
  (RaftKV's CAS keeps the TTL). Optional: histories without it read as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import attrs

Value = str | int | None
F = Literal["read", "write", "cas"]
Outcome = Literal["ok", "fail", "info"]

FS: tuple[str, ...] = ("read", "write", "cas")
OUTCOMES: tuple[str, ...] = ("ok", "fail", "info")
FIELDS = ("process", "key", "f", "value", "invoke", "complete", "outcome", "result", "node",
          "error", "ttl")


class HistoryError(ValueError):
    """A history line that is not a valid operation (the message names the line)."""


def _to_value(raw: Any) -> Any:
    """JSON lists (a CAS pair) become tuples so operations stay hashable."""
    return tuple(raw) if isinstance(raw, list) else raw


@attrs.frozen
class Op:
    """One client operation as the client saw it."""

    process: int | str
    key: str
    f: F
    value: Any = attrs.field(converter=_to_value)
    invoke: float
    complete: float | None
    outcome: Outcome
    result: bool | None = None
    node: str | None = None
    error: str | None = None
    ttl: float | None = None

    def __attrs_post_init__(self) -> None:
        _validate(self)

    @property
    def end(self) -> float:
        """Completion time for real-time ordering: +inf unless the outcome is known."""
        if self.outcome == "info" or self.complete is None:
            return math.inf
        return self.complete

    @property
    def writes(self) -> bool:
        """True if this operation may have set the register (so it could overwrite)."""
        if self.outcome == "fail":
            return False
        if self.f == "write":
            return True
        return self.f == "cas" and (self.outcome == "info" or self.result is True)

    @property
    def written(self) -> Value:
        """The value this operation writes if it takes effect (write or cas)."""
        return self.value[1] if self.f == "cas" else self.value

    def describe(self) -> str:
        """A short human form, e.g. ``p3 write('k', 'v') ok [1.000, 1.200]``."""
        if self.f == "cas":
            exp, new = self.value
            what = f"cas({self.key!r}, {exp!r} -> {new!r})"
            if self.outcome == "ok":
                what += " swapped" if self.result else " not-swapped"
        elif self.f == "write":
            what = f"write({self.key!r}, {self.value!r})"
            if self.ttl is not None:
                what += f" ttl {self.ttl:g}s"
        else:
            what = f"read({self.key!r}) = {self.value!r}"
        end = "?" if self.complete is None else f"{self.complete:.3f}"
        return f"p{self.process} {what} {self.outcome} [{self.invoke:.3f}, {end}]"

    def to_json(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        if d["ttl"] is None:
            del d["ttl"]  # histories without TTLs stay as they were
        if isinstance(d["value"], tuple):
            d["value"] = list(d["value"])
        return d


def _is_value(v: Any) -> bool:
    return v is None or (isinstance(v, str | int) and not isinstance(v, bool))


def _is_time(t: Any) -> bool:
    return isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)


def _validate(op: Op) -> None:
    problems: list[str] = []
    if not isinstance(op.process, int | str) or isinstance(op.process, bool):
        problems.append(f"process must be an int or str, not {op.process!r}")
    if not isinstance(op.key, str):
        problems.append(f"key must be a str, not {op.key!r}")
    if op.f not in FS:
        problems.append(f"f must be one of {FS}, not {op.f!r}")
    if op.outcome not in OUTCOMES:
        problems.append(f"outcome must be one of {OUTCOMES}, not {op.outcome!r}")
    if not _is_time(op.invoke):
        problems.append(f"invoke must be a finite number, not {op.invoke!r}")
    if op.complete is None:
        if op.outcome == "ok":
            problems.append("an ok operation needs a complete time")
    elif not _is_time(op.complete):
        problems.append(f"complete must be a finite number or null, not {op.complete!r}")
    elif _is_time(op.invoke) and op.complete < op.invoke:
        problems.append(f"complete {op.complete} is before invoke {op.invoke}")
    if op.f == "cas":
        if not (isinstance(op.value, tuple) and len(op.value) == 2
                and all(_is_value(v) for v in op.value)):
            problems.append(f"a cas value must be [expected, new], not {op.value!r}")
        elif op.value[1] is None:
            problems.append("a cas cannot write null (there is no delete)")
        if op.outcome == "ok" and not isinstance(op.result, bool):
            problems.append("an ok cas needs result true (swapped) or false (compare failed)")
    elif op.f in FS:
        if not _is_value(op.value):
            problems.append(f"a {op.f} value must be a str, int or null, not {op.value!r}")
        elif op.f == "write" and op.value is None:
            problems.append("a write cannot write null (there is no delete)")
        if op.result is not None:
            problems.append(f"result is only for cas, not {op.f}")
    if op.ttl is not None and (op.f != "write" or not _is_time(op.ttl) or op.ttl <= 0):
        problems.append(f"ttl must be a positive number of seconds on a write, not {op.ttl!r}")
    for name in ("node", "error"):
        v = getattr(op, name)
        if v is not None and not isinstance(v, str):
            problems.append(f"{name} must be a str or null, not {v!r}")
    if problems:
        raise HistoryError("; ".join(problems))


def op_from_json(d: Any) -> Op:
    """Build an operation from one decoded JSON object, rejecting unknown or missing fields."""
    if not isinstance(d, dict):
        raise HistoryError(f"expected a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise HistoryError(f"unknown field(s) {', '.join(unknown)}")
    missing = [k for k in ("process", "key", "f", "value", "invoke", "outcome") if k not in d]
    if missing:
        raise HistoryError(f"missing field(s) {', '.join(missing)}")
    return Op(**{"complete": None, **d})


def dumps(ops: Iterable[Op]) -> str:
    """The JSON-lines text of a history (one object per line, trailing newline)."""
    return "".join(json.dumps(op.to_json(), sort_keys=True) + "\n" for op in ops)


def loads(text: str, source: str = "<history>") -> list[Op]:
    """Parse JSON-lines text; blank lines are skipped, any bad line raises HistoryError."""
    ops = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ops.append(op_from_json(json.loads(line)))
        except (json.JSONDecodeError, HistoryError, TypeError) as exc:
            raise HistoryError(f"{source}:{lineno}: {exc}") from None
    return ops


def save(path: str | Path, ops: Iterable[Op]) -> None:
    Path(path).write_text(dumps(ops))


def load(path: str | Path) -> list[Op]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HistoryError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return loads(text, source=str(path))
