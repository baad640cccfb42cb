"""``raftkv restore`` / ``backup verify`` on backups whose digests match but whose state
does not (attack5 branch, round 5). Each test failed before its fix.

A backup's digests prove the bytes intact, not the state sane: anyone can write a file
whose digests match (``BackupWriter`` does it for them). Round 2 bounded the header's
numbers; what was still taken at face value, live:

* a script cached under the sha of another body: ``EVALSHA <sha1 of "return 1">`` then
  runs whatever body the file put there, on every member of the restored cluster (Redis
  keys scripts by their body's SHA1; no replica ever writes another key);
* a state at index 0 holding scripts (no keys, so the round-2 check passes): restore
  printed "restored 0 keys" and wrote no snapshot at all, so the cluster started without
  them: its state silently differs from the backup's;
* a change feed whose changes are newer than the backup's index: the restored cluster's
  first writes (index + 1 ...) sort below them, so the feed's ids are no longer increasing
  and a watcher resuming from the newest id it saw never sees the new changes;
* a FIFO given as the file: ``open`` blocks for good (no writer), before any check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from backup_helpers import write_backup

from raftkv.backup_file import BackupError, verify_backup
from raftkv.kv import KVStateMachine, decode_snapshot, encode_snapshot
from raftkv.kv.changes import Change
from raftkv.kv.codec import encode_entry
from raftkv.kv.feed import FeedState
from raftkv.kv.script_cache import script_sha
from raftkv.restore import RestoreError, restore


def _write(path: Path, payload: bytes, **fields: object) -> str:
    return write_backup(path, payload, **{"keys": 0, **fields})


def _state_with_script() -> bytes:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SCRIPT", b"LOAD", b"return 'mine'"], 1))
    return kv.snapshot()


def _swapped_script_state() -> bytes:
    state = decode_snapshot(_state_with_script())
    state.scripts = {script_sha(b"return 1"): b"return redis.call('FLUSHALL')"}
    return encode_snapshot(state)


def _feed_ahead_state() -> bytes:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"a", b"1"], 1), index=3)
    state = kv.snapshot_state()
    state.feed = FeedState((2, 0), (Change(1000, 0, "set", b"a", b"1", None),))
    return encode_snapshot(state)


def _restore(path: str, tmp_path: Path) -> None:
    restore(path, str(tmp_path / "data"), 1, {1: "127.0.0.1:1"}, "new")


def test_a_script_under_another_bodys_sha_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.bk", _swapped_script_state())
    with pytest.raises(BackupError):
        verify_backup(path)
    with pytest.raises((BackupError, RestoreError)):
        _restore(path, tmp_path)


def test_the_genuine_script_cache_still_restores(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.bk", _state_with_script())
    verify_backup(path)
    _restore(path, tmp_path)


def test_a_state_at_index_0_is_refused_unless_empty(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.bk", _state_with_script(), index=0, term=0)
    with pytest.raises((BackupError, RestoreError)):
        _restore(path, tmp_path)


def test_feed_changes_newer_than_the_backup_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.bk", _feed_ahead_state(), keys=1, index=5)
    with pytest.raises((BackupError, RestoreError)):
        _restore(path, tmp_path)


FIFO_CHILD = """
    import sys
    from raftkv.backup_file import BackupError, verify_backup
    try:
        verify_backup(sys.argv[1])
    except BackupError as exc:
        print("refused:", exc)
"""


@pytest.mark.slow  # 10 s while it fails (the child is killed at its timeout)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "b.bk"
    os.mkfifo(fifo)
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(FIFO_CHILD), str(fifo)],
                              capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("backup verify blocked on a FIFO for 10 s")
    assert "refused:" in done.stdout and "regular file" in done.stdout, done.stderr[-1500:]
