"""``raftkv restore`` starts the new cluster past any change id the old one could have
issued, its change feed compacted there (attack21; etcd's ``snapshot restore
--bump-revision --mark-compacted``). The live check, a watcher resuming on a restored
cluster, is tests/attack/test_attack21_restored_feed_ids.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from raftkv.backup_file import BackupHeader, BackupWriter
from raftkv.kv import KVStateMachine, decode_snapshot_stream, encode_snapshot
from raftkv.kv.codec import encode_entry
from raftkv.kv.feed import MAX_POSITION, Compacted
from raftkv.kv.state import snapshot_pieces
from raftkv.restore import DEFAULT_BUMP, RestoreError, restore
from raftkv.storage import open_storage
from wire.raft import MAX_INDEX, ClusterConfig

pytestmark = pytest.mark.timeout(60)

MEMBERS = {1: "127.0.0.1:1", 2: "127.0.0.1:2"}


def _backup(path: Path, index: int = 40) -> tuple[str, KVStateMachine]:
    kv = KVStateMachine()
    for n in range(1, index + 1):
        kv.apply(encode_entry([b"SET", b"k%d" % (n % 7), b"v%d" % n], n), index=n)
    payload = kv.snapshot()
    header = BackupHeader(cluster_id="old", index=index, term=3, keys=len(kv),
                          bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                          created="now", source="test")
    writer = BackupWriter(str(path), header)
    writer.write(payload)
    writer.finish()
    return str(path), kv


def _load(data_dir: Path, node_id: int) -> tuple[int, KVStateMachine, bytes]:
    storage = open_storage(str(data_dir), "new", node_id, ClusterConfig(), fsync="never")
    try:
        meta = storage.snapshot_meta()
        state = storage.decode_snapshot(decode_snapshot_stream)
    finally:
        storage.close(sync=False)
    kv = KVStateMachine()
    kv.replace(state)
    kv.feed.restored_at(meta.index)
    return meta.index, kv, encode_snapshot(state)


def test_the_new_cluster_starts_past_the_backup_with_its_feed_compacted(tmp_path: Path) -> None:
    path, old = _backup(tmp_path / "b.bak")
    assert len(old.feed) > 0  # the old cluster's tail, ids up to 40
    result = restore(path, str(tmp_path / "n1"), 1, MEMBERS, "new")
    assert result.index == 40 + DEFAULT_BUMP and result.header.index == 40
    index, kv, _ = _load(tmp_path / "n1", 1)
    assert index == result.index
    assert kv.snapshot_state().data == old.snapshot_state().data  # the same keys and values
    assert len(kv.feed) == 0 and kv.feed.floor == (index, MAX_POSITION)
    for resume in ((39, 0), (41, 0), (index - 1, 0)):  # before, or after, the backup
        with pytest.raises(Compacted):
            kv.feed.check(resume)
    kv.feed.check((index, MAX_POSITION))  # "$" on the new cluster: fine


def test_every_member_gets_the_same_snapshot_and_a_chosen_bump(tmp_path: Path) -> None:
    path, _ = _backup(tmp_path / "b.bak")
    for node_id in MEMBERS:
        restore(path, str(tmp_path / f"n{node_id}"), node_id, MEMBERS, "new", bump=1000)
    (i1, _, blob1), (i2, _, blob2) = (_load(tmp_path / f"n{i}", i) for i in MEMBERS)
    assert i1 == i2 == 1040 and blob1 == blob2


@pytest.mark.parametrize("bump", [0, -5, MAX_INDEX])
def test_a_bump_that_cannot_work_is_refused_before_writing(tmp_path: Path, bump: int) -> None:
    path, _ = _backup(tmp_path / "b.bak")
    with pytest.raises(RestoreError, match="--bump-index"):
        restore(path, str(tmp_path / "n1"), 1, MEMBERS, "new", bump=bump)
    assert not (tmp_path / "n1").exists()


def test_the_snapshot_in_pieces_is_the_snapshot() -> None:
    kv = KVStateMachine()
    for n in range(1, 20_001):
        kv.apply(encode_entry([b"SET", b"key:%d" % n, b"x" * 50], n), index=n)
    state = kv.snapshot_state()
    assert state.feed is not None and len(state.feed.changes) == 20_000
    pieces = list(snapshot_pieces(state, 64 * 1024))
    assert len(pieces) > 5 and min(map(len, pieces[:-1])) >= 64 * 1024  # only full ones
    assert b"".join(pieces) == encode_snapshot(state) == kv.snapshot()


def test_no_member_of_the_new_cluster_is_published_yet(tmp_path: Path) -> None:
    kv = KVStateMachine()
    for index, node_id in enumerate((1, 2), start=1):
        kv.apply(encode_entry([b"publish_member", str(node_id).encode()], 1), index=index)
    assert kv.snapshot_state().published == {1, 2}
    payload = kv.snapshot()
    header = BackupHeader(cluster_id="old", index=2, term=1, keys=0, bytes=len(payload),
                          sha256=hashlib.sha256(payload).hexdigest(), created="now",
                          source="test")
    writer = BackupWriter(str(tmp_path / "b.bak"), header)
    writer.write(payload)
    writer.finish()
    restore(str(tmp_path / "b.bak"), str(tmp_path / "n1"), 1, MEMBERS, "new")
    assert _load(tmp_path / "n1", 1)[1].snapshot_state().published == set()
