"""The leader's view of each follower: how far it matches, what to send next, flow control.

States (as etcd-io/raft's tracker):
- PROBE: the match point is unknown; at most one AppendEntries in flight, resumed by its
  reply or by a heartbeat reply.
- REPLICATE: the follower is known to match up to ``match``; send optimistically from
  ``next`` with up to ``max_inflight`` unacknowledged AppendEntries (pipelining).
- SNAPSHOT: the follower needs entries the leader has compacted away: no AppendEntries
  (heartbeats only) while the snapshot goes out in chunks (``SnapshotTransfer``), until the
  follower acknowledges the install; then REPLICATE from the snapshot index (its match).

Safety rule: ``match`` and ``next`` never move backwards on a success, and out-of-date
replies are ignored (a reordered reply must not rewind a follower's progress).
"""

from __future__ import annotations

import enum
from collections import deque

import attrs

from wire.raft import SnapshotMeta


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@attrs.define
class Inflights:
    """Last indexes of unacknowledged AppendEntries, oldest first."""

    capacity: int
    _items: deque[int] = attrs.field(factory=deque)

    def add(self, last_index: int) -> None:
        self._items.append(last_index)

    def free_le(self, index: int) -> None:
        while self._items and self._items[0] <= index:
            self._items.popleft()

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def reset(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@attrs.define
class SnapshotTransfer:
    """One snapshot going to one follower, with a window of chunks in flight.

    ``acked``: bytes the follower confirmed holding; ``next``: the next byte to send;
    ``inflight``: end offsets of the chunks sent and not yet acknowledged. A rejection or a
    stall (no acknowledgement for ``snapshot_retry_ticks``) rewinds ``next`` to what the
    follower holds: resent chunks overlap harmlessly."""

    meta: SnapshotMeta
    size: int
    acked: int = 0
    next: int = 0
    last_sent: bool = False  # the chunk with done=True is out (until a rewind)
    idle_ticks: int = 0
    inflight: deque[int] = attrs.field(factory=deque)

    def can_send(self, window: int) -> bool:
        return not self.last_sent and len(self.inflight) < window

    def sent(self, end: int, done: bool) -> None:
        self.inflight.append(end)
        self.next = end
        self.last_sent = done

    def ack(self, offset: int) -> None:
        """The follower holds ``offset`` bytes; only moves forward."""
        if offset > self.acked:
            self.acked = min(offset, self.size)
            self.idle_ticks = 0
        while self.inflight and self.inflight[0] <= self.acked:
            self.inflight.popleft()
        if self.next < self.acked:
            self.next = self.acked

    def rewind(self, offset: int) -> None:
        """Resend from ``offset`` (what the follower says it holds)."""
        self.acked = min(offset, self.size)
        self.next = self.acked
        self.last_sent = False
        self.idle_ticks = 0
        self.inflight.clear()


@attrs.define
class Progress:
    match: int
    next: int
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False  # PROBE: an AppendEntries is out, wait for a reply
    pending_snapshot: int = 0  # SNAPSHOT: index of the snapshot being sent
    transfer: SnapshotTransfer | None = None  # SNAPSHOT: the chunked transfer in progress
    recent_active: bool = False  # heard from within the current CheckQuorum period
    active_before: bool = False  # heard from within the previous one (a removal's check)
    acked_seq: int = 0  # highest ReadIndex round this follower has answered
    sent_commit: int = 0  # highest commit index this follower has been told it may use

    def paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.transfer = None
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.transfer = None
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self, meta: SnapshotMeta, size: int) -> None:
        """Start (or restart, for a newer snapshot) sending ``meta`` from offset 0."""
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = meta.index
        self.transfer = SnapshotTransfer(meta, size)
        self.probe_sent = False
        self.inflights.reset()

    def maybe_update(self, match: int) -> bool:
        """A success reply says the follower matches up to ``match``. Only moves forward."""
        updated = match > self.match
        if updated:
            self.match = match
        self.next = max(self.next, match + 1)
        self.inflights.free_le(match)
        return updated

    def can_bump_commit(self, commit: int) -> bool:
        """Could the follower learn a higher commit index from an empty AppendEntries?"""
        return min(commit, self.match) > self.sent_commit

    def sent_entries(self, last: int) -> None:
        """An AppendEntries ending at ``last`` went out."""
        if self.state is ProgressState.REPLICATE:
            self.next = last + 1
            self.inflights.add(last)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True
