"""DiskStorage as a LogStorage: reads, writes, group commit, snapshots, data-dir checks."""

from __future__ import annotations

import json
import os

import pytest
from storage_model import CLUSTER, CONFIG, entries, entry, reopen

from raftkv.raft.log_storage import Compacted, Unavailable
from raftkv.storage import (
    DataDirLocked,
    DataDirMismatch,
    FsyncPolicy,
    NotADataDir,
    UnsupportedFormat,
    fsync_policy_warning,
    open_storage,
)
from raftkv.storage import wal as wal_mod
from wire.raft import CONFIG as CONFIG_KIND
from wire.raft import ClusterConfig, Entry, HardState, Member, SnapshotMeta


def files(path) -> list[str]:
    """The data dir's files but the LOCK and the spare files held open for new files."""
    return sorted(n for n in os.listdir(path) if n != "LOCK" and not n.startswith("spare-"))


def unfinished(path) -> list[str]:
    """Temp files but the spares (held open on purpose, see files.Spare)."""
    return [n for n in os.listdir(path) if n.endswith(".tmp") and not n.startswith("spare-")]


def segments(path) -> list[str]:
    return [n for n in files(path) if n.startswith("wal-")]


def test_new_dir_is_bootstrapped_and_config_comes_from_disk_afterwards(tmp_path):
    d = tmp_path / "a" / "node-1"
    s = open_storage(d, CLUSTER, 1, CONFIG)
    assert s.created
    assert s.initial_state() == (HardState(), CONFIG)
    assert s.snapshot_meta() == SnapshotMeta(0, 0, CONFIG)
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.snapshot_data() == b""
    assert files(d) == [
        "meta.json",
        "snapshot-00000000000000000000-00000000000000000000.snap",
        "wal-0000000000000001.log",
    ]
    assert json.loads((d / "meta.json").read_text()) == {
        "format": 1,
        "cluster_id": CLUSTER,
        "node_id": 1,
    }
    s.close()
    other = ClusterConfig((Member(9, "x:1"),))
    s = open_storage(d, CLUSTER, 1, other)
    assert not s.created
    assert s.initial_state() == (HardState(), CONFIG)
    s.close()


def test_reads_follow_appends_and_truncation(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 5, term=1))
    assert (s.first_index(), s.last_index()) == (1, 5)
    assert [e.index for e in s.entries(2, 5)] == [2, 3, 4]
    assert s.entries(3, 3) == []
    with pytest.raises(ValueError):
        s.entries(4, 3)
    assert s.term(5) == 1
    with pytest.raises(Unavailable):
        s.term(6)
    with pytest.raises(Unavailable):
        s.entries(4, 7)
    # A conflicting batch at 4 replaces the suffix from 4.
    s.append(entries(4, 4, term=2))
    assert s.last_index() == 4
    assert [e.term for e in s.entries(1, 5)] == [1, 1, 1, 2]
    with pytest.raises(ValueError, match="gap"):
        s.append(entries(6, 6, term=2))
    with pytest.raises(ValueError, match="consecutive"):
        s.append([entry(5, 2), entry(7, 2)])
    s.sync()
    s.close()
    s = reopen(tmp_path)
    assert [(e.index, e.term) for e in s.entries(1, 5)] == [(1, 1), (2, 1), (3, 1), (4, 2)]
    s.close()


def test_entries_max_bytes_returns_at_least_one(tmp_path):
    s = reopen(tmp_path)
    s.append([entry(i, 1, b"x" * 100) for i in range(1, 6)])
    assert [e.index for e in s.entries(1, 6, max_bytes=10)] == [1]
    assert [e.index for e in s.entries(1, 6, max_bytes=250)] == [1, 2]
    assert len(s.entries(1, 6, max_bytes=10_000)) == 5
    s.close()


def test_unsynced_writes_are_lost_synced_ones_kept(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 3, term=1))
    s.set_hard_state(HardState(1, 2, 3))
    s.sync()
    s.append(entries(4, 6, term=1))
    s.set_hard_state(HardState(2, 0, 3))
    s.close(sync=False)
    s = reopen(tmp_path)
    assert s.last_index() == 3
    assert s.initial_state()[0] == HardState(1, 2, 3)
    s.close()


def test_group_commit_is_one_pwrite_and_one_fdatasync(tmp_path, monkeypatch):
    """A group is one pwrite at the segment's end and one fdatasync; the first group after
    opening allocates space ahead (the file grows: a full fsync), the next ones fit in it."""
    s = reopen(tmp_path, fsync="always")
    calls: list[str] = []
    for name in ("write", "pwrite", "fsync", "fdatasync", "posix_fallocate"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    for group in range(3):
        for i in range(group * 10 + 1, group * 10 + 11):
            s.append([entry(i, 1)])
            s.set_hard_state(HardState(1, 1, i - 1))
        assert calls == []  # buffered only
        s.sync()
        if group == 0:
            assert calls == ["posix_fallocate", "pwrite", "fsync"]
        else:
            assert calls == ["pwrite", "fdatasync"]
        calls.clear()
        s.sync()  # nothing buffered: no I/O at all
        assert calls == []
    monkeypatch.undo()
    s.close()
    s = reopen(tmp_path)
    assert s.last_index() == 30
    assert s.initial_state()[0] == HardState(1, 1, 29)
    s.close()


def test_fsync_never_skips_fsync_and_warns(tmp_path, monkeypatch):
    assert fsync_policy_warning("always") is None
    assert "NOT fsynced" in fsync_policy_warning(FsyncPolicy.NEVER)
    with pytest.raises(ValueError, match="unknown fsync policy"):
        FsyncPolicy.parse("sometimes")
    s = reopen(tmp_path, fsync="never")
    fsyncs: list[int] = []
    monkeypatch.setattr(os, "fsync", fsyncs.append)
    monkeypatch.setattr(os, "fdatasync", fsyncs.append)
    for i in range(1, 4):  # a group that allocates space ahead, then ones that fit in it
        s.append([entry(i, 1)])
        s.sync()
    s.compact(SnapshotMeta(2, 1, CONFIG), b"snap")
    assert fsyncs == []
    monkeypatch.undo()
    s.close()


def test_segments_roll_at_the_size_threshold(tmp_path):
    s = reopen(tmp_path, segment_size=300)
    for i in range(1, 31):
        s.append([entry(i, 1, b"x" * 40)])
        s.set_hard_state(HardState(1, 1, i))
        s.sync()
    names = segments(tmp_path)
    assert len(names) > 3
    for name in names:
        # A segment grows past the threshold by at most one group before the next rolls.
        assert os.path.getsize(tmp_path / name) < 300 + 120
    s.close()
    s = reopen(tmp_path, segment_size=300)
    assert [e.index for e in s.entries(1, 31)] == list(range(1, 31))
    assert s.initial_state()[0] == HardState(1, 1, 30)
    s.close()


def test_compact_drops_entries_segments_and_old_snapshots(tmp_path):
    s = reopen(tmp_path, segment_size=200)
    for i in range(1, 21):
        s.append([entry(i, 1, b"x" * 40)])
        s.sync()
    before = segments(tmp_path)
    s.compact(SnapshotMeta(12, 1, CONFIG), b"state@12")
    after = segments(tmp_path)
    assert after == before[len(before) - len(after) :]  # a prefix was removed
    assert len(after) < len(before)
    assert [n for n in files(tmp_path) if n.endswith(".snap")] == [
        "snapshot-00000000000000000012-00000000000000000001.snap"
    ]
    assert (s.first_index(), s.last_index(), s.term(12)) == (13, 20, 1)
    with pytest.raises(Compacted):
        s.term(11)
    with pytest.raises(Compacted):
        s.entries(12, 14)
    assert s.initial_state()[0].commit == 12  # the snapshot is committed by definition
    s.compact(SnapshotMeta(10, 1, CONFIG), b"stale")  # not newer: ignored
    assert (s.snapshot_meta().index, s.snapshot_data()) == (12, b"state@12")
    with pytest.raises(ValueError, match="term"):
        s.compact(SnapshotMeta(15, 2, CONFIG), b"")
    with pytest.raises(Unavailable):
        s.compact(SnapshotMeta(21, 1, CONFIG), b"")
    # A batch overlapping the snapshot: the covered entries are dropped, the rest appended.
    s.append(entries(11, 21, term=1))
    assert (s.first_index(), s.last_index(), s.term(12)) == (13, 21, 1)
    s.append(entries(5, 8, term=1))  # wholly covered: nothing happens
    assert s.last_index() == 21
    s.close()
    s = reopen(tmp_path, segment_size=200)
    assert s.snapshot_data() == b"state@12"
    assert [e.index for e in s.entries(13, 22)] == list(range(13, 22))
    s.close()


def test_install_snapshot_keeps_a_matching_suffix(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 10, term=2))
    s.sync()
    s.install_snapshot(SnapshotMeta(6, 2, CONFIG), b"leader@6")
    assert (s.first_index(), s.last_index()) == (7, 10)
    s.close(sync=False)
    s = reopen(tmp_path)
    assert (s.first_index(), s.last_index(), s.snapshot_data()) == (7, 10, b"leader@6")
    s.close()


def test_install_snapshot_resets_a_conflicting_log(tmp_path):
    s = reopen(tmp_path, segment_size=150)
    for i in range(1, 11):
        s.append([entry(i, 2, b"y" * 30)])
        s.sync()
    s.install_snapshot(SnapshotMeta(6, 3, CONFIG), b"leader@6")
    assert (s.first_index(), s.last_index(), s.term(6)) == (7, 6, 3)
    assert len(segments(tmp_path)) == 1  # the old log is gone from disk
    s.append(entries(7, 8, term=3))
    s.close()
    s = reopen(tmp_path)
    assert [(e.index, e.term) for e in s.entries(7, 9)] == [(7, 3), (8, 3)]
    assert s.snapshot_data() == b"leader@6"
    s.close()


def test_install_snapshot_must_be_newer(tmp_path):
    s = reopen(tmp_path)
    s.install_snapshot(SnapshotMeta(5, 1, CONFIG), b"five")
    with pytest.raises(ValueError, match="not newer"):
        s.install_snapshot(SnapshotMeta(5, 1, CONFIG), b"again")
    with pytest.raises(ValueError, match="not newer"):
        s.snapshot_writer(SnapshotMeta(3, 1, CONFIG))
    assert s.snapshot_data() == b"five"
    s.close()


def test_install_snapshot_past_the_log_empties_it(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 3, term=1))
    s.set_hard_state(HardState(4, 2, 2))
    s.install_snapshot(SnapshotMeta(50, 4, CONFIG), b"far")
    assert (s.first_index(), s.last_index()) == (51, 50)
    s.close(sync=False)
    s = reopen(tmp_path)
    assert (s.first_index(), s.last_index(), s.term(50)) == (51, 50, 4)
    assert s.initial_state()[0] == HardState(4, 2, 50)
    s.close()


def test_snapshot_writer_streams_chunks_and_installs(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 4, term=1))
    meta = SnapshotMeta(9, 2, CONFIG)
    w = s.snapshot_writer(meta)
    w.write(0, b"hello ")
    w.write(3, b"lo ")  # a resent, overlapping chunk
    with pytest.raises(ValueError, match="hole"):
        w.write(20, b"x")
    w.write(6, b"world")
    assert w.received == 11
    assert s.snapshot_meta().index == 0  # nothing visible before finish
    w.finish()
    assert s.snapshot_meta() == meta
    assert s.snapshot_data() == b"hello world"
    with s.open_snapshot() as reader:
        assert (reader.meta, reader.size) == (meta, 11)
        assert reader.read(6, 100) == b"world"
        assert reader.read(11, 5) == b""
    assert not unfinished(tmp_path)
    s.close()
    s = reopen(tmp_path)
    assert (s.snapshot_meta(), s.snapshot_data(), s.last_index()) == (meta, b"hello world", 9)
    s.close()


def test_snapshot_writer_reads_back_what_it_received_before_finish(tmp_path):
    """What the snapshot gate decodes before the core takes the last chunk."""
    s = reopen(tmp_path)
    w = s.snapshot_writer(SnapshotMeta(9, 2, CONFIG))
    w.write(0, b"hello ")
    w.write(6, b"world")
    assert (w.read(11), w.read(5), w.read(0)) == (b"hello world", b"hello", b"")
    with pytest.raises(ValueError):
        w.read(12)  # past what it holds
    assert s.snapshot_meta().index == 0  # reading installs nothing
    w.abort()
    with pytest.raises(ValueError, match="closed"):
        w.read(1)
    s.close()


def test_snapshot_writer_abort_leaves_nothing(tmp_path):
    s = reopen(tmp_path)
    before = files(tmp_path)
    w = s.snapshot_writer(SnapshotMeta(5, 1, CONFIG))
    w.write(0, b"partial")
    assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    w.abort()
    assert files(tmp_path) == before
    assert s.snapshot_meta().index == 0
    s.close()


def test_snapshot_writer_overtaken_by_a_newer_snapshot_is_refused(tmp_path):
    s = reopen(tmp_path)
    w = s.snapshot_writer(SnapshotMeta(5, 1, CONFIG))
    w.write(0, b"old")
    s.install_snapshot(SnapshotMeta(8, 1, CONFIG), b"newer")
    with pytest.raises(ValueError, match="not newer"):
        w.finish()
    assert s.snapshot_data() == b"newer"
    assert not unfinished(tmp_path)
    s.close()


def test_latest_config_comes_from_the_log(tmp_path):
    from wire.record import encode

    s = reopen(tmp_path)
    grown = ClusterConfig((*CONFIG.members, Member(3, "127.0.0.1:7103", learner=True)))
    s.append([entry(1, 1), Entry(term=1, index=2, kind=CONFIG_KIND, data=encode(grown))])
    s.append([entry(3, 1)])
    assert s.initial_state()[1] == grown
    s.append([entry(2, 2)])  # the config entry is truncated away
    assert s.initial_state()[1] == CONFIG
    s.close()


def test_another_clusters_or_nodes_dir_is_refused(tmp_path):
    open_storage(tmp_path, "cluster-a", 1, CONFIG).close()
    with pytest.raises(DataDirMismatch, match="cluster-a"):
        open_storage(tmp_path, "cluster-b", 1, CONFIG)
    with pytest.raises(DataDirMismatch, match="node 1"):
        open_storage(tmp_path, "cluster-a", 2, CONFIG)
    open_storage(tmp_path, "cluster-a", 1, CONFIG).close()


def test_a_dir_in_use_is_refused(tmp_path):
    s = reopen(tmp_path)
    with pytest.raises(DataDirLocked):
        reopen(tmp_path)
    s.close()
    reopen(tmp_path).close()


def test_a_foreign_dir_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("not ours")
    with pytest.raises(NotADataDir, match="precious"):
        reopen(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "not ours"


def test_interrupted_initialisation_is_redone(tmp_path):
    s = reopen(tmp_path)
    s.close()
    os.unlink(tmp_path / "meta.json")  # crash just before meta.json was renamed into place
    (tmp_path / "meta.json.tmp").write_text("{")
    s = open_storage(tmp_path, "other-cluster", 1, CONFIG)
    assert s.created
    assert json.loads((tmp_path / "meta.json").read_text())["cluster_id"] == "other-cluster"
    s.close()


def test_a_dir_with_records_but_no_meta_is_not_reinitialised(tmp_path):
    s = reopen(tmp_path)
    s.set_hard_state(HardState(5, 1, 0))
    s.close()
    os.unlink(tmp_path / "meta.json")
    with pytest.raises(NotADataDir):
        reopen(tmp_path)


def test_unknown_format_versions_are_clear_errors(tmp_path):
    reopen(tmp_path).close()
    seg = tmp_path / "wal-0000000000000001.log"
    raw = bytearray(seg.read_bytes())
    raw[8:12] = (7).to_bytes(4, "little")
    seg.write_bytes(bytes(raw))
    with pytest.raises(UnsupportedFormat, match="WAL format version 7"):
        reopen(tmp_path)
    raw[8:12] = wal_mod.VERSION.to_bytes(4, "little")
    seg.write_bytes(bytes(raw))
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "format": 2}))
    with pytest.raises(UnsupportedFormat, match="format 2"):
        reopen(tmp_path)


def test_an_open_snapshot_survives_being_replaced(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 6, term=1))
    s.compact(SnapshotMeta(3, 1, CONFIG), b"old snapshot data")
    reader = s.open_snapshot()
    s.compact(SnapshotMeta(5, 1, CONFIG), b"new")  # deletes the old file
    assert not (tmp_path / "snapshot-00000000000000000003-00000000000000000001.snap").exists()
    assert reader.read(4, 8) == b"snapshot"
    reader.close()
    assert s.snapshot_data() == b"new"
    s.close()


def test_a_compaction_overtaken_by_a_snapshot_removes_its_file_but_never_the_current(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 9, term=1))
    s.sync()
    own = s.prepare_compact(SnapshotMeta(5, 1, CONFIG), b"own@5")
    s.install_snapshot(SnapshotMeta(7, 1, CONFIG), b"leader@7")  # overtakes it
    s.finish_compact(SnapshotMeta(5, 1, CONFIG), own)
    assert [n for n in files(tmp_path) if n.endswith(".snap")] == [
        "snapshot-00000000000000000007-00000000000000000001.snap"
    ]
    # A leader's snapshot of the same index and term replaces the file by its very name.
    same = s.prepare_compact(SnapshotMeta(8, 1, CONFIG), b"own@8")
    s.install_snapshot(SnapshotMeta(8, 1, CONFIG), b"leader@8")
    s.finish_compact(SnapshotMeta(8, 1, CONFIG), same)
    assert s.snapshot_data() == b"leader@8"
    s.close()
    s = reopen(tmp_path)  # the current snapshot file is still there
    assert (s.snapshot_meta().index, s.snapshot_data()) == (8, b"leader@8")
    s.close()
