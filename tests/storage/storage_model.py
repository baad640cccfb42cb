"""An in-memory model of what DiskStorage must recover, shared by the storage tests.

``Model`` mirrors the storage API. ``candidates()`` lists every state a crash right now may
legitimately recover to: the state at the last sync, then the state after each buffered
record of the pending group in order (a truncation and the entries replacing the suffix are
two records). Nothing outside that list is acceptable: an older state loses synced data, a
different one invents data.
"""

from __future__ import annotations

import os

import attrs

from raftkv.storage import DiskStorage, open_storage
from raftkv.storage.wal import parse_segment_name, scan_segment
from wire.raft import ClusterConfig, Entry, HardState, Member, SnapshotMeta

CONFIG = ClusterConfig((Member(1, "127.0.0.1:7101"), Member(2, "127.0.0.1:7102")))
CLUSTER = "test-cluster"


@attrs.frozen
class State:
    snap: SnapshotMeta
    snap_data: bytes
    hs: HardState
    entries: tuple[Entry, ...]

    def normalized(self) -> State:
        """What ``initial_state`` reports: commit is at least the snapshot index."""
        if self.hs.commit >= self.snap.index:
            return self
        return attrs.evolve(self, hs=attrs.evolve(self.hs, commit=self.snap.index))

    @property
    def last_index(self) -> int:
        return self.snap.index + len(self.entries)

    def term(self, index: int) -> int | None:
        if index == self.snap.index:
            return self.snap.term
        pos = index - self.snap.index - 1
        return self.entries[pos].term if 0 <= pos < len(self.entries) else None


def bootstrap_state(config: ClusterConfig = CONFIG) -> State:
    return State(SnapshotMeta(0, 0, config), b"", HardState(), ())


class Model:
    def __init__(self, state: State | None = None) -> None:
        self.durable = state or bootstrap_state()
        self.live = self.durable
        self.pending: list[State] = []

    def _step(self, state: State) -> None:
        self.live = state
        self.pending.append(state)

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        s = self.live
        keep = entries[0].index - s.snap.index - 1
        if keep < len(s.entries):
            self._step(attrs.evolve(s, entries=s.entries[:keep]))
        self._step(attrs.evolve(self.live, entries=self.live.entries + tuple(entries)))

    def set_hard_state(self, hs: HardState) -> None:
        if hs != self.live.hs:
            self._step(attrs.evolve(self.live, hs=hs))

    def sync(self) -> None:
        self.durable = self.live
        self.pending = []

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        self.sync()
        s = self.live
        drop = meta.index - s.snap.index
        self.live = self.durable = State(meta, data, s.hs, s.entries[drop:])

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        self.sync()
        s = self.live
        matches = s.term(meta.index) == meta.term
        rest = s.entries[meta.index - s.snap.index :] if matches else ()
        self.live = self.durable = State(meta, data, s.hs, rest)

    def candidates(self) -> list[State]:
        return [self.durable, *self.pending]


def state_of(storage: DiskStorage) -> State:
    hs, _ = storage.initial_state()
    entries = storage.entries(storage.first_index(), storage.last_index() + 1)
    return State(storage.snapshot_meta(), storage.snapshot_data(), hs, tuple(entries))


def reopen(path: str | os.PathLike[str], fsync: str = "never", **kw) -> DiskStorage:
    return open_storage(path, CLUSTER, 1, CONFIG, fsync=fsync, **kw)


def wal_end(path: str | os.PathLike[str]) -> int:
    """Where the records of the segment file ``path`` end: its size less the zeros
    allocated ahead (``raftkv.storage.wal``), which an open segment has past its end."""
    seq = parse_segment_name(os.path.basename(path))
    assert seq is not None, path
    return scan_segment(os.fspath(path), seq, is_last=True).good_end


def materialise(files: dict[str, bytes], path: str) -> None:
    """Make the directory at ``path`` hold exactly ``files`` (reused: faster than rmtree)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def entry(index: int, term: int, data: bytes | None = None) -> Entry:
    return Entry(term=term, index=index, kind=0, data=data if data is not None else b"e%d" % index)


def entries(lo: int, hi: int, term: int, size: int = 0) -> list[Entry]:
    """Entries ``lo..hi`` inclusive at ``term``; ``size`` pads each payload."""
    return [entry(i, term, (b"e%d." % i).ljust(size, b"x")) for i in range(lo, hi + 1)]
