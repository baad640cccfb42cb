"""Large appends are encoded by ``sync`` (the node's sync thread), not by ``append`` (the
event loop): an 8 MiB entry's msgpack, CRC and copies took ~56 ms of the loop on a loaded
2-core machine (issue 12). The WAL holds the same records, in the same order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from storage_model import entries, entry, reopen

from raftkv.storage import disk_storage, records
from wire.raft import Entry, HardState

BIG = disk_storage.DEFER_ENCODING_BYTES


def test_a_large_append_is_encoded_at_sync_and_reads_back_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []
    real, real_append = records.entries_record, records.append_entries_record

    def spy(es):  # type: ignore[no-untyped-def]
        encoded.append("sync" if syncing else "append")
        return real(es)

    def spy_append(out, es):  # type: ignore[no-untyped-def]
        encoded.append("sync" if syncing else "append")
        return real_append(out, es)

    monkeypatch.setattr(records, "entries_record", spy)
    monkeypatch.setattr(records, "append_entries_record", spy_append)
    syncing = False
    s = reopen(tmp_path)
    s.append(entries(1, 3, 1))  # small: encoded at once, as before
    s.set_hard_state(HardState(2, 1, 0))
    big = entry(4, 2, b"b" * BIG)
    s.append([big])  # large: deferred
    s.append(entries(3, 3, 2))  # truncates 3.. (the big one too) and replaces 3
    s.append([entry(4, 2, b"c" * (BIG + 1))])  # a large one again
    s.set_hard_state(HardState(2, 1, 3))
    assert encoded == ["append", "append"]
    assert s.buffered_bytes >= 2 * BIG
    syncing = True
    s.sync()
    assert encoded == ["append", "append", "sync", "sync"]
    assert s.buffered_bytes == 0
    s.close()
    again = reopen(tmp_path)
    assert [(e.index, e.term, len(e.data)) for e in again.entries(1, 5)] == [
        (1, 1, 3), (2, 1, 3), (3, 2, 3), (4, 2, BIG + 1)]
    again.close()


@pytest.mark.parametrize("seed", range(40))
def test_a_group_encoded_by_reference_is_byte_for_byte_the_record(seed: int) -> None:
    """``append_entries_record`` (one copy of large data, used by ``sync``) writes exactly
    what ``entries_record`` writes: recovery and older nodes read the same WAL."""
    rng = random.Random(seed)
    sizes = [0, 1, 255, 256, 65535, 65536, 65537, records.BIG_DATA * 3]
    es = [Entry(rng.choice([0, 1, 127, 128, 2**31, 2**62 - 1]), 1000 + i, rng.choice([0, 1, 2]),
                rng.randbytes(rng.choice(sizes) if rng.random() < 0.5 else rng.randrange(100)))
          for i in range(rng.choice([1, 2, 15, 16, 17, 300]))]
    out = bytearray(b"before")
    records.append_entries_record(out, es)
    assert bytes(out) == b"before" + records.entries_record(es)
