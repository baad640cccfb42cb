"""How ``raftkv backup`` creates its file (attack8).

A backup holds every key and the sessions' recorded replies. It was written with
``open(FILE.partial, "wb")``: under the usual umask (022) the file came out 0644, readable
by every local user, and a symlink planted at ``FILE.partial`` was followed. Live, against a
3-node cluster: with ``/tmp/atk8/bk.partial -> /tmp/atk8/victim``, ``raftkv backup
/tmp/atk8/bk`` answered success and the victim file now held the backup (its content
replaced, RAFTKV-BACKUP magic at byte 0), ``bk`` being left a symlink to it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from backup_helpers import write_backup

from raftkv.backup_file import BackupError, verify_backup
from raftkv.kv import KVStateMachine
from raftkv.kv.codec import encode_entry


def _state() -> bytes:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"secret", b"hunter2"], 1))
    return kv.snapshot()


def test_a_symlink_at_the_temp_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (tmp_path / "bk.partial").symlink_to(victim)
    write_backup(tmp_path / "bk", _state())
    assert victim.read_bytes() == b"precious\n"
    assert not (tmp_path / "bk").is_symlink()
    assert verify_backup(str(tmp_path / "bk")).keys == 1


def test_the_backup_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_backup(tmp_path / "bk", _state())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "bk").st_mode) == 0o600


def test_a_leftover_temp_file_is_replaced_and_an_unwritable_place_is_an_error(
        tmp_path: Path) -> None:
    (tmp_path / "bk.partial").write_bytes(b"from a run that died")
    write_backup(tmp_path / "bk", _state())
    assert verify_backup(str(tmp_path / "bk")).keys == 1
    (tmp_path / "dir.partial").mkdir()
    with pytest.raises(BackupError, match="cannot write"):
        write_backup(tmp_path / "dir", _state())
