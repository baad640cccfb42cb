"""The in-memory log adds nothing to the garbage collector's full passes (issue 12).

A full collection walks every tracked object on the event loop; a log of 100k ``Entry``
objects (slotted attrs instances, never untracked) made most of a 48 ms pass. DiskStorage
keeps its entries as plain tuples, which CPython stops tracking, and makes ``Entry``
values only when read.
"""

from __future__ import annotations

import gc

from storage_model import entries, reopen

from wire.raft import Entry

N = 5_000


def tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_appended_entries_are_not_tracked_once_the_caller_drops_them(tmp_path) -> None:
    storage = reopen(tmp_path)
    try:
        before = tracked()
        storage.append(entries(1, N, term=1))
        storage.sync()
        assert tracked() - before < N // 10
        got = storage.entries(1, N + 1)
        assert got == entries(1, N, term=1) and type(got[0]) is Entry
        assert storage.term(N) == 1
        assert storage.entries(10, N + 1, max_bytes=64) == entries(10, 11, term=1)
    finally:
        storage.close()


def test_entries_loaded_from_the_wal_are_not_tracked(tmp_path) -> None:
    storage = reopen(tmp_path)
    storage.append(entries(1, N, term=2))
    storage.close()
    del storage
    before = tracked()
    storage = reopen(tmp_path)
    try:
        assert tracked() - before < N // 10
        assert storage.entries(N - 1, N + 1) == entries(N - 1, N, term=2)
    finally:
        storage.close()
