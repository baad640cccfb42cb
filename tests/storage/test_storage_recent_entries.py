"""DiskStorage keeps the Entry objects of its newest entries and hands them out again from
``entries`` (RECENT_ENTRIES): any range read after appends that truncate, compactions,
snapshot installs and restarts equals the model's entries, a range among the newest is the
very objects appended, and no more than RECENT_ENTRIES of them are held."""

from __future__ import annotations

import random

import pytest
from storage_model import CONFIG, Model, reopen

from raftkv.storage import disk_storage
from wire.raft import Entry, SnapshotMeta

KEPT = 8  # (RECENT_ENTRIES, small: every path of the cache is taken many times)


def test_range_reads_match_the_model_through_truncations_snapshots_and_restarts(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk_storage, "RECENT_ENTRIES", KEPT)
    rng = random.Random(5)
    s = reopen(tmp_path, segment_size=400)
    model = Model()
    term = 1
    newest: dict[int, Entry] = {}  # index -> the object last appended there
    try:
        for _step in range(600):
            last = s.last_index()
            op = rng.random()
            if op < 0.6:  # an append, often replacing a suffix (a new leader's entries)
                start = rng.randint(max(s.first_index(), last - 12), last + 1)
                term += rng.random() < 0.3
                batch = [Entry(term, i, 0, rng.randbytes(rng.randint(0, 20)))
                         for i in range(start, start + rng.choice((1, 2, 5, 20)))]
                s.append(batch)
                model.append(batch)
                newest.update((e.index, e) for e in batch)
            elif op < 0.75 and last > s.snapshot_meta().index:
                index = rng.randint(s.first_index(), last)
                meta = SnapshotMeta(index, s.term(index), CONFIG)
                s.compact(meta, b"snap")
                model.compact(meta, b"snap")
            elif op < 0.85:  # a leader's snapshot, matching our log or not
                index = s.snapshot_meta().index + rng.randint(1, 15)
                if rng.random() < 0.5 and index <= last:
                    meta = SnapshotMeta(index, s.term(index), CONFIG)
                else:
                    term += 1
                    meta = SnapshotMeta(index, term, CONFIG)
                s.install_snapshot(meta, b"leader's")
                model.install_snapshot(meta, b"leader's")
            elif op < 0.9:
                s.sync()
                model.sync()
                s.close()
                s = reopen(tmp_path, segment_size=400)
                model = Model(model.durable)
            live = model.live
            assert s.last_index() == live.last_index
            assert len(s._recent) <= KEPT
            first, end = s.first_index(), s.last_index() + 1
            for _ in range(4):
                lo = rng.randint(first, end)
                hi = rng.randint(lo, end)
                want = list(live.entries[lo - first:hi - first])
                assert s.entries(lo, hi) == want
                assert s.entries(lo, hi, max_bytes=1 << 20) == want
            if len(s._recent) >= 2:  # the newest two: the very objects appended
                got = s.entries(end - 2, end)
                assert got[0] is newest[end - 2] and got[1] is newest[end - 1]
    finally:
        s.close()
