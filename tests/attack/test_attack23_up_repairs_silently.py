"""attack23: ``raftkv up`` repairs the nodes' data directories itself, unsynced, before it
starts them, and the repair is never reported.

``short_of_quorum`` (session 11: ``up --nodes 1`` over a 3-node directory) learns the
voters by *opening* every ``node-i`` directory with ``open_storage(..., fsync="never")``.
Opening is recovery, not a read: it truncates a torn WAL tail, removes unfinished and
superseded snapshots, completes an interrupted install, each noted in
``storage.recovery_notes`` for the node to log at start (``storage recovered`` WARNING,
raftkv.node.opening). ``stored_voters`` drops the notes, so when the node itself opens
the directory a moment later there is nothing left to report: after a crash (or a failing
disk) the bytes dropped from node-1's WAL are gone without a line in any log, and the
truncation was made with ``fsync="never"``.

Right: the check only reads (it must not change a directory a node will open, nor with
another fsync policy): the node that starts finds its directory as the crash left it and
logs what it repairs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftkv.local_cluster import short_of_quorum
from raftkv.storage import open_storage
from raftkv.storage.wal import parse_segment_name
from wire.raft import NORMAL, ClusterConfig, Entry, Member

pytestmark = pytest.mark.timeout(30)

CLUSTER_ID = "attack23cluster"


def _make_cluster_dirs(root: Path, nodes: int) -> None:
    config = ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}") for i in range(1, 4)))
    for i in range(1, nodes + 1):
        storage = open_storage(root / f"node-{i}", CLUSTER_ID, i, config, fsync="never")
        storage.append([Entry(1, n, NORMAL, b"v%d" % n) for n in range(1, 21)])
        storage.sync()
        storage.close()


def _last_segment(d: Path) -> Path:
    segs = sorted((s, n) for n in os.listdir(d) if (s := parse_segment_name(n)) is not None)
    return d / segs[-1][1]


def test_up_leaves_a_torn_tail_for_the_node_to_repair_and_report(tmp_path: Path) -> None:
    _make_cluster_dirs(tmp_path, 3)
    segment = _last_segment(tmp_path / "node-1")
    with open(segment, "ab") as f:  # a crash mid-write: a torn record at the end
        f.write(b"\x07" * 64)
    torn = segment.stat().st_size

    assert short_of_quorum(3, str(tmp_path)) is None  # 3 of 3 voters: no refusal

    assert segment.stat().st_size == torn, "the check truncated node-1's WAL itself"
    storage = open_storage(tmp_path / "node-1", CLUSTER_ID, 1, ClusterConfig(), fsync="never")
    try:
        notes = storage.recovery_notes
    finally:
        storage.close(sync=False)
    assert any("torn tail" in note for note in notes), notes  # what the node would log
