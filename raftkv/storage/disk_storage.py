"""DiskStorage: a durable ``LogStorage`` made of WAL segments, snapshot files and meta.json.

Synchronous and single-threaded by design: the runtime calls it from one worker thread at
a time (``trio.to_thread.run_sync``). Reads are served from memory: every entry since the
latest snapshot is kept in a list (snapshots bound the log), so ``term`` is O(1) and
``entries`` O(size of the result). The list holds each entry as a plain ``(term, index,
kind, data)`` tuple, made back into an ``Entry`` when read: a tuple of ints and bytes is
one CPython's garbage collector stops tracking, an ``Entry`` (a slotted attrs instance)
never is, and every full collection walked the whole log on the event loop (issue 12:
100k entries were most of a 48 ms full pass; ``tests/bench/bench_gc_population.py``).

Writes are group-committed: ``append`` and ``set_hard_state`` only encode records into a
buffer (and update memory, which the core reads at once); ``sync`` writes the whole buffer
with one ``pwrite`` and one ``fdatasync`` (into space allocated ahead: ``wal``).
``compact``, ``install_snapshot`` and a finished ``SnapshotWriter`` first sync the
buffer, then are durable when they return.

Crash reasoning (what recovery sees after a crash at any point):
- a group is appended then fsynced; a crash mid-group leaves a prefix of it, possibly cut
  inside a record: the torn final record is truncated away on open, the complete records
  before it are a prefix of the group, which is a state between the last two syncs;
- a truncation marker precedes the entries that replace the suffix, in the same group;
- a snapshot file appears only complete (temp + fsync + rename + directory fsync), and
  segments or older snapshots are deleted only after that, oldest segment first;
- on open the log is reconciled with the newest snapshot by the same rule
  ``install_snapshot`` applies, so a crash anywhere inside an install recovers to the
  installed state once the snapshot file exists, and to the old state before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from itertools import pairwise, starmap
from operator import itemgetter
from typing import TypeVar

import attrs

from raftkv.raft.log_storage import ENTRY_OVERHEAD, Compacted, Unavailable
from raftkv.raft.membership import decode_config
from raftkv.storage import records
from raftkv.storage.data_files import check_regular
from raftkv.storage.errors import (
    CorruptionError,
    DataDirLocked,
    DataDirMismatch,
    DataDirNotWritable,
    NotADataDir,
    SnapshotNotWritten,
    StorageFailure,
)
from raftkv.storage.files import (
    SPARE_PREFIX,
    TMP_SUFFIX,
    Spare,
    remove_durably,
    truncate_durably,
)
from raftkv.storage.fsync import (
    FsyncPolicy,
    fdatasync_fd,
    fsync_dir,
    fsync_fd,
    fsync_path,
    hold_dir,
    release_dir,
)
from raftkv.storage.meta import META_NAME, DirMeta, read_meta, write_meta
from raftkv.storage.snapshot_file import (
    CheckedData,
    SnapshotFile,
    SnapshotFileWriter,
    SnapshotReader,
    decode_checked,
    parse_snapshot_name,
    snapshot_name,
    write_snapshot,
)
from raftkv.storage.wal import (
    Segment,
    create_segment,
    parse_segment_name,
    scan_segment,
    segment_header,
    segment_name,
)
from wire.errors import ProtocolError
from wire.raft import CONFIG, MAX_NODE_ID, ClusterConfig, Entry, HardState, SnapshotMeta

T = TypeVar("T")

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
LOCK_NAME = "LOCK"
PROBE_NAME = "write-probe" + TMP_SUFFIX
# Free space a snapshot of our own state must leave behind: the WAL keeps growing while
# the snapshot is written beside it, and a WAL write that finds the disk full stops the
# node, while a snapshot skipped for want of space is only retried later.
SNAPSHOT_HEADROOM = 16 * 1024 * 1024
# File descriptors an open DiskStorage may hold at once: the LOCK, the data directory
# (for fsyncs), the active segment, the current snapshot (shared by every reader of it),
# the snapshot it replaced while a transfer still reads it, a spare segment, a spare
# snapshot file, and a snapshot of our own state being written. A node must keep this many
# free of clients and peers (maxclients = open-file limit - reserve); the storage itself
# never needs a new descriptor where failing to get one would stop the node (see Spare).
STORAGE_FDS = 8

log = logging.getLogger("raftkv.storage")
_DATA = itemgetter(3)  # a row's data: rows are (term, index, kind, data)
_ENTRY = {Entry}
_NEVER = 2**63  # a _recent_first no index reaches


def open_storage(
    data_dir: str | os.PathLike[str],
    cluster_id: str,
    node_id: int,
    bootstrap_config: ClusterConfig,
    fsync: FsyncPolicy | str = "always",
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> DiskStorage:
    """Open the data directory, creating and bootstrapping it if it does not exist yet.

    A new directory starts from the snapshot ``SnapshotMeta(0, 0, bootstrap_config)``;
    an existing one keeps the configuration on disk and ignores ``bootstrap_config``
    (``storage.created`` tells which happened). A directory of another cluster or node
    raises ``DataDirMismatch``.
    """
    return DiskStorage(
        os.fspath(data_dir), cluster_id, node_id, bootstrap_config, fsync, segment_size
    )


# An append whose entries carry at least this much data is encoded (msgpack, CRC, copies)
# by ``sync``, which the node runs in its sync thread, instead of on the event loop: an
# 8 MiB entry costs several copies and a CRC, tens of ms on a loaded machine (issue 12).
DEFER_ENCODING_BYTES = 256 * 1024


_Row = tuple[int, int, int, bytes]  # an entry as kept in memory: (term, index, kind, data)
# The Entry objects of the newest entries (between half this many and this many) are kept
# as appended, and ``entries`` hands them out again instead of building new ones from the
# rows: a follower applies what it appended a moment before, and building an Entry cost
# ~0.25 us of a follower's ~0.8 us to append and read back an entry (4.3% of its busy
# samples at -P16 c50: issue 15, perf-follow). Few, as every one is an object the
# collector tracks (the rows are not: issue 12): at most 512 of them, ~0.25 ms of a full
# collection.
RECENT_ENTRIES = 512


@attrs.define
class _Replay:
    """The log as the WAL records describe it, before reconciling with the snapshot."""

    base: int | None = None  # index just before raw[0]; None until a record fixes it
    raw: list = attrs.Factory(list)  # [term, kind, data] per entry
    hs: HardState | None = None

    @property
    def last(self) -> int:
        assert self.base is not None
        return self.base + len(self.raw)


def _check_config_entry(data: bytes, path: str, offset: int) -> None:
    """A CONFIG entry must decode to a configuration of distinct ids in 1..MAX_NODE_ID,
    as the peer port requires of a leader's (raftkv.raft.validation): the core decodes it
    at start, and garbage there was a traceback instead of a refusal (attack5)."""
    try:
        ids = [m.id for m in decode_config(data).members]
    except (ProtocolError, ValueError, TypeError) as exc:
        raise CorruptionError(path, offset, f"a CONFIG entry does not decode ({exc})") from None
    if len(set(ids)) != len(ids) or not all(1 <= i <= MAX_NODE_ID for i in ids):
        raise CorruptionError(path, offset, f"a CONFIG entry has bad member ids {ids}")


def _refuse_foreign(d: str) -> list[str]:
    """The names in ``d`` (which has no meta.json), all of them files an interrupted
    bootstrap leaves; NotADataDir naming the first that is not."""
    snap0, seg1 = snapshot_name(0, 0), segment_name(1)
    seg1_size = len(segment_header(1) + records.hard_state_record(HardState()))
    names = sorted(os.listdir(d))
    for name in names:
        ours = name in (LOCK_NAME, snap0) or name.endswith(TMP_SUFFIX)
        if name == seg1:
            ours = os.path.getsize(os.path.join(d, name)) == seg1_size
        if not ours:
            raise NotADataDir(f"{d} has no {META_NAME} but holds {name!r}: not a RaftKV dir")
    return names


def reconcile(r: _Replay, s: SnapshotMeta, first_segment: str) -> list[_Row] | None:
    """The entries after the snapshot: the ``install_snapshot`` rule, applied on open.

    Keep the WAL's suffix after the snapshot index only if the WAL holds the snapshot's
    entry with the snapshot's term (or starts right after it); otherwise the WAL is older
    than the snapshot (an install the crash interrupted) and is void: None.
    """
    if r.base is None:
        return []
    if r.base > s.index:
        raise CorruptionError(
            first_segment, 0, f"WAL starts at {r.base + 1}, after snapshot {s.index}"
        )
    if s.index > r.last:
        return None
    if s.index > r.base and r.raw[s.index - r.base - 1][0] != s.term:
        return None
    first = s.index + 1
    return [(t, i, k, b) for i, (t, k, b) in enumerate(r.raw[first - r.base - 1 :],
                                                        start=first)]


class DiskStorage:
    """A durable LogStorage (raftkv.raft.log_storage) on a local directory."""

    def __init__(
        self,
        data_dir: str,
        cluster_id: str,
        node_id: int,
        bootstrap_config: ClusterConfig,
        fsync: FsyncPolicy | str = "always",
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        if type(node_id) is not int or node_id < 1:
            raise ValueError(f"node id must be an integer >= 1, not {node_id!r}")
        if segment_size < 1:
            raise ValueError("segment_size must be positive")
        self.data_dir = os.path.abspath(data_dir)
        self.fsync_policy = FsyncPolicy.parse(fsync)
        self.segment_size = segment_size
        self.created = False
        self.recovery_notes: list[str] = []  # what open repaired, for the runtime to log
        self._failed: BaseException | None = None
        self._closed = False
        self._buf = bytearray()
        self._buf_max_index = 0
        # Records before ``_buf`` in WAL order when a large append deferred its encoding:
        # bytes, or the entries whose record ``sync`` encodes (DEFER_ENCODING_BYTES).
        self._parts: list[bytes | list[Entry]] = []
        self._segments: list[Segment] = []
        self._entries: list[_Row] = []  # (term, index, kind, data) per entry: see the docstring
        # The Entry objects of the log's newest entries, from index ``_recent_first`` to the
        # last (RECENT_ENTRIES): the very objects appended (immutable), or none.
        self._recent: list[Entry] = []
        self._recent_first = 1
        self._chunk_reader: SnapshotReader | None = None  # for snapshot_chunk
        self._lock_fd = -1
        self._dir_fd = -1
        self._snap_file: SnapshotFile | None = None
        self._spare_segment: Spare | None = None  # for the next segment roll or WAL reset
        self._spare_snapshot: Spare | None = None  # for the next snapshot from a leader
        self._roll_postponed = False
        try:
            self._open(cluster_id, node_id, bootstrap_config)
        except OSError as e:
            self._release()
            raise StorageFailure(f"cannot open data dir {self.data_dir}: {e}") from e
        except BaseException:
            self._release()
            raise

    # -- opening and recovery --------------------------------------------------------------
    def _open(self, cluster_id: str, node_id: int, bootstrap: ClusterConfig) -> None:
        d, policy = self.data_dir, self.fsync_policy
        if os.path.lexists(d) and not os.path.isdir(d):
            raise DataDirNotWritable(f"data dir {d} exists and is not a directory")
        if not os.path.isdir(d):
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise DataDirNotWritable(f"cannot create data dir {d}: {e}") from None
            fsync_dir(os.path.dirname(d), policy)  # the new directory's name is durable
        self._refuse_if_foreign()
        self._probe_writable()
        self._lock()
        self._dir_fd = hold_dir(d)
        self._make_durable_what_we_found()
        meta = read_meta(d)
        if meta is None:
            self._initialise(DirMeta(cluster_id=cluster_id, node_id=node_id), bootstrap)
            self.created = True
        elif (meta.cluster_id, meta.node_id) != (cluster_id, node_id):
            raise DataDirMismatch(
                f"data dir {d} belongs to cluster {meta.cluster_id!r} node {meta.node_id}, "
                f"not cluster {cluster_id!r} node {node_id}; use another directory"
            )
        self._remove_temp_files()
        self._load_snapshot()
        self._recover_wal()
        self._replenish_spares()

    def _probe_writable(self) -> None:
        """Create, fsync and remove a file, so a directory the node cannot write is found
        now, with one clear error, not at the first snapshot or segment roll (which need new
        files) while the node already serves. A real write, not ``os.access``: root passes
        every permission check, but not a read-only mount or an immutable directory. The
        file is empty: a nearly full disk is not unwritable (a full one is the runtime's
        ENOSPC stop). A leftover probe is a temp file, removed on open like any other."""
        d = self.data_dir
        path = os.path.join(d, PROBE_NAME)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.unlink(path)
            fsync_dir(d, self.fsync_policy)
        except OSError as e:
            raise DataDirNotWritable(f"data dir {d} is not writable: {e.strerror} "
                                     f"({e.filename or d})") from None

    def _refuse_if_foreign(self) -> None:
        """NotADataDir for a directory without meta.json holding what no interrupted
        bootstrap leaves, before the probe or the lock create anything in it: a mistyped
        ``--data-dir ~`` was refused but left a LOCK file behind (attack21). ``_initialise``
        checks again under the lock (a bootstrap may have run in between)."""
        if not os.path.lexists(os.path.join(self.data_dir, META_NAME)):
            _refuse_foreign(self.data_dir)

    def _lock(self) -> None:
        """One storage per directory: two nodes on one WAL would destroy it.

        The file is created 0644 like every other file here (it holds nothing, so nothing
        needs hiding; the directory's own mode is what guards the data). It was created with
        the default 0o777, executable under umask 022 (attack21); an old one loses its
        execute bits."""
        path = os.path.join(self.data_dir, LOCK_NAME)
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirLocked(f"data dir {self.data_dir} is in use by another node") from None
        mode = stat.S_IMODE(os.fstat(self._lock_fd).st_mode)
        if mode & 0o111:
            with contextlib.suppress(OSError):  # (not ours to change: harmless, keep going)
                os.fchmod(self._lock_fd, mode & ~0o111)

    def _initialise(self, meta: DirMeta, bootstrap: ClusterConfig) -> None:
        """Bootstrap snapshot, first segment, then meta.json last: its presence means done.

        A crash before meta.json leaves only files this very function writes; they are
        removed and the directory initialised again. Anything else means the directory
        is not ours and is refused.
        """
        d, policy = self.data_dir, self.fsync_policy
        for name in _refuse_foreign(d):
            if name != LOCK_NAME:
                remove_durably(d, name, policy)
        preamble = records.hard_state_record(HardState())
        write_snapshot(d, SnapshotMeta(index=0, term=0, config=bootstrap), b"", policy).release()
        create_segment(d, 1, preamble, policy).close()
        write_meta(d, meta, policy)

    def _remove_temp_files(self) -> None:
        """Temp files are unfinished snapshots / segments / meta: never visible state."""
        temps = [n for n in os.listdir(self.data_dir) if n.endswith(TMP_SUFFIX)]
        for name in temps:
            path = os.path.join(self.data_dir, name)
            # Every crash leaves the (empty) spares: only one written into is news.
            unused = name.startswith(SPARE_PREFIX) and os.path.getsize(path) == 0
            os.unlink(path)
            if not unused:
                self.recovery_notes.append(f"removed unfinished {name}")
        if temps:
            fsync_dir(self.data_dir, self.fsync_policy)

    def _make_durable_what_we_found(self) -> None:
        """fsync every file recovery will trust (segments, snapshots, meta) and then the
        directory, before reading any of them.

        Why: the previous process may have died (kill -9, a crash, a failed fsync that
        stopped it) after its ``write`` and before its ``fsync``. Its data then sits in the
        kernel's page cache, and this process reads it back as if it were on disk. Acting on
        it (voting with that hard state, acknowledging those entries, counting them towards
        a commit) and then losing power would lose or change what other nodes were told is
        durable, breaking Raft's safety. After these fsyncs, what recovery reads is what
        the disk holds. (A page a failed fsync already dropped is not in the cache either:
        the scan sees what is really there.) Costs one fsync per file, nearly free when
        nothing is dirty.
        """
        d, policy = self.data_dir, self.fsync_policy
        for name in sorted(os.listdir(d)):
            if name == META_NAME or parse_segment_name(name) or parse_snapshot_name(name):
                check_regular(os.path.join(d, name))  # a FIFO would block the open below
                fsync_path(os.path.join(d, name), policy)
        fsync_dir(d, policy)

    def _load_snapshot(self) -> None:
        found = sorted(
            (parsed, name)
            for name in os.listdir(self.data_dir)
            if (parsed := parse_snapshot_name(name)) is not None
        )
        if not found:
            raise CorruptionError(self.data_dir, 0, "no snapshot file in an initialised data dir")
        (index, term), name = found[-1]
        snap = SnapshotFile(os.path.join(self.data_dir, name))
        self._snap, self._snap_file = snap.meta, snap  # (released by close from here on)
        if (snap.meta.index, snap.meta.term) != (index, term):
            raise CorruptionError(snap.path, 0, f"meta says {snap.meta.index}/{snap.meta.term}")
        # Older ones survive only a crash between installing this one and removing them.
        for _, old in found[:-1]:
            remove_durably(self.data_dir, old, self.fsync_policy)
            self.recovery_notes.append(f"removed superseded {old}")

    def _recover_wal(self) -> None:
        d = self.data_dir
        seqs = sorted(s for n in os.listdir(d) if (s := parse_segment_name(n)) is not None)
        if not seqs:
            raise CorruptionError(d, 0, "no WAL segment in an initialised data dir")
        for a, b in pairwise(seqs):
            if b != a + 1:
                missing = os.path.join(d, segment_name(a + 1))
                raise CorruptionError(missing, 0, "WAL segment missing between existing ones")
        replay = _Replay()
        for i, seq in enumerate(seqs):
            path = os.path.join(d, segment_name(seq))
            last = i == len(seqs) - 1
            scan = scan_segment(path, seq, last)
            # A zero tail (space allocated ahead) stays: the next group is written over it.
            seg = Segment(seq=seq, path=path, max_index=0, size=scan.good_end, alloc=scan.size)
            for offset, rec in scan.records:
                self._replay_record(replay, rec, seg, offset)
            if scan.tail_problem is not None:
                truncate_durably(path, scan.good_end, self.fsync_policy)
                seg.alloc = scan.good_end
                ahead = scan.size - max(scan.written_end, scan.good_end)
                self.recovery_notes.append(
                    f"truncated torn tail of {segment_name(seq)} at byte {scan.good_end} "
                    f"({scan.written_end - scan.good_end} bytes dropped: "
                    f"{scan.tail_problem}"
                    + (f"; {ahead} zero bytes allocated ahead cut with them)" if ahead else ")")
                )
            self._segments.append(seg)
        if replay.hs is None:
            raise CorruptionError(self._segments[0].path, 0, "no hard state record in the WAL")
        self._hs = self._durable_hs = self._syncing_hs = replay.hs
        entries = self._reconcile(replay)
        if entries is None:
            # The snapshot voids the whole WAL: a crash interrupted an install before its
            # RESET segment. Finish it, or later appends would follow stale entries on disk.
            self._entries = []
            self._reset_wal(self._snap)
            self.recovery_notes.append(f"completed the install of snapshot {self._snap.index}")
        else:
            self._entries = entries
            self._segments[-1].open_for_append()
        self._forget_recent()

    @staticmethod
    def _replay_record(r: _Replay, rec: records.Record, seg: Segment, offset: int) -> None:
        if isinstance(rec, records.EntriesRec):
            if r.base is None:
                r.base = rec.first - 1
            elif rec.first != r.last + 1:
                raise CorruptionError(
                    seg.path, offset, f"entries start at {rec.first}, log ends at {r.last}"
                )
            for _term, kind, data in rec.items:
                if kind == CONFIG:
                    _check_config_entry(data, seg.path, offset)
            r.raw.extend(rec.items)
            seg.max_index = max(seg.max_index, r.last)
        elif isinstance(rec, records.HardStateRec):
            r.hs = rec.hs
        elif isinstance(rec, records.TruncateRec):
            if r.base is None or rec.after <= r.base:
                # The entries it cuts were in segments deleted as covered by a snapshot.
                r.base, r.raw = rec.after, []
            elif rec.after > r.last:
                raise CorruptionError(
                    seg.path, offset, f"truncation after {rec.after} but log ends at {r.last}"
                )
            else:
                del r.raw[rec.after - r.base :]
        else:
            r.base, r.raw = rec.index, []

    def _reconcile(self, r: _Replay) -> list[_Row] | None:
        return reconcile(r, self._snap, self._segments[0].path)

    # -- read side (the core) --------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ClusterConfig]:
        """Hard state (commit raised to the snapshot index, which is committed by definition:
        a crash after an install may precede the hard state's update) and the latest config
        in the log, or the snapshot's."""
        hs = self._hs
        if hs.commit < self._snap.index:
            hs = attrs.evolve(hs, commit=self._snap.index)
        return hs, self._latest_config()

    def _latest_config(self) -> ClusterConfig:
        for _term, _index, kind, data in reversed(self._entries):
            if kind == CONFIG:
                return decode_config(data)
        return self._snap.config

    def first_index(self) -> int:
        return self._snap.index + 1

    def last_index(self) -> int:
        return self._snap.index + len(self._entries)

    def _made(self, lo: int, hi: int, start: int, stop: int) -> list[Entry]:
        """Entries ``lo`` .. ``hi - 1`` (rows ``start`` .. ``stop - 1``): the kept objects
        of the newest ones (which run to the last index), the others built from rows."""
        first = self._recent_first
        if lo >= first:
            return self._recent[lo - first:hi - first]
        if hi <= first:
            return list(starmap(Entry, self._entries[start:stop]))  # a slice: O(stop - start)
        return [*starmap(Entry, self._entries[start:stop - (hi - first)]),
                *self._recent[:hi - first]]

    def _forget_recent(self) -> None:
        """No Entry objects kept: the next append starts them after the last index."""
        self._recent = []
        self._recent_first = self.last_index() + 1

    def term(self, index: int) -> int:
        s = self._snap
        if index < s.index:
            raise Compacted(index)
        if index == s.index:
            return s.term
        if index > s.index + len(self._entries):
            raise Unavailable(index)
        return self._entries[index - s.index - 1][0]

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        s = self._snap
        if lo > hi:
            raise ValueError(f"entries({lo}, {hi}): lo > hi")
        if lo <= s.index:
            raise Compacted(lo)
        if hi > s.index + len(self._entries) + 1:
            raise Unavailable(hi - 1)
        if lo == hi:
            return []
        start, stop = lo - s.index - 1, hi - s.index - 1
        if max_bytes is None:
            return self._made(lo, hi, start, stop)
        if stop - start <= max_bytes // ENTRY_OVERHEAD:  # (else the sum cannot fit)
            rows = self._entries[start:stop]
            # All of them, most often (a Ready's committed entries under the apply budget):
            # their sizes summed in C, not a step of the loop below each (issue 15).
            if sum(map(len, map(_DATA, rows))) + ENTRY_OVERHEAD * len(rows) <= max_bytes:
                return self._made(lo, hi, start, stop)
        out: list[Entry] = []
        size = 0
        entries = self._entries
        # By index, not islice(self._entries, start, stop): islice walks the list from its
        # head to ``start``, so every append to a follower cost time in proportion to the
        # log held since the snapshot (the leader's CPU per SET rose ~40% between two
        # snapshots on 5 nodes: tests/bench/bench_scale.py).
        for i in range(start, stop):
            row = entries[i]
            size += len(row[3]) + ENTRY_OVERHEAD  # entry_size of the row
            if out and size > max_bytes:
                break
            out.append(Entry(*row))
        return out

    def snapshot_meta(self) -> SnapshotMeta:
        return self._snap

    def snapshot_data(self) -> bytes:
        """Read from disk each time (checksum verified): memory stays bounded."""
        with self._io("reading the snapshot", write=False):
            return self._current_snapshot().read_data()

    def decode_snapshot(self, decode: Callable[[CheckedData], T]) -> T:
        """``decode`` of the snapshot's data read from the file as it decodes (never the
        whole file in memory beside the state), checksum checked before it returns:
        ``CorruptionError`` if the file rotted, whatever ``decode`` raises if it is intact
        but does not decode."""
        with self._io("reading the snapshot", write=False):
            return decode_checked(self._current_snapshot(), decode)

    def open_snapshot(self) -> SnapshotReader:
        """The current snapshot, open for chunked reads (close it when done); it stays
        readable if a newer snapshot replaces it meanwhile."""
        with self._io("opening the snapshot", write=False):
            return SnapshotReader(self._current_snapshot())

    def snapshot_size(self) -> int:
        return self._current_snapshot().data_len

    def _current_snapshot(self) -> SnapshotFile:
        assert self._snap_file is not None, "storage is closed"
        return self._snap_file

    def snapshot_chunk(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes of the current snapshot's data from ``offset`` (a leader sending
        it in chunks); the file is kept open between calls and reopened when replaced."""
        r = self._chunk_reader
        if r is None or (r.meta.index, r.meta.term) != (self._snap.index, self._snap.term):
            if r is not None:
                r.close()
            r = self._chunk_reader = self.open_snapshot()
        with self._io("reading a snapshot chunk", write=False):
            return r.read(offset, n)

    # -- write side (the runtime) ----------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        """Buffer ``entries`` (durable at the next ``sync``), truncating the suffix from
        ``entries[0].index`` if it is within the log. Entries the snapshot already covers are
        dropped (like MemoryStorage)."""
        self._check_writable()
        if not entries:
            return
        first = entries[0].index
        for i, e in enumerate(entries):
            if e.index != first + i:
                raise ValueError(f"entries not consecutive: {e.index} after {first + i - 1}")
            if e.term < 0 or e.kind < 0 or type(e.data) is not bytes:
                raise ValueError(f"entry {e.index}: negative term/kind or non-bytes data")
        if first <= self._snap.index:
            entries = entries[self._snap.index - first + 1 :]
            if not entries:
                return
            first = entries[0].index
        last = self.last_index()
        if first > last + 1:
            raise ValueError(f"append at {first} leaves a gap after the last index {last}")
        if first <= last:
            # Ordering rule: the truncation marker goes into the same group as the entries
            # replacing the suffix, before them, so the one fsync in sync() makes the cut
            # durable no later than the new entries, i.e. before they can be acknowledged.
            self._buf += records.truncate_record(first - 1)
            del self._entries[first - self._snap.index - 1 :]
            if first > self._recent_first:
                del self._recent[first - self._recent_first:]
            else:
                self._recent, self._recent_first = [], first
        if sum(len(e.data) for e in entries) >= DEFER_ENCODING_BYTES:
            self._parts += [bytes(self._buf), list(entries)]
            self._buf.clear()
        else:
            self._buf += records.entries_record(entries)
        self._entries += [(e.term, e.index, e.kind, e.data) for e in entries]
        self._buf_max_index = max(self._buf_max_index, entries[-1].index)
        recent = self._recent
        if set(map(type, entries)) == _ENTRY:  # (else a copy is not the same: build them)
            recent += entries
            if len(recent) > RECENT_ENTRIES:  # the older half goes, in one step
                drop = len(recent) - RECENT_ENTRIES // 2
                del recent[:drop]
                self._recent_first += drop
        else:
            self._forget_recent()

    def set_hard_state(self, hs: HardState) -> None:
        """Buffer the hard state (durable at the next ``sync``)."""
        self._check_writable()
        if min(hs.term, hs.vote, hs.commit) < 0:
            raise ValueError(f"negative field in {hs}")  # recovery would reject the record
        if hs != self._hs:
            self._buf += records.hard_state_record(hs)
            self._hs = hs

    @property
    def buffered_bytes(self) -> int:
        """Bytes the next ``sync`` will write (for the WAL bytes metric; deferred entries
        counted by their data)."""
        return len(self._buf) + sum(len(p) if isinstance(p, bytes) else
                                    sum(len(e.data) for e in p) for p in self._parts)

    def sync(self) -> None:
        """Write everything buffered with one write and one fsync (group commit).

        Ordering rule: the runtime calls this before sending a Ready's messages, so the hard
        state (term, vote) and the entries behind any vote or append response are on disk
        before the response leaves: both are in this one group, covered by this one fsync.
        """
        pending = self.sync_write()
        if pending is not None:
            self.sync_fd(*pending)

    @property
    def rolls_next(self) -> bool:
        """Whether the next group starts a new segment: created, written and fsynced with
        its directory where the group is written (a few ms), so not on the loop."""
        return bool(self._segments) and self._segments[-1].size >= self.segment_size

    def sync_write(self) -> tuple[int, bool] | None:
        """``sync`` in two halves, for a caller that runs the fsync elsewhere (the kernel's
        AIO: raftkv.storage.aio): write the buffered group and return ``(fd, datasync)``,
        the descriptor to ``fdatasync`` (``datasync``) or ``fsync``; then either
        ``sync_fd(fd, datasync)`` or, once that fsync has run, ``synced(error)``. Nothing
        is durable before that, and nothing else may be written meanwhile (the runtime
        holds the storage lock). None: nothing to sync (nothing buffered, or ``--fsync
        never``), done."""
        self._check_writable()
        if not self._buf and not self._parts:
            return None
        data: bytes | bytearray = self._buf
        if self._parts:  # encoded here, in the caller's (the sync) thread, not on append
            data = bytearray()  # one copy of each large entry's data (append_entries_record)
            for p in self._parts:
                if isinstance(p, bytes):
                    data += p
                else:
                    records.append_entries_record(data, p)
            data += self._buf
        with self._io("writing the WAL"):
            seg = self._segments[-1]
            if seg.size >= self.segment_size:
                seg = self._roll(records.hard_state_record(self._durable_hs), optional=True)
            datasync = seg.write(data, self.segment_size)
            seg.max_index = max(seg.max_index, self._buf_max_index)
            self._parts.clear()
            self._buf.clear()
            self._buf_max_index = 0
            self._syncing_hs = self._hs
        if self.fsync_policy is not FsyncPolicy.ALWAYS:  # (--fsync never: no fsync to run)
            self.synced(None)
            return None
        return seg.fd, datasync

    def sync_fd(self, fd: int, datasync: bool) -> None:
        """The second half of ``sync``: the fsync itself (``sync_write``)."""
        with self._io("writing the WAL"):
            (fdatasync_fd if datasync else fsync_fd)(fd, self.fsync_policy)
        self.synced(None)

    def synced(self, error: OSError | None) -> None:
        """The fsync of ``sync_write``'s group ran elsewhere and returned, or raised
        ``error``: a failed fsync fails the storage for good (nothing is retried: the
        pages it covered may be gone), as in ``sync``."""
        if error is not None:
            with self._io("writing the WAL"):
                raise error
        self._durable_hs = self._syncing_hs

    def _roll(self, preamble: bytes, optional: bool = False) -> Segment:
        """Start the next segment, created complete with ``preamble`` (durable hard state),
        in the spare segment file if there is one. ``optional`` (a roll for size): with no
        spare and no descriptor to open a file (EMFILE/ENFILE: clients took them all), keep
        appending to the current segment, whose size limit is only a target, and try again
        at the next sync; nothing was created, so nothing is lost."""
        old = self._segments[-1]
        old.seal(self.fsync_policy)  # before the next segment exists: see wal's docstring
        spare, self._spare_segment = self._spare_segment, None
        try:
            seg = create_segment(self.data_dir, old.seq + 1, preamble, self.fsync_policy, spare)
        except OSError as e:
            if not (optional and spare is None and e.errno in (errno.EMFILE, errno.ENFILE)):
                raise
            if not self._roll_postponed:  # once, not at every sync while it lasts
                log.warning("WAL segment roll postponed: %s (the current segment grows "
                            "past its size meanwhile)", e)
            self._roll_postponed = True
            return old
        self._roll_postponed = False
        old.close()
        self._segments.append(seg)
        self._replenish_spares()
        return seg

    def _replenish_spares(self) -> None:
        """Best effort: without a spare, the next new file is opened when needed."""
        d = self.data_dir
        if self._spare_segment is None:
            self._spare_segment = Spare.create(d, "wal", os.O_WRONLY)
        if self._spare_snapshot is None:
            self._spare_snapshot = Spare.create(d, "snapshot", os.O_RDWR)

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        """Save the state machine's snapshot at ``meta.index`` and drop the entries it covers.

        Durable on return. A snapshot not newer than the current one is ignored (like
        MemoryStorage); past the last index raises Unavailable; the log's term at
        ``meta.index`` must be ``meta.term``.
        """
        snap = self.prepare_compact(meta, data)
        if snap is not None:
            self.finish_compact(meta, snap)

    def prepare_compact(
        self, meta: SnapshotMeta, data: bytes | Iterable[bytes], sync_log: bool = True
    ) -> SnapshotFile | None:
        """The file half of ``compact``: sync, then write the snapshot durably and read it
        back (checksum); returns it for ``finish_compact`` (None: not newer, nothing to do).
        ``data``: the state's bytes, or their pieces in order: a list or tuple of them (the
        free space checked for their sum first), or an iterator that encodes them as they
        are written (each piece checked before it is written: the sum is not known yet).
        It leaves everything the log's readers look at untouched, so it may run in a worker
        thread while the core reads the log, provided nothing else writes to this storage
        meanwhile."""
        self._check_writable()
        if meta.index <= self._snap.index:
            return None
        if meta.index > self.last_index():
            raise Unavailable(meta.index)
        if self.term(meta.index) != meta.term:
            raise ValueError(f"compact at {meta.index}: term {meta.term} != log's term")
        if sync_log:
            # All earlier writes durable first, so crash states stay one linear history. A
            # caller whose snapshot covers only synced entries (the runtime applies only
            # what is durable) passes False and may then run this beside log writes.
            self.sync()
        if isinstance(data, bytes):
            self._check_space_for(len(data))
        elif isinstance(data, (list, tuple)):
            self._check_space_for(sum(map(len, data)))
        else:
            data = self._space_checked(data)
        # A failure before the new file is renamed into place is SnapshotNotWritten: it
        # changed nothing visible, the node goes on and may try again (a full disk must
        # not turn a routine compaction into a stop, let alone a crash loop at start).
        with self._io("writing a snapshot"):
            return write_snapshot(self.data_dir, meta, data, self.fsync_policy)

    def _space_checked(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._check_space_for(len(piece))
            yield piece

    def _check_space_for(self, size: int) -> None:
        """Refuse (SnapshotNotWritten) a snapshot that would leave less than
        ``SNAPSHOT_HEADROOM`` free: filling the disk with it would make the WAL's next
        write fail, which stops the node."""
        st = os.statvfs(self.data_dir)  # by path: needs no descriptor
        free = st.f_bavail * st.f_frsize
        if free < size + SNAPSHOT_HEADROOM:
            raise SnapshotNotWritten(
                f"not enough free space in {self.data_dir} for a snapshot of {size} bytes "
                f"({free} bytes free, {SNAPSHOT_HEADROOM} kept for the WAL)", errno.ENOSPC
            )

    def finish_compact(self, meta: SnapshotMeta, snap: SnapshotFile) -> None:
        """The memory half of ``compact`` (run it where the log is read): make the snapshot
        written by ``prepare_compact`` current and drop what it covers. A crash between the
        two halves recovers to the same state (the newest snapshot file wins on open)."""
        self._check_writable()
        if meta.index <= self._snap.index:
            # Overtaken meanwhile by a newer snapshot: this file is superseded, unless a
            # leader's snapshot of the same index and term took its very name (then the
            # file is the current snapshot and stays).
            snap.release()
            if snap.path == self._current_snapshot().path:
                return
            with self._io("removing a superseded snapshot"), contextlib.suppress(
                FileNotFoundError
            ):
                remove_durably(self.data_dir, os.path.basename(snap.path), self.fsync_policy)
            return
        with self._io("switching to a snapshot"):
            self._switch_snapshot(meta, snap)

    def install_snapshot(self, meta: SnapshotMeta, data: bytes | Iterable[bytes]) -> None:
        """Replace state with a leader's snapshot (durable on return); keep the log suffix
        only if the entry at ``meta.index`` has ``meta.term``. It must be newer than the
        current snapshot (ValueError otherwise: going back would forget applied state)."""
        self._check_writable()
        self._check_newer(meta)
        self.sync()
        with self._io("installing a snapshot"):
            snap = write_snapshot(self.data_dir, meta, data, self.fsync_policy,
                                  self._take_spare_snapshot())
            self._switch_snapshot(meta, snap)

    def snapshot_writer(self, meta: SnapshotMeta) -> SnapshotWriter:
        """A writer for a snapshot received in chunks; ``finish()`` installs it."""
        self._check_writable()
        self._check_newer(meta)
        with self._io("starting a snapshot"):
            return SnapshotWriter(self, SnapshotFileWriter(
                self.data_dir, meta, self.fsync_policy, self._take_spare_snapshot()
            ))

    def _take_spare_snapshot(self) -> Spare | None:
        spare, self._spare_snapshot = self._spare_snapshot, None
        return spare

    def _check_newer(self, meta: SnapshotMeta) -> None:
        if meta.index <= self._snap.index:
            raise ValueError(f"snapshot at {meta.index} is not newer than {self._snap.index}")

    def _switch_snapshot(self, meta: SnapshotMeta, snap: SnapshotFile) -> None:
        """The snapshot ``snap`` is durable and checked: now drop what it covers, memory then
        files."""
        s = self._snap
        keep = meta.index <= self.last_index() and self.term(meta.index) == meta.term
        policy = self.fsync_policy
        if keep:
            del self._entries[: meta.index - s.index]
            if meta.index >= self._recent_first:
                del self._recent[: meta.index + 1 - self._recent_first]
                self._recent_first = meta.index + 1
            doomed = []
            for seg in self._segments[:-1]:  # a prefix only, never the active segment
                if seg.max_index > meta.index:
                    break
                doomed.append(seg)
        else:
            self._entries = []
            self._recent, self._recent_first = [], _NEVER  # (until the snapshot is ours)
            doomed = []
            self._reset_wal(meta)
        old = self._current_snapshot()
        self._snap = meta
        if not keep:
            self._forget_recent()
        self._snap_file = snap
        old.release()  # its descriptor closes once no transfer reads it any more
        self._remove_segments(doomed)
        # The replaced file is the only other snapshot: open keeps just the newest one,
        # and a superseded one written beside it is removed by finish_compact. (No
        # listdir: it would need a new descriptor.)
        if old.path != snap.path:
            remove_durably(self.data_dir, os.path.basename(old.path), policy)
        self._replenish_spares()

    def _reset_wal(self, meta: SnapshotMeta) -> None:
        """The whole log is older than the (durable) snapshot ``meta``: start a new segment
        carrying the durable hard state and a RESET marker; only once it is durable do the
        old segments go (until then recovery reaches the same state from the snapshot)."""
        self._roll(
            records.hard_state_record(self._durable_hs)
            + records.reset_record(meta.index, meta.term)
        )
        self._remove_segments(self._segments[:-1])

    def _remove_segments(self, doomed: list[Segment]) -> None:
        """Oldest first, each removal durable before the next: no gap can ever appear."""
        for seg in doomed:
            remove_durably(self.data_dir, os.path.basename(seg.path), self.fsync_policy)
            self._segments.remove(seg)

    # -- failure handling and closing ------------------------------------------------------
    def _check_writable(self) -> None:
        if self._failed is not None:
            raise StorageFailure(
                f"storage in {self.data_dir} failed earlier ({self._failed}); it refuses "
                "writes: restart the node so it recovers from what is on disk"
            )
        if self._closed:
            raise ValueError("storage is closed")

    @contextlib.contextmanager
    def _io(self, what: str, write: bool = True) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            if write:
                self._failed = e
            hint = " (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise StorageFailure(f"{what} in {self.data_dir} failed{hint}: {e}") from e

    @property
    def failed(self) -> bool:
        return self._failed is not None

    def close(self, sync: bool = True) -> None:
        """Sync what is buffered (unless ``sync=False`` or failed), cut the active segment's
        zero tail (best effort: recovery copes with one), release the directory. A clean
        close thus leaves every segment ending at its last record."""
        if self._closed:
            return
        try:
            if sync and self._failed is None:
                self.sync()
                if self._segments:
                    with contextlib.suppress(OSError):
                        self._segments[-1].seal(self.fsync_policy)
        finally:
            self._closed = True
            self._release()

    def _release(self) -> None:
        if self._chunk_reader is not None:
            self._chunk_reader.close()
            self._chunk_reader = None
        for spare in (self._spare_segment, self._spare_snapshot):
            if spare is not None:
                with contextlib.suppress(OSError):
                    spare.discard()
        self._spare_segment = self._spare_snapshot = None
        if self._snap_file is not None:
            self._snap_file.release()
            self._snap_file = None
        if self._dir_fd >= 0:
            release_dir(self.data_dir, self._dir_fd)
            self._dir_fd = -1
        for seg in self._segments:
            seg.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SnapshotWriter:
    """Receives a snapshot in chunks (InstallSnapshot); ``finish`` installs it atomically."""

    def __init__(self, storage: DiskStorage, file: SnapshotFileWriter) -> None:
        self._storage = storage
        self._file = file
        self.meta = file.meta

    @property
    def received(self) -> int:
        return self._file.received

    def write(self, offset: int, chunk: bytes) -> None:
        st = self._storage
        st._check_writable()
        with st._io("writing a received snapshot"):
            self._file.write(offset, chunk)

    def read(self, end: int) -> bytes:
        """The data received so far up to ``end``, to be checked before ``finish``.
        ``SnapshotNotWritten`` (the receive is dropped) if it cannot be read back."""
        with self._storage._io("reading back a received snapshot", write=False):
            return self._file.read(end)

    def read_at(self, pos: int, n: int) -> bytes:
        """Up to ``n`` received bytes from ``pos``, for a decoder streaming them before
        ``finish``; ``OSError`` if the receive was dropped meanwhile."""
        return self._file.read_at(pos, n)

    def finish(self) -> None:
        """Make it durable and the current snapshot, like ``install_snapshot``."""
        st = self._storage
        st._check_writable()
        if self.meta.index <= st.snapshot_meta().index:  # overtaken while receiving
            self.abort()
            st._check_newer(self.meta)
        st.sync()
        with st._io("installing a received snapshot"):
            st._switch_snapshot(self.meta, self._file.finish())

    def abort(self) -> None:
        with self._storage._io("discarding a received snapshot", write=False):
            self._file.abort()
            self._storage._replenish_spares()
