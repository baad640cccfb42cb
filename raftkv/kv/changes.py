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

from collections.abc import Iterator, Sequence
from itertools import count, repeat
from typing import NamedTuple

# How a command touched a key (the strongest wins: a SET with a deadline is a SET).
META = 0  # only its deadline (EXPIRE, PERSIST, GETEX EX)
VALUE = 1  # its value
GONE = 2  # deleted it

FLUSH_KEY = b""


class Change(NamedTuple):
    """One key changed by one applied entry (see the module docstring).

    A NamedTuple rather than an attrs class: one is built for every key every applied
    write changes, on the apply path, and a tuple is built in under half the time of a
    frozen attrs instance (measured: 0.9 us against 2.2 us on the development machine).
    """

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


CHANGE_OVERHEAD = 96  # bytes a change costs beyond its key and value (object, id, op)
BULK_MIN = 64  # an MSET of fewer keys records plain Changes
_BLOCK = 256  # changes a Bulk expands at once (and keeps)


class Bulk:
    """The changes of one multi-key write (MSET) kept as its key and value lists: change
    ``i`` sets ``keys[i]`` to ``values[i]``, by ``op``, at revision (index, position + i),
    without a deadline; the keys are distinct. Applying an MSET of 100,000 keys records
    one of these (two list references) instead of 100,000 ``Change`` tuples, whose
    allocation (and the garbage collector's passes over them) was most of the feed's
    cost in that apply; the changes are made when read, ``_BLOCK`` at a time, and kept.
    ``index`` and ``position`` are those of its first change (so it sorts among Changes
    by ``(index, position)``). The lists are kept as tuples: a tuple of bytes is one the
    garbage collector stops tracking, so a node whose feed holds 1M MSET keys adds nothing
    to a full collection (issue 12: the lists' 2M references were walked by every full
    pass, on the event loop). Blocks made by reads are still tracked (``Change`` is a
    tuple subclass, which CPython never untracks); only what a reader asked for."""

    __slots__ = ("_made", "index", "keys", "op", "position", "size", "values")

    def __init__(self, index: int, position: int, op: str, keys: Sequence[bytes],
                 values: Sequence[bytes]) -> None:
        self.index = index
        self.position = position
        self.op = op
        self.keys = tuple(keys)
        self.values = tuple(values)
        # (C-level sums: no Python code run per key)
        self.size = (CHANGE_OVERHEAD * len(keys) + sum(map(len, keys))
                     + sum(map(len, values)))
        self._made: dict[int, list[Change]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"Bulk({self.index}, {self.position}, {self.op!r}, {len(self)} keys)"

    def change(self, i: int) -> Change:
        return Change(self.index, self.position + i, self.op, self.keys[i], self.values[i],
                      None)

    def changes(self, lo: int, hi: int) -> list[Change]:
        """Changes ``lo`` to ``hi - 1`` (made a block at a time, and kept)."""
        out: list[Change] = []
        made = self._made
        while lo < hi:
            block, offset = divmod(lo, _BLOCK)
            got = made.get(block)
            if got is None:
                first = block * _BLOCK
                end = min(first + _BLOCK, len(self.keys))
                got = made[block] = list(map(tuple.__new__, repeat(Change), zip(
                    repeat(self.index), count(self.position + first), repeat(self.op),
                    self.keys[first:end], self.values[first:end], repeat(None))))
            take = got[offset:offset + hi - lo]
            out += take
            lo += len(take)
        return out

    def iter_changes(self, lo: int = 0) -> Iterator[Change]:
        """Changes ``lo`` to the last, made one by one and not kept (a snapshot's
        encoding, in a worker thread: no memory held after it)."""
        index, op = self.index, self.op
        for position, key, value in zip(count(self.position + lo), self.keys[lo:],
                                        self.values[lo:]):
            yield Change(index, position, op, key, value, None)

    def sizes(self, lo: int, hi: int) -> int:
        """The bytes changes ``lo`` to ``hi - 1`` count (C-level sums)."""
        return (CHANGE_OVERHEAD * (hi - lo) + sum(map(len, self.keys[lo:hi]))
                + sum(map(len, self.values[lo:hi])))


Record = Change | Bulk  # what an applied entry recorded: one change, or an MSET's many


def expand(records: list[Record]) -> list[Change]:
    """The changes ``records`` hold, in order."""
    out: list[Change] = []
    for record in records:
        if type(record) is Bulk:
            out += record.changes(0, len(record))
        else:
            out.append(record)  # type: ignore[arg-type]
    return out


def iter_changes(records: list[Record]) -> Iterator[Change]:
    """``expand``, lazily (a listener that reads nothing costs nothing)."""
    for record in records:
        if type(record) is Bulk:
            for lo in range(0, len(record), _BLOCK):
                yield from record.changes(lo, min(lo + _BLOCK, len(record)))
        else:
            yield record  # type: ignore[misc]


class ChangeRecorder:
    """Collects the changes of one entry while the state machine applies it.

    ``start(index)`` opens an entry. The machine brackets each command (nested for EXEC,
    ONCE and scripts: the innermost command names the change): before it, ``settle`` what
    is ``pending`` and set ``op``; after it, ``settle`` again and give ``op`` back. A key
    touched several times by one command is one change; touches become ``Change`` values
    when settled, reading the key's value and deadline then; ``finish`` settles what a
    command that raised left and hands over the entry's changes.
    """

    __slots__ = ("_done", "_index", "_next", "_touched", "op", "pending")

    def __init__(self) -> None:
        self._index = 0
        self.op = ""  # the running command's name
        self.pending: list[list] = []  # [op, key, kind] in the order of first touch
        self._touched: dict[bytes, list] = {}  # key -> its item in pending
        self._done: list[Record] = []
        self._next = 0  # the next change's position in the entry

    def start(self, index: int) -> None:
        """A new entry, at log ``index``: forget what the previous one recorded."""
        self._index = index
        self.op = ""
        if self.pending:
            self.pending = []
            self._touched = {}
        self._done = []
        self._next = 0

    def note(self, key: bytes, kind: int) -> None:
        """The running command touched ``key`` (META, VALUE or GONE)."""
        touch = self._touched.get(key)
        if touch is None:
            touch = [self.op, key, kind]
            self._touched[key] = touch
            self.pending.append(touch)
        elif kind != META:
            touch[2] = kind

    def set_value(self, key: bytes, value: bytes) -> None:
        """The running command set ``key`` to ``value``, without a deadline, and touches
        nothing else (a plain SET), with nothing ``pending``: its change, made now. What
        ``note`` and then ``settle`` would make, without the touch record, a list and a
        dict a write (about 0.4 us of a SET's apply on every replica: issue 15)."""
        position = self._next
        self._done.append(tuple.__new__(Change, (self._index, position, self.op, key, value,
                                                 None)))
        self._next = position + 1

    def note_many(self, keys: list[bytes]) -> None:
        """The running command set the value of each of ``keys`` (MSET's fast path: ``note``
        inlined, as an MSET of 100,000 keys is applied in one go on every replica)."""
        touched, pending, op = self._touched, self.pending, self.op
        for key in keys:
            touch = touched.get(key)
            if touch is None:
                touch = touched[key] = [op, key, VALUE]
                pending.append(touch)
            else:
                touch[2] = VALUE

    def set_many(self, keys: list[bytes], values: list[bytes] | None,
                 data: dict[bytes, bytes]) -> None:
        """MSET's fast path: the running command set each of ``keys`` to its value now in
        ``data`` and dropped its deadline; ``values``: the values, key by key, when the
        keys are distinct (None: some repeat). When nothing else is pending (MSET alone,
        or first in its transaction step) the changes are one per distinct key in the
        order of first touch, without the touch records ``note`` keeps; from ``BULK_MIN``
        keys on, one ``Bulk`` holding the lists: an MSET of 100,000 keys is applied in
        one go on every replica."""
        if self.pending:
            self.note_many(keys)
            return
        if values is None:
            keys = list(dict.fromkeys(keys))
            values = list(map(data.__getitem__, keys))
        done, index, op, position = self._done, self._index, self.op, self._next
        if len(keys) >= BULK_MIN:
            done.append(Bulk(index, position, op, keys, values))
        else:
            make = tuple.__new__
            done += [make(Change, (index, position + i, op, key, value, None))
                     for i, (key, value) in enumerate(zip(keys, values, strict=True))]
        self._next = position + len(keys)

    def deleted_by_deadline(self, key: bytes) -> None:
        """The running command gave ``key`` a deadline already past: it is deleted
        (recorded as ``del``, whatever the command, as Redis notifies it)."""
        self.note(key, GONE)
        self._touched[key][0] = "del"

    def expired(self, key: bytes) -> None:
        """A write met ``key`` past its deadline and deleted it: its own ``expired`` change,
        before whatever the command then does to the key."""
        self.pending.append(["expired", key, GONE])

    def flushed(self) -> None:
        """FLUSHALL emptied a non-empty map."""
        self.pending.append([self.op, FLUSH_KEY, GONE])
        self._touched = {}

    def settle(self, data: dict[bytes, bytes], expires: dict[bytes, int]) -> None:
        """Turn the pending touches into changes, as the state now stands."""
        done, index, position = self._done, self._index, self._next
        make, deadline, append = tuple.__new__, expires.get, done.append  # the hot loop's
        for op, key, kind in self.pending:
            if kind == GONE or key not in data:
                append(make(Change, (index, position, op, key, None, None)))
            else:
                append(make(Change, (index, position, op, key,
                                     data[key] if kind == VALUE else None, deadline(key))))
            position += 1
        self._next = position
        self.pending = []
        self._touched = {}

    def mark(self) -> tuple[int, int]:
        """Where the entry's records stand (settled: nothing ``pending``), for ``retract``."""
        return (len(self._done), self._next)

    def retract(self, mark: tuple[int, int], data: dict[bytes, bytes],
                expires: dict[bytes, int]) -> None:
        """Forget what was recorded since ``mark``: a failing script's writes, which its
        journal has just undone (``data`` as it now stands), never happened. Kept: an
        ``expired`` change of a key still gone (a keyless read deleted it on the way, and
        the journal leaves that), renumbered from the mark's position."""
        if self.pending:
            self.settle(data, expires)
        done, position = self._done, mark[1]
        kept: list[Record] = []
        for record in done[mark[0]:]:
            if type(record) is Change and record.op == "expired" and record.key not in data:
                kept.append(record._replace(position=position))
                position += 1
        del done[mark[0]:]
        done += kept
        self._next = position

    def finish(self, data: dict[bytes, bytes], expires: dict[bytes, int]) -> list[Record]:
        """The entry's changes, numbered 0.. (touches of a command that raised included:
        what it changed is changed), as records: ``expand`` gives the changes."""
        if self.pending:
            self.settle(data, expires)
        done, self._done = self._done, []
        return done
