"""The core's view of its log: what storage holds plus the unstable tail not yet persisted.

Entries the core appends (as leader, or from AppendEntries as follower) are *unstable* until
the runtime has written them and called ``advance``. Unstable entries at ``offset`` and above
supersede whatever storage holds there (a conflict truncates the tail before storage hears
of it).

A snapshot received from the leader is *pending* from the moment its last chunk arrives
until the runtime has installed it (``restore`` .. ``installed``): meanwhile the log is the
snapshot plus the unstable tail after it, and storage (which the runtime is busy replacing,
perhaps from a worker thread) is not read at all.
"""

from __future__ import annotations

from raftkv.raft.log_storage import Compacted, LogStorage, Unavailable, entry_size
from wire.raft import Entry, SnapshotMeta


class RaftLog:
    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        self.offset = storage.last_index() + 1  # index of unstable[0]
        self.emitted = storage.last_index()  # highest index already handed out in a Ready
        self.pending: SnapshotMeta | None = None  # restored, not yet installed in storage

    # -- reads -----------------------------------------------------------------------------
    def first_index(self) -> int:
        if self.pending is not None:
            return self.pending.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.offset + len(self.unstable) - 1
        if self.pending is not None:
            return self.pending.index
        return self.storage.last_index()

    def stable_index(self) -> int:
        """Last index known durable (the leader counts itself only up to here)."""
        return self.offset - 1

    def term(self, index: int) -> int:
        """Term at ``index``; raises Compacted / Unavailable outside the log."""
        if self.unstable and index >= self.offset:
            if index > self.last_index():
                raise Unavailable(index)
            return self.unstable[index - self.offset].term
        if self.pending is not None:
            if index == self.pending.index:
                return self.pending.term
            raise Compacted(index) if index < self.pending.index else Unavailable(index)
        return self.storage.term(index)

    def term_or_none(self, index: int) -> int | None:
        try:
            return self.term(index)
        except (Compacted, Unavailable):
            return None

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        return self.term_or_none(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a log ending at (last_index, last_term) at least as up to date as ours (5.4.1)?"""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi) within ``max_bytes`` (at least one); raises Compacted/Unavailable."""
        if lo >= hi:
            return []
        if hi > self.last_index() + 1:
            raise Unavailable(hi - 1)
        out: list[Entry] = []
        if self.pending is not None and lo <= self.pending.index:
            raise Compacted(lo)
        if lo < self.offset:
            out = self.storage.entries(lo, min(hi, self.offset), max_bytes)
            if len(out) < min(hi, self.offset) - lo:
                return out  # byte budget reached inside storage
        if hi > self.offset:
            tail = self.unstable[max(lo, self.offset) - self.offset : hi - self.offset]
            if max_bytes is None:
                out += tail
            else:
                size = sum(entry_size(e) for e in out)
                for e in tail:
                    size += entry_size(e)
                    if size > max_bytes and out:
                        break
                    out.append(e)
        return out

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or that we lack); 0 if all
        match. Matching entries are never rewritten: that is what keeps a stale or duplicated
        AppendEntries harmless."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def first_index_of_term(self, index: int, floor: int) -> int:
        """First index >= ``floor`` whose term equals the term at ``index`` (binary search:
        terms never decrease along the log)."""
        term = self.term(index)
        lo, hi = floor, index
        while lo < hi:
            mid = (lo + hi) // 2
            if self.term(mid) < term:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def last_index_with_term_at_most(self, term: int, hi: int) -> int | None:
        """Largest index <= ``hi`` whose term is <= ``term`` (None if compacted away)."""
        lo = self.first_index() - 1
        hi = min(hi, self.last_index())
        if hi < lo or self.term(lo) > term:
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.term(mid) <= term:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # -- writes ----------------------------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        """Append after the last entry, or replace the tail from ``entries[0].index``."""
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index() + 1:
            raise ValueError(f"append at {first} leaves a gap after {self.last_index()}")
        if self.unstable and first >= self.offset:
            del self.unstable[first - self.offset :]
            self.unstable.extend(entries)
        else:
            self.offset = first
            self.unstable = list(entries)
        self.emitted = min(self.emitted, first - 1)

    def append_next(self, term: int, kind: int, data: bytes) -> Entry:
        """Append one entry after the last (a leader's proposal) and return it: ``append``
        of that one entry, without its list, its gap and replacement tests and its second
        ``last_index`` (a proposal each on the leader; issue 15). ``emitted`` never
        exceeds the last index, so it stays as it is."""
        unstable = self.unstable
        if not unstable:
            e = Entry(term, self.last_index() + 1, kind, data)
            self.append([e])
            return e
        e = Entry(term, self.offset + len(unstable), kind, data)
        unstable.append(e)
        return e

    def take_unemitted(self) -> list[Entry]:
        """Unstable entries not yet handed out in a Ready (and mark them handed out)."""
        start = max(self.emitted + 1, self.offset)
        out = self.unstable[start - self.offset :]
        if out:
            self.emitted = out[-1].index
        return out

    def has_unemitted(self) -> bool:
        return bool(self.unstable) and self.last_index() > self.emitted

    def restore(self, meta: SnapshotMeta) -> None:
        """Become the snapshot ``meta`` (the whole log conflicts with it or is too short):
        every entry is dropped, the unstable tail restarts after it."""
        self.pending = meta
        self.unstable = []
        self.offset = meta.index + 1
        self.emitted = meta.index

    def installed(self, meta: SnapshotMeta) -> None:
        """The runtime installed the pending snapshot ``meta``: read storage again."""
        if self.pending == meta:
            self.pending = None

    def stable_to(self, index: int, term: int) -> None:
        """The runtime persisted entries up to (index, term). Ignored if the tail has been
        replaced since (a later Ready carries the replacement), or if a snapshot was
        restored since (the Ready that installs it comes later)."""
        if self.pending is not None:
            return
        if not self.unstable or not self.offset <= index <= self.last_index():
            return
        if self.unstable[index - self.offset].term != term:
            return
        del self.unstable[: index - self.offset + 1]
        self.offset = index + 1
