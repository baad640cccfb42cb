"""``DiskStorage.sync`` in two halves (``sync_write``, then the fsync run elsewhere and
``synced``): the runtime hands the fsync to the kernel's AIO (raftkv.node.sync_thread)."""

from __future__ import annotations

import errno
import os

import pytest
from storage_model import entries, reopen

from raftkv.storage import StorageFailure
from wire.raft import HardState


def test_the_halves_write_one_group_and_name_the_fsync_it_needs(tmp_path, monkeypatch):
    s = reopen(tmp_path, fsync="always")
    calls: list[str] = []
    for name in ("pwrite", "fsync", "fdatasync"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    for group in range(2):
        s.append(entries(group * 5 + 1, group * 5 + 5, term=1))
        s.set_hard_state(HardState(1, 1, group * 5))
        fd, datasync = s.sync_write()
        assert calls == ["pwrite"]  # the fsync is the caller's
        assert datasync is (group > 0)  # the first group grew the file: a full fsync
        (os.fdatasync if datasync else os.fsync)(fd)
        s.synced(None)
        calls.clear()
        assert s.sync_write() is None  # nothing buffered: nothing to do
    monkeypatch.undo()
    s.close()
    s = reopen(tmp_path)
    assert s.last_index() == 10
    assert s.initial_state()[0] == HardState(1, 1, 5)
    s.close()


def test_a_failed_fsync_fails_the_storage_for_good(tmp_path):
    s = reopen(tmp_path, fsync="always")
    s.append(entries(1, 3, term=1))
    s.sync_write()
    with pytest.raises(StorageFailure, match="writing the WAL"):
        s.synced(OSError(errno.EIO, "EIO"))
    assert s.failed
    with pytest.raises(StorageFailure, match="failed earlier"):
        s.append(entries(4, 4, term=1))
    with pytest.raises(StorageFailure, match="failed earlier"):
        s.sync_write()
    s.close()
