"""What the consensus core needs from durable storage, and what the runtime writes to it.

The core only *reads* storage (``LogStorage``). The runtime (or the simulator) *writes* it
when it handles a ``Ready``: append entries, save the hard state, install a snapshot, then
``sync``; only after that may it send that Ready's messages (DESIGN.md: hard state and
entries are durable before any vote or append response leaves the node).

A fresh cluster is bootstrapped by storage whose snapshot meta is ``SnapshotMeta(index=0,
term=0, config=<initial voters>)``: every initial node starts from the same configuration.
"""

from __future__ import annotations

from typing import Protocol

from wire.raft import ClusterConfig, Entry, HardState, SnapshotMeta


class StorageError(Exception):
    """Base of the storage errors the core can see."""


class Compacted(StorageError):
    """The requested index is at or before the snapshot: use the snapshot instead."""


class Unavailable(StorageError):
    """The requested index is past the last index."""


class SnapshotSink(Protocol):
    """A snapshot being received (a follower's side of InstallSnapshot). Chunks are written
    as they arrive, so memory stays bounded; nothing is visible until ``finish``, and a
    receive that is never finished (a crash, a new transfer) leaves no trace."""

    meta: SnapshotMeta

    @property
    def received(self) -> int:
        """Bytes received so far (the next offset)."""

    def write(self, offset: int, chunk: bytes) -> None:
        """Write ``chunk`` at ``offset`` (<= received: a resend may overlap, never a hole)."""

    def finish(self) -> None:
        """Install it atomically: durable, replaces the state, discards the covered log."""

    def abort(self) -> None:
        """Drop what was received (idempotent)."""


class LogStorage(Protocol):
    # -- read side (the core) --------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ClusterConfig]:
        """Saved hard state and the latest configuration (from the log or the snapshot)."""

    def first_index(self) -> int:
        """Index of the first entry still in the log (snapshot index + 1)."""

    def last_index(self) -> int:
        """Index of the last entry (the snapshot index when the log is empty)."""

    def term(self, index: int) -> int:
        """Term of entry ``index``; valid from ``first_index() - 1`` (the snapshot's term)
        to ``last_index()``. Raises Compacted before that, Unavailable after."""

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``; at least one entry when ``lo < hi`` even if it exceeds
        ``max_bytes``. Raises Compacted / Unavailable like ``term``."""

    def snapshot_meta(self) -> SnapshotMeta:
        """Metadata of the latest snapshot (index 0 and the bootstrap config if none)."""

    def snapshot_data(self) -> bytes:
        """The latest snapshot's state-machine bytes (b"" for the bootstrap snapshot)."""

    def snapshot_size(self) -> int:
        """Length of the latest snapshot's data (what a leader sends in chunks)."""

    def snapshot_chunk(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes of the latest snapshot's data from ``offset`` (b"" past the end).
        The core checks ``snapshot_meta()`` first: chunks of one transfer come from one
        snapshot, and a newer snapshot restarts the transfer."""

    # -- write side (the runtime / simulator) ----------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        """Append; if ``entries[0].index <= last_index()`` first truncate the suffix from
        there (the core only sends such a batch after a term conflict)."""

    def set_hard_state(self, hs: HardState) -> None: ...

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Replace state with a received snapshot; discard log entries it covers (keep a
        suffix only if the entry at meta.index has meta.term)."""

    def snapshot_writer(self, meta: SnapshotMeta) -> SnapshotSink:
        """Start receiving snapshot ``meta`` in chunks (must be newer than the current one);
        the sink's ``finish`` installs it like ``install_snapshot``."""

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        """The state machine snapshotted up to ``meta.index``: save it, drop entries <= it."""

    def sync(self) -> None:
        """Make everything written so far durable (fsync). No-op in memory."""


# Fixed per-entry allowance (term, index, kind and framing) added to len(data) when entries
# are counted against a byte budget; storages and the core use the same measure.
ENTRY_OVERHEAD = 24


def entry_size(entry: Entry) -> int:
    """Approximate encoded size of an entry, for the ``max_bytes`` budgets."""
    return len(entry.data) + ENTRY_OVERHEAD
