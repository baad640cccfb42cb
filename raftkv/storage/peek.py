"""Read a data directory's latest configuration without opening it as a node would.

Opening (``open_storage``) is recovery: it truncates a torn WAL tail, removes unfinished
and superseded snapshots, completes an interrupted install, and notes each repair for the
node to log. A tool that only wants to know the cluster's voters (``raftkv up``'s
short-of-quorum check) must not do that before the node starts: the repair would be made
unreported, and under the tool's fsync policy. This module only reads: no lock, no write.
"""

from __future__ import annotations

import os
from itertools import pairwise

from raftkv.raft.membership import decode_config
from raftkv.storage.disk_storage import DiskStorage, _Replay, reconcile
from raftkv.storage.errors import CorruptionError
from raftkv.storage.snapshot_file import SnapshotFile, parse_snapshot_name
from raftkv.storage.wal import Segment, parse_segment_name, scan_segment, segment_name
from wire.raft import CONFIG, ClusterConfig

__all__ = ["peek_config"]


def peek_config(data_dir: str) -> tuple[int, ClusterConfig]:
    """(last log index, latest configuration) of an initialised data directory, as
    ``open_storage`` would find them, reading only. Raises ``CorruptionError`` (or
    ``UnsupportedFormat``, ``OSError``) where the node's own open would refuse it too."""
    names = os.listdir(data_dir)
    snaps = sorted((parsed, n) for n in names if (parsed := parse_snapshot_name(n)) is not None)
    seqs = sorted(s for n in names if (s := parse_segment_name(n)) is not None)
    if not snaps or not seqs:
        raise CorruptionError(data_dir, 0, "no snapshot or no WAL segment")
    snap_file = SnapshotFile(os.path.join(data_dir, snaps[-1][1]))
    snap = snap_file.meta
    snap_file.release()
    for a, b in pairwise(seqs):
        if b != a + 1:
            raise CorruptionError(data_dir, 0, "WAL segment missing between existing ones")
    replay = _Replay()
    first_path = os.path.join(data_dir, segment_name(seqs[0]))
    for i, seq in enumerate(seqs):
        path = os.path.join(data_dir, segment_name(seq))
        scan = scan_segment(path, seq, i == len(seqs) - 1)  # a torn tail: left for the node
        seg = Segment(seq=seq, path=path, max_index=0, size=scan.good_end)
        for offset, rec in scan.records:
            DiskStorage._replay_record(replay, rec, seg, offset)
    entries = reconcile(replay, snap, first_path)
    if not entries:  # none after the snapshot, or an install to complete: the snapshot's
        return snap.index, snap.config
    last = snap.index + len(entries)
    for _term, _index, kind, data in reversed(entries):
        if kind == CONFIG:
            return last, decode_config(data)
    return last, snap.config
