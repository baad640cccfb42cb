"""What each applied entry changed, key by key: the change feed's records (issue 18).

Every write applied from the log has a revision: the entry's log index and a position
inside the entry (0, 1, ...): MSET records one change per key, EXEC and scripts every write
inside them, in the order they happened. The same log gives the same changes on every
replica, so a revision means the same thing on every node and a watcher can resume on
another node from the last revision it saw.

A ``Change`` says which command made it (``op``, lower case: ``set``, ``del``, ``incrby``,
``rename``...), the key, and the key as the command left it: ``value`` when the command set
the value (read from the state after the command, so INCR gives the new number, APPEND the
whole string), None when it deleted the key or only touched its deadline; ``deadline_ms``,
the key's absolute deadline after the command, None if it has none or is gone. Three ops
are not command names: ``expired`` (a key removed because its deadline passed: the leader's
expiry entries, or a write meeting an expired key), ``del`` also for EXPIRE/SET/GETEX with a
deadline already past (the key is deleted, as Redis notifies it), and ``flushall`` (key
``b""``) for FLUSHALL/FLUSHDB of a non-empty map. A command that changed nothing records
nothing (SETNX that lost, DEL of a missing key, SETRANGE with an empty piece).

``ChangeRecorder`` is the state machine's notebook: the machine tells it when a command
starts and ends and which keys it touched; it builds the ``Change`` list of the entry.
Pure: no clock, no I/O.
"""

from __future__ import annotations

import attrs

# How a command touched a key (the strongest wins: a SET with a deadline is a SET).
META = 0  # only its deadline (EXPIRE, PERSIST, GETEX EX)
VALUE = 1  # its value
GONE = 2  # deleted it

FLUSH_KEY = b""


@attrs.frozen
class Change:
    """One key changed by one applied entry (see the module docstring)."""

    index: int  # the log index of the entry
    position: int  # 0.. inside the entry
    op: str
    key: bytes
    value: bytes | None
    deadline_ms: int | None

    @property
    def id(self) -> tuple[int, int]:
        """The revision, as a sortable pair: ``(index, position)``."""
        return (self.index, self.position)


class _Touch:
    """One key touched by the running command, finalised when the command ends."""

    __slots__ = ("key", "kind", "op")

    def __init__(self, op: str, key: bytes, kind: int) -> None:
        self.op = op
        self.key = key
        self.kind = kind


class ChangeRecorder:
    """Collects the changes of one entry while the state machine applies it.

    ``begin(op)`` / ``end(op_before, ...)`` bracket each command (nested for EXEC, ONCE
    and scripts: the innermost command names the change). A key touched several times by
    one command is one change; touches are turned into ``Change`` values at the end of the
    command (or when a nested command begins), reading the value and deadline then.
    """

    __slots__ = ("_done", "_op", "_pending", "_touched")

    def __init__(self) -> None:
        self._op = ""
        self._pending: list[_Touch] = []
        self._touched: dict[bytes, _Touch] = {}
        self._done: list[tuple[str, bytes, bytes | None, int | None]] = []

    def reset(self) -> None:
        """A new entry: forget what the previous one recorded."""
        self._op = ""
        self._pending = []
        self._touched = {}
        self._done = []

    def begin(self, op: str, data: dict[bytes, bytes], expires: dict[bytes, int]) -> str:
        """A command named ``op`` starts; returns the op to give back to ``end``."""
        if self._pending:
            self._settle(data, expires)
        outer, self._op = self._op, op
        return outer

    def end(self, outer: str, data: dict[bytes, bytes], expires: dict[bytes, int]) -> None:
        """The command started by ``begin`` is done: settle its touches."""
        if self._pending:
            self._settle(data, expires)
        self._op = outer

    def note(self, key: bytes, kind: int) -> None:
        """The running command touched ``key`` (META, VALUE or GONE)."""
        touch = self._touched.get(key)
        if touch is None:
            touch = _Touch(self._op, key, kind)
            self._touched[key] = touch
            self._pending.append(touch)
        elif kind != META:
            touch.kind = kind

    def note_many(self, keys: list[bytes]) -> None:
        """The running command set the value of each of ``keys`` (MSET's fast path)."""
        for key in keys:
            self.note(key, VALUE)

    def deleted_by_deadline(self, key: bytes) -> None:
        """The running command gave ``key`` a deadline already past: it is deleted
        (recorded as ``del``, whatever the command, as Redis notifies it)."""
        self.note(key, GONE)
        self._touched[key].op = "del"

    def expired(self, key: bytes) -> None:
        """A write met ``key`` past its deadline and deleted it: its own ``expired`` change,
        before whatever the command then does to the key."""
        self._pending.append(_Touch("expired", key, GONE))

    def flushed(self) -> None:
        """FLUSHALL emptied a non-empty map."""
        self._pending.append(_Touch(self._op, FLUSH_KEY, GONE))
        self._touched = {}

    def _settle(self, data: dict[bytes, bytes], expires: dict[bytes, int]) -> None:
        done = self._done
        for touch in self._pending:
            if touch.kind == GONE:
                done.append((touch.op, touch.key, None, None))
                continue
            key = touch.key
            value = data.get(key) if touch.kind == VALUE else None
            done.append((touch.op, key, value, expires.get(key) if key in data else None))
        self._pending = []
        self._touched = {}

    def take(self, index: int) -> list[Change]:
        """The entry's changes, numbered 0.. at log index ``index``; the notebook empties."""
        done, self._done = self._done, []
        return [Change(index, position, op, key, value, deadline)
                for position, (op, key, value, deadline) in enumerate(done)]
