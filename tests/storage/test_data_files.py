"""Hostile files under data-file names are refused with a ``CorruptionError`` naming them
(``raftkv/storage/data_files.py``), never opened in a way that blocks or reads unbounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftkv.restore import config_of
from raftkv.storage import open_storage
from raftkv.storage.data_files import check_regular, read_bounded
from raftkv.storage.errors import CorruptionError


def test_read_bounded_reads_a_regular_file_within_its_bound(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    assert read_bounded(str(f), 3) == b"abc"
    with pytest.raises(CorruptionError, match="4 bytes, more than the 3"):
        f.write_bytes(b"abcd")
        read_bounded(str(f), 3)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_non_regular_files_are_refused(tmp_path: Path, kind: str) -> None:
    target, path = tmp_path / "real", tmp_path / "x"
    target.write_bytes(b"abc")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(target)
    else:
        path.mkdir()
    with pytest.raises(CorruptionError):
        read_bounded(str(path), 100)  # (a FIFO must not block: O_NONBLOCK)
    with pytest.raises(CorruptionError, match="not a regular file"):
        check_regular(str(path))


def test_a_fifo_snapshot_is_refused_at_start(tmp_path: Path) -> None:
    d = tmp_path / "data"
    open_storage(str(d), "c", 1, config_of({1: "127.0.0.1:1"}), fsync="always").close()
    snap = next(n for n in os.listdir(d) if n.startswith("snap"))
    os.unlink(d / snap)
    os.mkfifo(d / snap)
    with pytest.raises(CorruptionError, match="a FIFO"):
        open_storage(str(d), "c", 1, config_of({1: "127.0.0.1:1"}), fsync="always")
