"""The change feed: a bounded tail of the Changes applied entries made (issue 18).

The feed keeps the changes of the last ``retention_entries`` log indexes, at most
``retention_entries`` changes (an entry may hold many: an MSET, a transaction, a leader's
write runs, raftkv.node.gathered, which made 27-32 SETs one entry and the feed as many
times longer for the same bound: attack24), and at most ``retention_bytes`` of them (keys
and values plus a fixed overhead a change), dropping the oldest change first. ``floor``
is the id of the newest change dropped (or, after a snapshot that carried no tail,
``(snapshot index, MAX_POSITION)``): every change with an id above the floor is still
here. A reader that resumes after id X misses nothing if and only if X >= floor;
otherwise it gets ``Compacted``, naming the oldest retained id.

Retention is independent of Raft snapshots: the tail travels in the state machine's
snapshot (state.py), so a restarted node or a follower that installs a snapshot holds the
same tail as the peer that took it. The bounds are a node's settings (like
``--max-request-bytes``): nodes with different bounds keep different tails, each exact.

A single change is kept as a plain tuple of a ``Change``'s fields and made a ``Change``
again when read: CPython's collector stops tracking a plain tuple of ints, strings and
bytes after its first pass, but never a tuple subclass, so 100,000 retained ``Change``
objects were 100,000 more objects every full collection walked. Measured: a full collection
over a 100k-change tail took 36-71 ms on the loop, and full collections came every few
seconds under a c50 write load; a leader whose loop stalls that long past a heartbeat can
lose its followers.

Pure: no clock, no I/O. Reads (``after``, ``between``) are bounded by their COUNT and by
the tail itself; a filtered read walks the tail from its id. A reader that must not hold
its caller for long takes the tail a ``chunk`` at a time (raftkv.server.streams).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from typing import Any

import attrs

from .changes import CHANGE_OVERHEAD, FLUSH_KEY, Bulk, Change, Record

MAX_POSITION = 2**63 - 1
DEFAULT_RETENTION_ENTRIES = 100_000
DEFAULT_RETENTION_BYTES = 64 * 1024 * 1024
TOP_ID = (2**64, 0)  # above every id
TRIM_BLOCK = 1024  # changes of a Bulk weighed at once when trimming by bytes

Id = tuple[int, int]  # (log index, position)


def change_size(change: Change | tuple[Any, ...]) -> int:
    """(By position: a ``Change`` or the plain tuple the feed keeps of one.)"""
    value = change[4]
    return CHANGE_OVERHEAD + len(change[3]) + (len(value) if value else 0)


_as_change = Change._make  # a kept plain tuple made a Change again (module docstring)
_TUPLE = {tuple}


def record_size(record: Record) -> int:
    return record.size if type(record) is Bulk else change_size(record)  # type: ignore[union-attr, arg-type]


def _id(change: Change) -> Id:
    return (change.index, change.position)


_bulk_first_id = attrgetter("index", "position")


def _first_id(record: Record | tuple[Any, ...]) -> Id:
    """A kept record's first id (a single change's only one)."""
    if type(record) is Bulk:
        return _bulk_first_id(record)
    return record[:2]  # type: ignore[index, return-value]


def _index_of(record: Record | tuple[Any, ...]) -> int:
    return record.index if type(record) is Bulk else record[0]  # type: ignore[union-attr, index, return-value]


class Tail(Sequence[Change]):
    """The retained changes as a snapshot takes them: a copy of the feed's list of
    records (the first one's first ``skip`` changes dropped), whose Bulk records are made
    into Changes only as it is iterated, by the snapshot's encoding in a worker thread
    (made on the loop, a tail of 600,000 MSET changes held it for about half a second).
    Equal to any sequence of the same changes."""

    __slots__ = ("_length", "_records", "_skip")

    def __init__(self, records: list[Record], skip: int, length: int) -> None:
        self._records = records
        self._skip = skip
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Change]:
        for n, record in enumerate(self._records):
            if type(record) is Bulk:
                yield from record.iter_changes(self._skip if n == 0 else 0)
            else:
                yield _as_change(record)

    def __getitem__(self, i: Any) -> Any:  # (rare: tests; the whole tail is made)
        return tuple(self)[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, Tail)):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Tail({len(self)} changes)"


@attrs.frozen
class FeedState:
    """The feed as plain data (for a snapshot): its floor and the changes above it.
    ``floor`` None: not known (a snapshot from before the feed existed), set by
    ``ChangeFeed.restored_at`` to the snapshot's index."""

    floor: Id | None
    changes: Sequence[Change] = ()


class Compacted(Exception):
    """The reader's id is older than what the feed still holds."""

    def __init__(self, oldest: Id | None, floor: Id) -> None:
        super().__init__(oldest, floor)
        self.oldest = oldest  # the oldest change retained, None if the tail is empty
        self.floor = floor


class ChangeFeed:
    """The retained tail (module docstring): appended to by the state machine's apply.

    It holds the entries' records (raftkv.kv.changes): a ``Change``, or a ``Bulk`` for an
    MSET's many, expanded into changes only when read; the oldest record may have lost a
    prefix of its changes to the bytes bound (``_skip`` of them)."""

    def __init__(self, retention_entries: int = DEFAULT_RETENTION_ENTRIES,
                 retention_bytes: int = DEFAULT_RETENTION_BYTES) -> None:
        if retention_entries < 1 or retention_bytes < 1:
            raise ValueError("the feed's retention bounds are at least 1")
        self.retention_entries = retention_entries
        self.retention_bytes = retention_bytes
        self._items: list[Record] = []
        self._head = 0  # items before it are dropped (compacted away in bulk)
        self._skip = 0  # changes of items[_head] dropped (a Bulk cut by the bytes bound)
        self._skip_bytes = 0  # what they weighed
        self._count = 0  # changes retained
        self.bytes = 0
        self.floor: Id | None = (0, 0)
        self.last_index = 0  # the highest log index appended (with or without changes)
        self.version = 0  # moves on every append, replace and restore: a cache's key

    # -- the state machine's side ---------------------------------------------------------

    def append(self, index: int, changes: list[Record]) -> None:
        """The entry at log ``index`` was applied and made ``changes`` (maybe none; a
        ``Bulk`` stands for its many)."""
        self.version += 1
        if index > self.last_index:
            self.last_index = index
        items = self._items
        if changes:
            for record in changes:
                if type(record) is Bulk:
                    items.append(record)
                    self.bytes += record.size
                    self._count += len(record)
                else:
                    items.append(record[:])  # a plain tuple (module docstring; [:] beats tuple())
                    value = record[4]  # (change_size, inlined: a call per applied write)
                    self.bytes += CHANGE_OVERHEAD + len(record[3]) + (len(value) if value else 0)  # type: ignore[arg-type]
                    self._count += 1
        head = self._head
        if head >= len(items):
            return
        oldest_kept = self.last_index - self.retention_entries  # indexes <= it go
        first = items[head]
        if type(first) is Bulk:
            if (first.index <= oldest_kept or self.bytes > self.retention_bytes
                    or self._count > self.retention_entries):
                self._trim()
            return
        if first[0] > oldest_kept:  # type: ignore[index, operator]
            if self.bytes > self.retention_bytes or self._count > self.retention_entries:
                self._trim()
            return
        # A full feed under single-key writes drops one old change per entry: that
        # ``_drop_head``, inlined (``_trim`` cost ~0.45 us more per applied write: issue
        # 15); ``_trim`` does the rest, if any, as it would have.
        value = first[4]  # type: ignore[index]
        self.bytes -= CHANGE_OVERHEAD + len(first[3]) + (len(value) if value else 0)  # type: ignore[index, arg-type]
        self._count -= 1
        self.floor = first[:2]  # type: ignore[index, assignment]
        self._head = head = head + 1
        self._skip = self._skip_bytes = 0
        if self.bytes > self.retention_bytes or self._count > self.retention_entries or (
                head < len(items) and (
                    type(nxt := items[head]) is Bulk or nxt[0] <= oldest_kept)):  # type: ignore[index, operator]
            self._trim()
        elif head > 1024 and head * 2 > len(items):  # (as ``_trim`` ends)
            del items[:head]
            self._head = 0

    def _drop_head(self) -> None:
        """Drop the rest of the oldest record."""
        record = self._items[self._head]
        if type(record) is Bulk:
            self.bytes -= record.size - self._skip_bytes
            self._count -= len(record) - self._skip
        else:
            self.bytes -= change_size(record)  # type: ignore[arg-type]
            self._count -= 1
        self.floor = _last_id(record)
        self._head += 1
        self._skip = self._skip_bytes = 0

    def _trim(self) -> None:
        """Drop the oldest changes past either bound: whole records while the entries
        bound or the bytes bound wants all of one, then, under the bytes bound, a
        ``Bulk``'s changes a block and then one at a time."""
        items = self._items
        oldest_kept = self.last_index - self.retention_entries  # indexes <= it go
        while self._head < len(items) and _index_of(items[self._head]) <= oldest_kept:
            self._drop_head()
        while self._count > self.retention_entries:  # (so at least one change stays)
            record = items[self._head]
            over = self._count - self.retention_entries
            if type(record) is not Bulk or len(record) - self._skip <= over:
                self._drop_head()
                continue
            lo = self._skip + over  # the oldest ``over`` changes of the oldest record go
            size = record.sizes(self._skip, lo)
            self.bytes -= size
            self._skip_bytes += size
            self._count -= over
            self._skip = lo
            self.floor = (record.index, record.position + lo - 1)
        while self._head < len(items) and self.bytes > self.retention_bytes:
            record = items[self._head]
            if type(record) is not Bulk or (
                    self.bytes - (record.size - self._skip_bytes) + record.sizes(
                        len(record) - 1, len(record)) > self.retention_bytes):
                self._drop_head()  # (all of it goes, its last change included)
                continue
            self._cut(record)
        head = self._head
        if head > 1024 and head * 2 > len(items):
            del items[:head]
            self._head = 0

    def _cut(self, bulk: Bulk) -> None:
        """Drop the oldest changes of ``bulk`` (the oldest record) until the bytes bound
        holds; at least its last change stays."""
        lo, step = self._skip, TRIM_BLOCK
        while self.bytes > self.retention_bytes:
            # Whole steps while the bound still wants more after them, then halving steps
            # (the cut is inside the step): the same cut as one change at a time, in about
            # len / TRIM_BLOCK + 2 log2(TRIM_BLOCK) sums (it was one block sum per change
            # of the last block: 30 ms of a 100k-key MSET's apply).
            hi = min(lo + step, len(bulk) - 1)
            size = bulk.sizes(lo, hi)
            if hi - lo > 1 and self.bytes - size > self.retention_bytes:
                lo, self.bytes, self._skip_bytes = hi, self.bytes - size, self._skip_bytes + size
                continue
            if step > 1 and hi - lo > 1:
                step //= 2
                continue
            size = bulk.sizes(lo, lo + 1)
            lo, self.bytes, self._skip_bytes = lo + 1, self.bytes - size, self._skip_bytes + size
        self._count -= lo - self._skip
        self._skip = lo
        self.floor = (bulk.index, bulk.position + lo - 1)

    def state(self) -> FeedState:
        """A copy for a snapshot: the records are immutable, so a list copy (``Tail``)."""
        return FeedState(self.floor, Tail(self._items[self._head:], self._skip, self._count))

    def replace(self, state: FeedState | None) -> None:
        """Take a snapshot's feed (None: the snapshot had none; see ``restored_at``)."""
        if state is None:
            state = FeedState(None)
        self.version += 1
        changes = state.changes
        if type(changes) is Tail:  # (another feed's: its records as they are)
            self._items = list(changes._records)
            self._skip = changes._skip
            first = self._items[0] if self._items else None
            self._skip_bytes = first.sizes(0, self._skip) if type(first) is Bulk else 0
            self.bytes = sum(map(record_size, self._items)) - self._skip_bytes
        else:
            self._items = [tuple(change) for change in changes]
            self._skip = self._skip_bytes = 0
            self.bytes = sum(map(change_size, self._items))
        self._head = 0
        self._count = len(changes)
        self.floor = state.floor
        self.last_index = _index_of(self._items[-1]) if self._items else 0
        self._trim()

    def restored_at(self, index: int) -> None:
        """The state machine now stands at log ``index`` (a snapshot was loaded): a feed
        the snapshot did not carry starts there, knowing nothing before."""
        self.version += 1
        if self.floor is None:
            self.floor = (index, MAX_POSITION)
        self.last_index = max(self.last_index, index)

    # -- readers ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def first(self) -> Change | None:
        if not self._count:
            return None
        record = self._items[self._head]
        return record.change(self._skip) if type(record) is Bulk else _as_change(record)  # type: ignore[union-attr, arg-type]

    @property
    def last(self) -> Change | None:
        if not self._count:
            return None
        record = self._items[-1]
        return record.change(len(record) - 1) if type(record) is Bulk else _as_change(record)  # type: ignore[union-attr, arg-type]

    @property
    def known_floor(self) -> Id:
        return self.floor if self.floor is not None else (self.last_index, MAX_POSITION)

    @property
    def last_id(self) -> Id:
        """The id of the newest change there is, retained or not (``$``): a reader after it
        sees only changes made from now on."""
        if self._count:
            return _last_id(self._items[-1])
        return self.known_floor

    def check(self, after: Id) -> None:
        """``Compacted`` unless every change after ``after`` is retained."""
        if after < self.known_floor:
            first = self.first
            raise Compacted(_id(first) if first is not None else None, self.known_floor)

    def _locate(self, after: Id) -> tuple[int, int]:
        """Where the first retained change with an id above ``after`` is: (record, change
        in it); (len(items), 0) if none."""
        items, head = self._items, self._head
        i = bisect.bisect_right(items, after, lo=head, key=_first_id) - 1
        if i < head:
            return head, self._skip
        record = items[i]
        if type(record) is Bulk and after[0] == record.index:
            offset = max(after[1] - record.position + 1, self._skip if i == head else 0)
            if offset < len(record):
                return i, offset
        return i + 1, 0

    def _span(self, after: Id, until: Id) -> tuple[tuple[int, int], tuple[int, int]]:
        start = self._locate(after)
        end = self._locate(until)
        return start, max(start, end)

    def chunk(self, after: Id, until: Id, size: int, reverse: bool = False,
              plain: bool = False) -> list[Change]:
        """At most ``size`` retained changes with after < id <= until, oldest first
        (``reverse``: the newest first): a copy, so a reader may hold it while the tail
        grows or is trimmed, and go on from its last id with the next ``chunk``.
        ``plain``: as plain tuples of a Change's fields (the kept ones themselves, no new
        object), which the collector does not track: for a reader that holds many."""
        make = tuple if plain else _as_change
        (i, lo), (j, hi) = self._span(after, until)
        items = self._items
        out: list[Change] = []
        if plain:  # whole single-change records: one slice of the kept tuples (C speed)
            if reverse and hi == 0:
                seg = items[max(i + (lo > 0), j - size):j][::-1]
                if seg and set(map(type, seg)) == _TUPLE:
                    out, j = seg, j - len(seg)
            elif not reverse and lo == 0:
                seg = items[i:min(j, i + size)]
                if seg and set(map(type, seg)) == _TUPLE:
                    out, i = seg, i + len(seg)
        if reverse:
            while (j, hi) > (i, lo) and len(out) < size:
                if hi == 0:
                    j -= 1
                    hi = len(items[j]) if type(items[j]) is Bulk else 1  # type: ignore[arg-type]
                    continue
                record = items[j]
                floor = lo if j == i else 0
                if type(record) is Bulk:
                    first = max(floor, hi - (size - len(out)))
                    bulk = record.changes(first, hi)[::-1]
                    out += map(tuple, bulk) if plain else bulk  # type: ignore[arg-type]
                    hi = first
                else:
                    out.append(make(record))  # type: ignore[arg-type]
                    hi = 0
            return out
        while (i, lo) < (j, hi) and len(out) < size:
            record = items[i]
            if type(record) is Bulk:
                end = min(len(record) if i < j else hi, lo + size - len(out))
                bulk = record.changes(lo, end)
                out += map(tuple, bulk) if plain else bulk  # type: ignore[arg-type]
                if end < len(record):
                    lo = end
                    continue
            else:
                out.append(make(record))  # type: ignore[arg-type]
            i, lo = i + 1, 0
        return out

    def walk(self, after: Id, until: Id, count: int, match: Callable[[Change], bool] | None,
             limit: int, reverse: bool = False) -> tuple[list[Change], Id | None]:
        """One slice of a read: at most ``limit`` retained changes with after < id <= until
        examined, oldest first (``reverse``: newest first); up to ``count`` of them that
        ``match``, and the bound to resume from (the next ``after``, or reversed the next
        ``until``), None once the range is done or ``count`` is reached. Positions are
        found by id each time, so the tail may grow or be trimmed between slices."""
        changes = self.chunk(after, until, limit + 1, reverse)
        found: list[Change] = []
        for change in changes[:limit]:
            if match is None or match(change):
                found.append(change)
                if len(found) >= count:
                    return found, None
        if len(changes) <= limit:
            return found, None
        edge = changes[limit - 1]
        if reverse:
            return found, (edge.index, edge.position - 1) if edge.position else (
                edge.index - 1, MAX_POSITION)
        return found, _id(edge)

    def after(self, after: Id, count: int,
              match: Callable[[Change], bool] | None = None) -> list[Change]:
        """Up to ``count`` changes with ids above ``after`` that ``match``, oldest first;
        ``Compacted`` if some after it were dropped. (All at once: see ``walk``.)"""
        self.check(after)
        return self.walk(after, TOP_ID, count, match, max(self._count, 1))[0]

    def between(self, start: Id, end: Id, count: int, reverse: bool = False,
                match: Callable[[Change], bool] | None = None) -> list[Change]:
        """XRANGE (or XREVRANGE): up to ``count`` retained changes with start <= id <= end
        that ``match``, in id order (reversed: newest first). Never ``Compacted``: a range
        reads what is there, as a Redis stream trimmed by MAXLEN does."""
        if count <= 0 or start > end:
            return []
        after = (start[0], start[1] - 1)  # (position -1 sorts below every real one)
        return self.walk(after, end, count, match, max(self._count, 1), reverse)[0]


def _last_id(record: Record | tuple[Any, ...]) -> Id:
    if type(record) is Bulk:
        return (record.index, record.position + len(record) - 1)
    return record[:2]  # type: ignore[index, return-value]


def key_filter(match_key: Callable[[bytes], bool]) -> Callable[[Change], bool]:
    """A change filter from a key predicate; a FLUSHALL concerns every key, so it passes."""
    def match(change: Change) -> bool:
        return (change.key == FLUSH_KEY and change.op in ("flushall", "flushdb")) or match_key(
            change.key)
    return match
