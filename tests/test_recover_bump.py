"""``raftkv recover --force-new-cluster`` starts the one-node cluster past any change id the
lost nodes could have issued, its change feed compacted there: the bump ``raftkv restore``
makes (raftkv.restore.bump_past; attack21's "left" item, fixed in session 11).

The lost nodes may hold entries past the survivor's last index L (appended, even committed
by a majority the survivor was not part of), whose change ids L+1, L+2, ... a watcher of
those nodes may have read. Before, the recovered cluster went on from L and issued those
ids again for other changes: that watcher, resuming from its last id, got nothing back
until the cluster passed it, silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raftkv.cli import recover as recover_command
from raftkv.kv import KVStateMachine, decode_snapshot_stream
from raftkv.kv.codec import encode_entry
from raftkv.kv.feed import MAX_POSITION, Compacted
from raftkv.recover import recover
from raftkv.restore import DEFAULT_BUMP, RestoreError, config_of
from raftkv.storage import open_storage
from wire.raft import MAX_INDEX, NORMAL, ClusterConfig, Entry, HardState

pytestmark = pytest.mark.timeout(60)

LAST = 30  # the survivor's last log index
MEMBERS = {1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "127.0.0.1:7103"}


def _survivor(data_dir: Path) -> KVStateMachine:
    """Node 1's stopped directory of a 3-node cluster: LAST SETs, commit known at 25."""
    kv = KVStateMachine()
    entries = []
    for n in range(1, LAST + 1):
        data = encode_entry([b"SET", b"k%d" % (n % 7), b"v%d" % n], n)
        entries.append(Entry(2, n, NORMAL, data))
        kv.apply(data, n)
    storage = open_storage(str(data_dir), "old", 1, config_of(MEMBERS), fsync="never")
    try:
        storage.append(entries)
        storage.set_hard_state(HardState(term=2, vote=1, commit=25))
        storage.sync()
    finally:
        storage.close()
    return kv


def _load(data_dir: Path) -> tuple[int, KVStateMachine]:
    storage = open_storage(str(data_dir), "old", 1, ClusterConfig(), fsync="never")
    try:
        meta = storage.snapshot_meta()
        assert storage.last_index() == meta.index  # nothing past the snapshot
        state = storage.decode_snapshot(decode_snapshot_stream)
    finally:
        storage.close(sync=False)
    kv = KVStateMachine()
    kv.replace(state)
    kv.feed.restored_at(meta.index)
    return meta.index, kv


def test_the_recovered_cluster_starts_past_the_survivors_log(tmp_path: Path) -> None:
    old = _survivor(tmp_path / "n1")
    result = recover(str(tmp_path / "n1"), 1)
    assert result.last == LAST and result.index == LAST + DEFAULT_BUMP
    assert result.keys == 7 and result.beyond_commit == 5
    index, kv = _load(tmp_path / "n1")
    assert index == result.index
    assert kv.snapshot_state(with_feed=False) == old.snapshot_state(with_feed=False)
    assert len(kv.feed) == 0 and kv.feed.floor == (index, MAX_POSITION)
    # A watcher of the survivor (id LAST) or of a lost node that had more (LAST + 5):
    # "compacted ... resync", not an id the new cluster will issue again.
    for resume in ((LAST, 0), (LAST + 5, 0), (index - 1, 0)):
        with pytest.raises(Compacted):
            kv.feed.check(resume)
    kv.feed.check((index, MAX_POSITION))  # "$" on the new cluster: fine


@pytest.mark.parametrize("bump", [0, MAX_INDEX])
def test_a_bump_that_cannot_work_is_refused_before_the_directory_moves(
        tmp_path: Path, bump: int) -> None:
    _survivor(tmp_path / "n1")
    with pytest.raises(RestoreError, match="--bump-index"):
        recover(str(tmp_path / "n1"), 1, bump=bump)
    assert [p.name for p in tmp_path.iterdir()] == ["n1"]  # nothing moved aside


def test_the_command_takes_bump_index_and_says_where_the_cluster_starts(
        tmp_path: Path) -> None:
    _survivor(tmp_path / "n1")
    out = CliRunner().invoke(recover_command, [
        "--data-dir", str(tmp_path / "n1"), "--id", "1", "--force-new-cluster",
        "--bump-index", "1000"])
    assert out.exit_code == 0, out.output
    assert "recovered 7 keys (last index 30" in out.output
    assert "at index 1030 (change ids before it: compacted)" in out.output
    assert _load(tmp_path / "n1")[0] == 1030
