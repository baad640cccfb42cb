"""Installing a snapshot never holds the file's bytes beside the decoded state (issue 12).

A restart loading its snapshot and ``raftkv restore`` read the whole file into one
``bytes`` (the restart joined a list of 1 MiB pieces: twice the file at the peak), then
decoded it. Now the decoder reads the file in pieces, the checksum summed as it goes and
checked before the state is returned. tracemalloc counts Python's allocations
deterministically: no timing, no machine dependence.
"""

from __future__ import annotations

import gc
import hashlib
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from raftkv.backup_file import BackupHeader, BackupWriter
from raftkv.kv import KVState, KVStateMachine, decode_snapshot, encode_snapshot
from raftkv.node.opening import load_snapshot_state
from raftkv.restore import config_of, restore
from raftkv.storage import CorruptionError, open_storage
from raftkv.storage.snapshot_file import snapshot_name
from wire.raft import SnapshotMeta

CONFIG = config_of({1: "127.0.0.1:1"})
MIB = 1 << 20


def _blob() -> bytes:
    """An 8 MiB snapshot: 2,000 keys of 4 KiB values (the decoded state is as large)."""
    return encode_snapshot(KVState(data={b"k%05d" % i: bytes([i % 251]) * 4096
                                         for i in range(2000)}))


def _data_dir(d: Path, blob: bytes) -> None:
    storage = open_storage(d, "c", 1, CONFIG, fsync="never")
    try:
        storage.install_snapshot(SnapshotMeta(10, 1, CONFIG), blob)
    finally:
        storage.close()


def _peak_beyond_kept(fn: Callable[..., object], *args: object) -> tuple[object, int, int]:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn(*args)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, kept - base, peak - base


def test_a_restart_decodes_its_snapshot_from_the_file_in_pieces(tmp_path: Path) -> None:
    blob = _blob()
    size, want = len(blob), decode_snapshot(blob).data
    _data_dir(tmp_path, blob)
    del blob
    storage = open_storage(tmp_path, "c", 1, CONFIG, fsync="never")
    try:
        kv = KVStateMachine()
        _, kept, peak = _peak_beyond_kept(load_snapshot_state, storage, kv)
    finally:
        storage.close()
    assert kv.snapshot_state().data == want
    # Before: the file's 8 MiB in pieces plus their join (16 MiB) beyond the state.
    assert peak - kept < MIB < size, (peak, kept, size)


def test_a_snapshot_that_rots_after_open_changes_nothing(tmp_path: Path) -> None:
    """The checksum is still checked before the state is taken: a byte flipped in the
    file after the storage opened (and checked) it is a CorruptionError naming the
    file, and the state machine keeps what it held."""
    _data_dir(tmp_path, _blob())
    storage = open_storage(tmp_path, "c", 1, CONFIG, fsync="never")
    try:
        path = tmp_path / snapshot_name(10, 1)
        with open(path, "r+b") as f:  # a value's byte, deep in the data: decodes fine
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
        kv = KVStateMachine()
        kv.replace({b"mine": b"kept"})
        with pytest.raises(CorruptionError, match="checksum"):
            load_snapshot_state(storage, kv)
        assert kv.snapshot_state().data == {b"mine": b"kept"}
    finally:
        storage.close()


def test_restore_decodes_and_copies_the_backup_in_pieces(tmp_path: Path) -> None:
    """``raftkv restore`` read the payload whole, decoded it beside it to check it, then
    wrote the snapshot from it: the payload and the state at once."""
    blob = _blob()
    path = str(tmp_path / "b.backup")
    writer = BackupWriter(path, BackupHeader("old", 10, 1, 2000, len(blob),
                                             hashlib.sha256(blob).hexdigest(), "now", "t"))
    writer.write(blob)
    writer.finish()
    state_bytes = _peak_beyond_kept(decode_snapshot, blob)[1]
    del blob
    _, _, peak = _peak_beyond_kept(restore, path, str(tmp_path / "d"), 1,
                                   {1: "127.0.0.1:1"}, "new")
    # Before: the 8 MiB payload beside the ~8.5 MiB state.
    assert peak < state_bytes + 2 * MIB, (peak, state_bytes)
    storage = open_storage(tmp_path / "d", "new", 1, CONFIG, fsync="never")
    try:
        kv = KVStateMachine()
        load_snapshot_state(storage, kv)
        assert len(kv) == 2000 and kv.snapshot_state().data[b"k00007"] == b"\x07" * 4096
    finally:
        storage.close()
