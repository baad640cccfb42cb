"""``peek_config`` (raftkv up's voter check) reads what ``open_storage`` would find, and
changes nothing: a torn tail stays for the node's own open to repair and report."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft.membership import encode_config
from raftkv.storage import CorruptionError, open_storage
from raftkv.storage.files import TMP_SUFFIX
from raftkv.storage.peek import peek_config
from wire.raft import CONFIG, NORMAL, ClusterConfig, Entry, Member, SnapshotMeta

pytestmark = pytest.mark.timeout(30)


def _config(*ids: int) -> ClusterConfig:
    return ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}") for i in ids))


def _opened(d: Path) -> tuple[int, ClusterConfig]:
    storage = open_storage(d, "c", 1, ClusterConfig(), fsync="never")
    try:
        return storage.last_index(), storage.initial_state()[1]
    finally:
        storage.close(sync=False)


def _listing(d: Path) -> set[str]:
    return {f"{p.name}:{p.stat().st_size}" for p in d.iterdir()}


def test_a_new_directory_holds_the_bootstrap_config(tmp_path: Path) -> None:
    open_storage(tmp_path, "c", 1, _config(1, 2, 3), fsync="never").close()
    assert peek_config(str(tmp_path)) == (0, _config(1, 2, 3)) == _opened(tmp_path)


def test_the_latest_config_entry_wins_and_a_compaction_keeps_it(tmp_path: Path) -> None:
    storage = open_storage(tmp_path, "c", 1, _config(1, 2, 3), fsync="never")
    storage.append([Entry(1, 1, NORMAL, b"a"), Entry(1, 2, CONFIG, encode_config(_config(1, 2))),
                    Entry(1, 3, NORMAL, b"b")])
    storage.sync()
    assert peek_config(str(tmp_path)) == (3, _config(1, 2))
    storage.compact(SnapshotMeta(index=3, term=1, config=_config(1, 2)), b"")
    storage.append([Entry(1, 4, CONFIG, encode_config(_config(1, 2, 5)))])
    storage.sync()
    storage.close()
    assert peek_config(str(tmp_path)) == (4, _config(1, 2, 5)) == _opened(tmp_path)


def test_it_repairs_nothing_and_refuses_what_open_refuses(tmp_path: Path) -> None:
    storage = open_storage(tmp_path, "c", 1, _config(1), fsync="never")
    storage.append([Entry(1, 1, NORMAL, b"a")])
    storage.sync()
    storage.close()
    seg = sorted(tmp_path.glob("wal-*.log"))
    (tmp_path / ("snapshot-9" + TMP_SUFFIX)).write_bytes(b"x")  # an unfinished snapshot
    with open(seg[-1], "ab") as f:
        f.write(b"\x07" * 64)
    before = _listing(tmp_path)
    assert peek_config(str(tmp_path)) == (1, _config(1))
    assert _listing(tmp_path) == before
    for p in tmp_path.glob("snapshot-*.snap"):
        p.unlink()
    with pytest.raises(CorruptionError):
        peek_config(str(tmp_path))
