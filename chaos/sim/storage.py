"""A node's simulated disk: what survives a crash is only what was synced (plus a torn tail).

``SimStorage`` is the ``LogStorage`` one node incarnation runs on. The core reads a live
``MemoryStorage`` (so the core's own storage class is what gets exercised); every write is
also queued as a pending operation and reaches the durable ``DiskImage`` only at ``sync()``.
A crash keeps a random prefix of the pending writes, and may tear the first write it does
not keep fully (an append keeps only a prefix of its entries): a WAL written in order and
cut off by power loss. ``restart`` builds a fresh live storage from the image alone.

Snapshots are like DiskStorage's: a received snapshot streams into a ``SimSnapshotWriter``
(held by the node's incarnation only, so a crash loses it) and ``finish`` syncs, then
installs durably at once, as the snapshot file's rename does.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

from raftkv.raft.log_storage import LogStorage
from wire.raft import ClusterConfig, Entry, HardState, SnapshotMeta


class DiskError(Exception):
    """The core asked the disk for something impossible (e.g. an append leaving a gap)."""


@attrs.define
class DiskImage:
    """The durable bytes of one node: hard state, snapshot, and the log after it."""

    snapshot: SnapshotMeta
    snapshot_data: bytes = b""
    hard_state: HardState = attrs.field(factory=HardState)
    entries: list[Entry] = attrs.field(factory=list)

    @classmethod
    def bootstrap(cls, config: ClusterConfig) -> DiskImage:
        return cls(snapshot=SnapshotMeta(index=0, term=0, config=config))

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot.index

    def term(self, index: int) -> int | None:
        if index == self.snapshot.index:
            return self.snapshot.term
        pos = index - self.snapshot.index - 1
        if 0 <= pos < len(self.entries):
            return self.entries[pos].term
        return None

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index() + 1 or first <= self.snapshot.index:
            raise DiskError(
                f"append at {first} does not fit a log of {self.snapshot.index + 1}"
                f"..{self.last_index()}"
            )
        del self.entries[first - self.snapshot.index - 1 :]
        self.entries.extend(entries)

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        if meta.index <= self.snapshot.index:
            return
        del self.entries[: meta.index - self.snapshot.index]
        self.snapshot, self.snapshot_data = meta, data

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        if self.term(meta.index) == meta.term and meta.index >= self.snapshot.index:
            del self.entries[: meta.index - self.snapshot.index]
        else:
            self.entries = []
        self.snapshot, self.snapshot_data = meta, data

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "append":
            self.append(op[1])
        elif kind == "hard_state":
            self.set_hard_state(op[1])
        elif kind == "compact":
            self.compact(op[1], op[2])
        else:
            self.install_snapshot(op[1], op[2])

    def copy(self) -> DiskImage:
        return DiskImage(self.snapshot, self.snapshot_data, self.hard_state, list(self.entries))


def default_memory_factory(config: ClusterConfig) -> LogStorage:
    from raftkv.raft import MemoryStorage

    return MemoryStorage(config)


class SimStorage:
    """LogStorage over a live in-memory log, with writes buffered until ``sync``."""

    def __init__(
        self,
        image: DiskImage,
        make_memory: Callable[[ClusterConfig], LogStorage] = default_memory_factory,
    ) -> None:
        self.image = image
        self.make_memory = make_memory
        self.pending: list[tuple[Any, ...]] = []
        self.syncs = 0
        live = make_memory(image.snapshot.config)
        if image.snapshot.index > 0:
            live.install_snapshot(image.snapshot, image.snapshot_data)
        if image.entries:
            live.append(list(image.entries))
        if image.hard_state != HardState():
            live.set_hard_state(image.hard_state)
        self.live = live
        # The core reads through these constantly: bind the live log's methods directly.
        self.first_index = live.first_index
        self.last_index = live.last_index
        self.term = live.term
        self.entries = live.entries

    # -- read side: the live log (the hot ones are rebound in __init__) --------------------
    def initial_state(self) -> tuple[HardState, ClusterConfig]:
        return self.live.initial_state()

    def first_index(self) -> int:
        return self.live.first_index()

    def last_index(self) -> int:
        return self.live.last_index()

    def term(self, index: int) -> int:
        return self.live.term(index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        return self.live.entries(lo, hi, max_bytes)

    def snapshot_meta(self) -> SnapshotMeta:
        return self.live.snapshot_meta()

    def snapshot_data(self) -> bytes:
        return self.live.snapshot_data()

    def snapshot_size(self) -> int:
        return len(self.live.snapshot_data())

    def snapshot_chunk(self, offset: int, n: int) -> bytes:
        return self.live.snapshot_data()[offset : offset + n]

    def snapshot_writer(self, meta: SnapshotMeta) -> SimSnapshotWriter:
        if meta.index <= self.live.snapshot_meta().index:
            raise DiskError(f"snapshot {meta.index} is not newer than the one installed")
        return SimSnapshotWriter(self, meta)

    # -- write side: live now, durable at sync --------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        if entries:
            self.live.append(entries)
            self.pending.append(("append", list(entries)))

    def set_hard_state(self, hs: HardState) -> None:
        self.live.set_hard_state(hs)
        self.pending.append(("hard_state", hs))

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        self.live.install_snapshot(meta, data)
        self.pending.append(("install", meta, data))

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        self.live.compact(meta, data)
        self.pending.append(("compact", meta, data))

    def sync(self) -> None:
        for op in self.pending:
            self.image.apply(op)
        self.pending.clear()
        self.syncs += 1
        if self.image.last_index() != self.live.last_index():
            raise DiskError(
                f"live log ends at {self.live.last_index()} but the synced image at "
                f"{self.image.last_index()}"
            )

    # -- failure ---------------------------------------------------------------------------
    def crash(self, rng: random.Random, torn: bool = True) -> str:
        """Lose power: keep a random prefix of the unsynced writes; say what survived."""
        pending, self.pending = self.pending, []
        if not pending:
            return "nothing unsynced"
        keep = rng.randint(0, len(pending))
        for op in pending[:keep]:
            self.image.apply(op)
        note = f"kept {keep}/{len(pending)} unsynced writes"
        if torn and keep < len(pending) and pending[keep][0] == "append":
            entries = pending[keep][1]
            part = rng.randint(0, len(entries) - 1)
            if part:
                self.image.append(entries[:part])
                note += f" + {part}/{len(entries)} entries of a torn append"
        return note

    def durable_hard_state(self) -> HardState:
        return self.image.hard_state


class SimSnapshotWriter:
    """A snapshot received in chunks (contiguous; a resend may overlap, never a hole)."""

    def __init__(self, storage: SimStorage, meta: SnapshotMeta) -> None:
        self.storage = storage
        self.meta = meta
        self.data = bytearray()

    @property
    def received(self) -> int:
        return len(self.data)

    def write(self, offset: int, chunk: bytes) -> None:
        if offset > len(self.data):
            raise DiskError(f"snapshot chunk at {offset} leaves a hole after {len(self.data)}")
        self.data[offset : offset + len(chunk)] = chunk

    def finish(self) -> None:
        st = self.storage
        st.sync()  # earlier writes first: the crash states stay one linear history
        data = bytes(self.data)
        st.live.install_snapshot(self.meta, data)
        st.image.install_snapshot(self.meta, data)
        if st.image.last_index() != st.live.last_index():
            raise DiskError("the installed snapshot left the live log and the image apart")

    def abort(self) -> None:
        self.data = bytearray()
