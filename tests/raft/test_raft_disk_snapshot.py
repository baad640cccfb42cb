"""The core's snapshot path on the durable DiskStorage: chunks read from the snapshot file,
a follower writing them through SnapshotWriter, two-step compaction, restarts."""

from __future__ import annotations

import os
from pathlib import Path

from raft_harness import Cluster, decode_applied, encode_applied, members
from test_raft_snapshot import SNAP, assert_caught_up, is_chunk, write

from raftkv.raft import ProgressState
from raftkv.storage import DiskStorage, open_storage
from wire.raft import SnapshotMeta


def on_disk(c: Cluster, tmp: Path, ids: list[int]) -> None:
    """Give nodes ``ids`` a fresh DiskStorage (before anything happened) and restart them."""
    for i in ids:
        c.storages[i] = open_storage(tmp / f"n{i}", "test", i, c.membership, fsync="never")
        c.start(i)


def reopen(c: Cluster, tmp: Path, i: int) -> DiskStorage:
    """Kill node i's process (unsynced buffer lost) and start it from its directory."""
    st = c.storages[i]
    assert isinstance(st, DiskStorage)
    st.close(sync=False)
    c.writers.pop(i, None)
    c.storages[i] = open_storage(tmp / f"n{i}", "test", i, c.membership, fsync="never")
    c.sm[i] = decode_applied(c.storages[i].snapshot_data())
    c.start(i)
    return c.storages[i]


def test_transfer_between_disk_storages(tmp_path: Path) -> None:
    c = Cluster(3, config=SNAP)
    on_disk(c, tmp_path, [1, 2, 3])
    leader = c.elect(1)
    c.isolate(3)
    write(c, leader, 30)
    meta = c.compact(1)
    c.heal()
    c.tick(12)
    assert c.installed[3] == [meta]
    assert_caught_up(c, 3)
    chunks = [m for m in c.sent if is_chunk(m)]
    assert len(chunks) == -(-c.storages[1].snapshot_size() // 64)
    st = reopen(c, tmp_path, 3)  # what node 3 finds on disk after a crash
    assert st.snapshot_meta() == meta
    assert st.snapshot_data() == c.storages[1].snapshot_data()
    assert c.nodes[3].cluster_config == members([1, 2, 3])
    c.tick(6)
    write(c, leader, 2, tag="after")
    assert_caught_up(c, 3)


def unfinished(path: Path) -> list[str]:
    """Temp files holding data (storage also keeps empty spare files open on purpose)."""
    return [n for n in os.listdir(path) if n.endswith(".tmp") and (path / n).stat().st_size]


def test_restart_mid_receive_leaves_no_partial_snapshot_on_disk(tmp_path: Path) -> None:
    c = Cluster(3, config=SNAP)
    on_disk(c, tmp_path, [3])
    leader = c.elect(1)
    c.isolate(3)
    write(c, leader, 30)
    c.compact(1)
    c.heal()
    c.hold = is_chunk
    c.tick(2)
    for m in c.release():
        c.deliver(m)
    c.flush()
    assert c.writers[3].received == 128
    assert unfinished(tmp_path / "n3")
    st = reopen(c, tmp_path, 3)
    assert any("unfinished" in note for note in st.recovery_notes)
    assert not unfinished(tmp_path / "n3")
    c.tick(15)
    assert len(c.installed[3]) == 1
    assert_caught_up(c, 3)


def test_two_step_compaction_and_chunks_follow_the_current_snapshot(tmp_path: Path) -> None:
    c = Cluster(3, config=SNAP)
    on_disk(c, tmp_path, [1])
    leader = c.elect(1)
    write(c, leader, 10)
    st = c.storages[1]
    assert isinstance(st, DiskStorage)
    applied = c.state(1)
    meta = SnapshotMeta(applied[-1].index, applied[-1].term, c.membership)
    data = encode_applied(applied)
    snap = st.prepare_compact(meta, data)
    assert snap is not None and os.path.exists(snap.path) and snap.meta == meta
    assert st.first_index() == 1  # the log readers see nothing until finish_compact
    st.finish_compact(meta, snap)
    assert st.first_index() == meta.index + 1 and st.snapshot_meta() == meta
    assert st.snapshot_size() == len(data)
    assert st.snapshot_chunk(0, 10) + st.snapshot_chunk(10, 10_000) == data
    assert st.prepare_compact(meta, data) is None  # not newer: nothing to do
    write(c, leader, 5, tag="more")
    newer = c.compact(1)
    assert st.snapshot_chunk(0, 1 << 20) == encode_applied(c.state(1))  # reopened
    assert newer.index > meta.index
    assert leader.progress(2).state is ProgressState.REPLICATE
