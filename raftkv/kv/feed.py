"""The change feed: a bounded tail of the Changes applied entries made (issue 18).

The feed keeps the changes of the last ``retention_entries`` log indexes, and at most
``retention_bytes`` of them (keys and values plus a fixed overhead a change), dropping the
oldest change first. ``floor`` is the id of the newest change dropped (or, after a
snapshot that carried no tail, ``(snapshot index, MAX_POSITION)``): every change with an
id above the floor is still here. A reader that resumes after id X misses nothing if and
only if X >= floor; otherwise it gets ``Compacted``, naming the oldest retained id.

Retention is independent of Raft snapshots: the tail travels in the state machine's
snapshot (state.py), so a restarted node or a follower that installs a snapshot holds the
same tail as the peer that took it. The bounds are a node's settings (like
``--max-request-bytes``): nodes with different bounds keep different tails, each exact.

Pure: no clock, no I/O. Reads (``after``, ``between``) are bounded by their COUNT and by
the tail itself; a filtered read walks the tail from its id. A reader that must not hold
its caller for long takes the tail a ``chunk`` at a time (raftkv.server.streams).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from operator import itemgetter

import attrs

from .changes import FLUSH_KEY, Change

MAX_POSITION = 2**63 - 1
CHANGE_OVERHEAD = 96  # bytes a change costs beyond its key and value (object, id, op)
DEFAULT_RETENTION_ENTRIES = 100_000
DEFAULT_RETENTION_BYTES = 64 * 1024 * 1024
TOP_ID = (2**64, 0)  # above every id

Id = tuple[int, int]  # (log index, position)


def change_size(change: Change) -> int:
    return CHANGE_OVERHEAD + len(change.key) + (len(change.value) if change.value else 0)


_INDEX, _KEY, _VALUE = itemgetter(0), itemgetter(3), itemgetter(4)
TRIM_BLOCK = 1024  # changes weighed at once when trimming by bytes


def changes_size(changes: list[Change]) -> int:
    """The sum of ``change_size`` over ``changes``, by C-level iterators (no Python code
    run per change: a 100,000-key MSET is appended in one apply)."""
    return (CHANGE_OVERHEAD * len(changes) + sum(map(len, map(_KEY, changes)))
            + sum(map(len, filter(None, map(_VALUE, changes)))))


def _id(change: Change) -> Id:
    return (change.index, change.position)


@attrs.frozen
class FeedState:
    """The feed as plain data (for a snapshot): its floor and the changes above it.
    ``floor`` None: not known (a snapshot from before the feed existed), set by
    ``ChangeFeed.restored_at`` to the snapshot's index."""

    floor: Id | None
    changes: tuple[Change, ...] = ()


class Compacted(Exception):
    """The reader's id is older than what the feed still holds."""

    def __init__(self, oldest: Id | None, floor: Id) -> None:
        super().__init__(oldest, floor)
        self.oldest = oldest  # the oldest change retained, None if the tail is empty
        self.floor = floor


class ChangeFeed:
    """The retained tail (module docstring): appended to by the state machine's apply."""

    def __init__(self, retention_entries: int = DEFAULT_RETENTION_ENTRIES,
                 retention_bytes: int = DEFAULT_RETENTION_BYTES) -> None:
        if retention_entries < 1 or retention_bytes < 1:
            raise ValueError("the feed's retention bounds are at least 1")
        self.retention_entries = retention_entries
        self.retention_bytes = retention_bytes
        self._items: list[Change] = []
        self._head = 0  # items before it are dropped (compacted away in bulk)
        self.bytes = 0
        self.floor: Id | None = (0, 0)
        self.last_index = 0  # the highest log index appended (with or without changes)
        self.version = 0  # moves on every append, replace and restore: a cache's key

    # -- the state machine's side ---------------------------------------------------------

    def append(self, index: int, changes: list[Change]) -> None:
        """The entry at log ``index`` was applied and made ``changes`` (maybe none)."""
        self.version += 1
        if index > self.last_index:
            self.last_index = index
        if changes:
            self._items.extend(changes)
            self.bytes += changes_size(changes)
        items, head = self._items, self._head
        if head < len(items) and (items[head].index <= self.last_index - self.retention_entries
                                  or self.bytes > self.retention_bytes):
            self._trim()

    def _trim(self) -> None:
        """Drop the oldest changes past either bound. The entries bound cuts at an index
        (found by bisection), the bytes bound a block of ``TRIM_BLOCK`` at a time while
        the whole block must go, then change by change: Python work per block, not per
        change, when a large entry leaves the tail."""
        items, start = self._items, self._head
        end = len(items)
        oldest_kept = self.last_index - self.retention_entries  # indexes <= it go
        head = start
        if head < end and items[head].index <= oldest_kept:
            head = bisect.bisect_right(items, oldest_kept, lo=head, key=_INDEX)
            self.bytes -= changes_size(items[start:head])
        while head < end and self.bytes > self.retention_bytes:
            block = items[head:head + TRIM_BLOCK]
            size = changes_size(block)
            if self.bytes - size > self.retention_bytes:  # every change of it goes
                self.bytes -= size
                head += len(block)
                continue
            for change in block:
                if self.bytes <= self.retention_bytes:
                    break
                self.bytes -= change_size(change)
                head += 1
        if head > start:
            self.floor = _id(items[head - 1])
        if head > 1024 and head * 2 > len(items):
            del items[:head]
            head = 0
        self._head = head

    def state(self) -> FeedState:
        """A copy for a snapshot (the changes are immutable: a cheap list copy)."""
        return FeedState(self.floor, tuple(self._items[self._head:]))

    def replace(self, state: FeedState | None) -> None:
        """Take a snapshot's feed (None: the snapshot had none; see ``restored_at``)."""
        if state is None:
            state = FeedState(None)
        self.version += 1
        self._items = list(state.changes)
        self._head = 0
        self.bytes = changes_size(self._items)
        self.floor = state.floor
        self.last_index = self._items[-1].index if self._items else 0
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
        return len(self._items) - self._head

    @property
    def first(self) -> Change | None:
        return self._items[self._head] if len(self) else None

    @property
    def last(self) -> Change | None:
        return self._items[-1] if len(self) else None

    @property
    def known_floor(self) -> Id:
        return self.floor if self.floor is not None else (self.last_index, MAX_POSITION)

    @property
    def last_id(self) -> Id:
        """The id of the newest change there is, retained or not (``$``): a reader after it
        sees only changes made from now on."""
        last = self.last
        return _id(last) if last is not None else self.known_floor

    def check(self, after: Id) -> None:
        """``Compacted`` unless every change after ``after`` is retained."""
        if after < self.known_floor:
            first = self.first
            raise Compacted(_id(first) if first is not None else None, self.known_floor)

    def walk(self, after: Id, until: Id, count: int, match: Callable[[Change], bool] | None,
             limit: int, reverse: bool = False) -> tuple[list[Change], Id | None]:
        """One slice of a read: at most ``limit`` retained changes with after < id <= until
        examined, oldest first (``reverse``: newest first); up to ``count`` of them that
        ``match``, and the bound to resume from (the next ``after``, or reversed the next
        ``until``), None once the range is done or ``count`` is reached. Positions are
        found by id each time, so the tail may grow or be trimmed between slices."""
        items = self._items
        lo = bisect.bisect_right(items, after, lo=self._head, key=_id)
        hi = bisect.bisect_right(items, until, lo=lo, key=_id)
        found: list[Change] = []
        indexes = range(hi - 1, max(lo, hi - limit) - 1, -1) if reverse else range(
            lo, min(hi, lo + limit))
        for i in indexes:
            change = items[i]
            if match is None or match(change):
                found.append(change)
                if len(found) >= count:
                    return found, None
        if len(indexes) == hi - lo:
            return found, None
        edge = items[indexes[-1]]
        if reverse:
            return found, (edge.index, edge.position - 1) if edge.position else (
                edge.index - 1, MAX_POSITION)
        return found, _id(edge)

    def chunk(self, after: Id, until: Id, size: int, reverse: bool = False) -> list[Change]:
        """At most ``size`` retained changes with after < id <= until, oldest first
        (``reverse``: the newest first): a copy, so a reader may hold it while the tail
        grows or is trimmed, and go on from its last id with the next ``chunk``."""
        items = self._items
        lo = bisect.bisect_right(items, after, lo=self._head, key=_id)
        hi = bisect.bisect_right(items, until, lo=lo, key=_id)
        if reverse:
            return items[max(lo, hi - size):hi][::-1]
        return items[lo:min(hi, lo + size)]

    def after(self, after: Id, count: int,
              match: Callable[[Change], bool] | None = None) -> list[Change]:
        """Up to ``count`` changes with ids above ``after`` that ``match``, oldest first;
        ``Compacted`` if some after it were dropped. (All at once: see ``walk``.)"""
        self.check(after)
        return self.walk(after, TOP_ID, count, match, len(self._items))[0]

    def between(self, start: Id, end: Id, count: int, reverse: bool = False,
                match: Callable[[Change], bool] | None = None) -> list[Change]:
        """XRANGE (or XREVRANGE): up to ``count`` retained changes with start <= id <= end
        that ``match``, in id order (reversed: newest first). Never ``Compacted``: a range
        reads what is there, as a Redis stream trimmed by MAXLEN does."""
        if count <= 0 or start > end:
            return []
        after = (start[0], start[1] - 1)  # (position -1 sorts below every real one)
        return self.walk(after, end, count, match, len(self._items), reverse)[0]


def key_filter(match_key: Callable[[bytes], bool]) -> Callable[[Change], bool]:
    """A change filter from a key predicate; a FLUSHALL concerns every key, so it passes."""
    def match(change: Change) -> bool:
        return (change.key == FLUSH_KEY and change.op in ("flushall", "flushdb")) or match_key(
            change.key)
    return match
