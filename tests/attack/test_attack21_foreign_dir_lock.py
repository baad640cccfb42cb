"""A start refused on a directory that is not RaftKV's leaves a ``LOCK`` file in it
(attack21).

A new user's typo, ``raftkv serve ... --data-dir ~`` (or a directory of notes, or a
mounted volume's root with ``lost+found``), is refused with a clear line ("has no
meta.json but holds 'notes.txt': not a RaftKV dir"), but the storage takes its lock
first, creating ``DIR/LOCK``, and leaves it there: the user's directory now holds a stray
empty file, and it is mode 0755 (``os.open(..., O_CREAT)`` with the default mode 0o777
under umask 022: an executable lock file in every data directory too).

Right: a refused directory is left exactly as it was (check before creating anything, or
remove the lock file it created), and the lock file is created without execute bits
(etcd's ``member/wal`` files are 0600; Redis makes no lock file).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from raftkv.storage import open_storage
from raftkv.storage.errors import NotADataDir
from wire.raft import ClusterConfig, Member

CONFIG = ClusterConfig((Member(1, "127.0.0.1:7101"),))


def test_a_refused_foreign_directory_is_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")

    with pytest.raises(NotADataDir):
        open_storage(tmp_path, "c", 1, CONFIG, fsync="never")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_lock_file_is_not_executable(tmp_path: Path) -> None:
    open_storage(tmp_path / "node", "c", 1, CONFIG, fsync="never").close()

    mode = (tmp_path / "node" / "LOCK").stat().st_mode
    assert not mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH), oct(mode)
