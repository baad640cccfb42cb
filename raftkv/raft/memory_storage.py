"""LogStorage in memory, for unit tests and the deterministic simulator.

Besides the LogStorage protocol it models durability: ``sync()`` marks everything written so
far durable and ``crash()`` throws away what was written since (appends, truncations and hard
state), which is what a power cut does to the on-disk storage. ``compact`` and
``install_snapshot`` are durable on return, like the on-disk snapshot files
(install_snapshot also makes the log before it durable: it replaces the log wholesale).
``snapshot_writer`` streams a received snapshot like DiskStorage's SnapshotWriter: chunks
are held by the writer only (a crash loses them with it), ``finish`` installs.
"""

from __future__ import annotations

import itertools

from raftkv.raft.log_storage import Compacted, Unavailable, entry_size
from raftkv.raft.membership import decode_config
from wire.raft import CONFIG, ClusterConfig, Entry, HardState, SnapshotMeta


class MemoryStorage:
    def __init__(self, config: ClusterConfig) -> None:
        self._hs = HardState()
        self._snap = SnapshotMeta(index=0, term=0, config=config)
        self._snap_data = b""
        self._ents: list[Entry] = []  # indices snap.index + 1 ...
        # Durability: the hard state at the last sync, and the log's durable entries from
        # index _dirty_from on (the ones overwritten since the last sync).
        self._durable_hs = self._hs
        self._dirty_from: int | None = None
        self._saved: list[Entry] = []

    # -- read side -------------------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ClusterConfig]:
        for e in reversed(self._ents):
            if e.kind == CONFIG:
                return self._hs, decode_config(e.data)
        return self._hs, self._snap.config

    def first_index(self) -> int:
        return self._snap.index + 1

    def last_index(self) -> int:
        return self._snap.index + len(self._ents)

    def term(self, index: int) -> int:
        if index < self._snap.index:
            raise Compacted(index)
        if index == self._snap.index:
            return self._snap.term
        if index > self.last_index():
            raise Unavailable(index)
        return self._ents[index - self._snap.index - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        if lo > hi:
            raise ValueError(f"entries({lo}, {hi}): lo > hi")
        if lo <= self._snap.index:
            raise Compacted(lo)
        if hi > self.last_index() + 1:
            raise Unavailable(hi - 1)
        base = self._snap.index + 1
        out = self._ents[lo - base : hi - base]
        if max_bytes is not None and out:
            size = 0
            for n, e in enumerate(out):
                size += entry_size(e)
                if size > max_bytes and n > 0:
                    return out[:n]
        return out

    def snapshot_meta(self) -> SnapshotMeta:
        return self._snap

    def snapshot_data(self) -> bytes:
        return self._snap_data

    def snapshot_size(self) -> int:
        return len(self._snap_data)

    def snapshot_chunk(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0:
            raise ValueError("offset and n must be >= 0")
        return self._snap_data[offset : offset + n]

    # -- write side ------------------------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        for a, b in itertools.pairwise(entries):
            if b.index != a.index + 1:
                raise ValueError(f"entries not contiguous at {a.index} -> {b.index}")
        entries = [e for e in entries if e.index > self._snap.index]  # already compacted
        if not entries:
            return
        first = entries[0].index
        last = self.last_index()
        if first > last + 1:
            raise ValueError(f"append at {first} leaves a gap after last index {last}")
        pos = first - self._snap.index - 1
        self._remember_overwrite(first, self._ents[pos:])
        del self._ents[pos:]
        self._ents.extend(entries)

    def set_hard_state(self, hs: HardState) -> None:
        self._hs = hs

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        keep: list[Entry] = []
        if (
            self._snap.index < meta.index <= self.last_index()
            and self.term(meta.index) == meta.term
        ):
            keep = self._ents[meta.index - self._snap.index :]
        self._snap, self._snap_data, self._ents = meta, data, keep
        self.sync()

    def snapshot_writer(self, meta: SnapshotMeta) -> MemorySnapshotWriter:
        self._check_newer(meta)
        return MemorySnapshotWriter(self, meta)

    def _check_newer(self, meta: SnapshotMeta) -> None:
        if meta.index <= self._snap.index:
            raise ValueError(f"snapshot at {meta.index} is not newer than {self._snap.index}")

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        if meta.index <= self._snap.index:
            return
        if meta.index > self.last_index():
            raise Unavailable(meta.index)
        if self.term(meta.index) != meta.term:
            raise ValueError(f"snapshot term {meta.term} != log term at {meta.index}")
        self._ents = self._ents[meta.index - self._snap.index :]
        self._snap, self._snap_data = meta, data

    def sync(self) -> None:
        self._durable_hs = self._hs
        self._dirty_from = None
        self._saved = []

    # -- simulation ------------------------------------------------------------------------
    def crash(self) -> None:
        """Lose everything not synced: the state a restarted process would find on disk."""
        self._hs = self._durable_hs
        if self._dirty_from is not None:
            base = self._snap.index + 1
            kept = self._ents[: max(0, self._dirty_from - base)]
            self._ents = kept + [e for e in self._saved if e.index > self._snap.index]
        self.sync()

    def _remember_overwrite(self, first: int, old: list[Entry]) -> None:
        # Keep the durable entries an unsynced append overwrites, for crash().
        if self._dirty_from is None:
            self._dirty_from, self._saved = first, list(old)
        elif first < self._dirty_from:
            self._saved = old[: self._dirty_from - first] + self._saved
            self._dirty_from = first


class MemorySnapshotWriter:
    """A snapshot received in chunks; the same rules as DiskStorage's SnapshotWriter."""

    def __init__(self, storage: MemoryStorage, meta: SnapshotMeta) -> None:
        self._storage = storage
        self.meta = meta
        self._buf = bytearray()
        self._closed = False

    @property
    def received(self) -> int:
        return len(self._buf)

    def write(self, offset: int, chunk: bytes) -> None:
        if self._closed:
            raise ValueError("snapshot writer is closed")
        if offset < 0 or offset > len(self._buf):
            raise ValueError(f"chunk at offset {offset} leaves a hole (have {len(self._buf)})")
        self._buf[offset : offset + len(chunk)] = chunk

    def finish(self) -> None:
        if self._closed:
            raise ValueError("snapshot writer is closed")
        self._closed = True
        self._storage._check_newer(self.meta)  # overtaken while receiving
        self._storage.install_snapshot(self.meta, bytes(self._buf))

    def abort(self) -> None:
        self._closed = True
        self._buf = bytearray()
