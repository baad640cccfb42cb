"""Crash consistency: a crash at every recorded point of append, truncation, segment roll,
compaction, snapshot install (full or chunked) and initialisation, and every byte cut of
the WAL writes, recovers without error to a state between the last two syncs.

Each storage call is run against the ``Model`` too; every directory state recorded during
the call (see crash_recorder) is tagged with the model's acceptable states before and after
it. Recovery must then (1) open without error, (2) equal one of those states exactly (so
nothing synced is lost and nothing unsynced is invented), and (3) accept further writes.
"""

from __future__ import annotations

import os
import random

import pytest
from crash_recorder import FsRecorder
from storage_model import (
    CONFIG,
    Model,
    bootstrap_state,
    entries,
    entry,
    materialise,
    reopen,
    state_of,
)

from wire.raft import HardState, SnapshotMeta


class Harness:
    def __init__(self, tmp_path, monkeypatch, segment_size: int = 1 << 20) -> None:
        self.tmp = tmp_path
        self.dir = tmp_path / "node"
        self.dir.mkdir()
        self.mp = monkeypatch
        self.segment_size = segment_size
        self.rec = FsRecorder(str(self.dir))
        self.rec.install(monkeypatch)
        self.model = Model()
        self.s = self.call(
            lambda: reopen(self.dir, fsync="always", segment_size=segment_size), None
        )

    def call(self, fn, model_fn):
        before = self.model.candidates()
        start = len(self.rec.states)
        result = fn()
        if model_fn is not None:
            model_fn(self.model)
        self.rec.tag_since(start, before + self.model.candidates())
        self.rec.check_clean()
        return result

    def append(self, es) -> None:
        self.call(lambda: self.s.append(es), lambda m: m.append(es))

    def hard_state(self, hs: HardState) -> None:
        self.call(lambda: self.s.set_hard_state(hs), lambda m: m.set_hard_state(hs))

    def sync(self) -> None:
        self.call(self.s.sync, Model.sync)

    def compact(self, index: int, data: bytes) -> None:
        meta = SnapshotMeta(index, self.s.term(index), CONFIG)
        self.call(lambda: self.s.compact(meta, data), lambda m: m.compact(meta, data))

    def install(self, index: int, term: int, data: bytes, chunked: bool = False) -> None:
        meta = SnapshotMeta(index, term, CONFIG)
        if not chunked:
            self.call(
                lambda: self.s.install_snapshot(meta, data),
                lambda m: m.install_snapshot(meta, data),
            )
            return
        w = self.call(lambda: self.s.snapshot_writer(meta), None)
        for off in range(0, len(data), 7):
            self.call(lambda off=off: w.write(off, data[off : off + 7]), None)
        self.call(w.finish, lambda m: m.install_snapshot(meta, data))

    def mark(self) -> int:
        """Writes recorded from here on are cut at every byte offset."""
        return len(self.rec.states)

    def verify(self, every_byte_from: int | None = None) -> int:
        self.call(lambda: self.s.close(sync=False), None)  # a crash may come mid-close too
        self.mp.undo()  # stop recording: recovery runs in other directories
        assert state_of(reopen(self.dir)).normalized() == self.model.live.normalized()
        cases = [(f, t, f"state {i}") for i, (f, t) in enumerate(self.rec.states)]
        cases += self.rec.torn_variants(
            len(self.rec.states) if every_byte_from is None else every_byte_from
        )
        crash_dir = str(self.tmp / "crash")
        for files, tag, label in cases:
            assert tag is not None, label
            materialise(files, crash_dir)
            s = reopen(crash_dir)
            got = state_of(s).normalized()
            allowed = [c.normalized() for c in tag]
            assert got in allowed, f"{label}: recovered {got} not in {allowed}"
            # The recovered directory is healthy: it takes a write and recovers it.
            nxt = s.last_index() + 1
            s.append([entry(nxt, 99)])
            s.sync()
            s.close()
            s = reopen(crash_dir)
            assert (s.last_index(), s.term(nxt)) == (nxt, 99), label
            s.close()
        return len(cases)


def test_crash_during_initialisation(tmp_path, monkeypatch):
    h = Harness(tmp_path, monkeypatch)
    assert len(h.rec.states) >= 3  # snapshot, segment and meta each appear on their own
    n = h.verify()
    assert n >= 3
    assert all(tag == [bootstrap_state()] * 2 for _, tag in h.rec.states)


def test_crash_during_appends_every_byte_of_the_last_group(tmp_path, monkeypatch):
    h = Harness(tmp_path, monkeypatch)
    for g in range(3):
        h.append(entries(g * 4 + 1, g * 4 + 4, term=1, size=20))
        h.hard_state(HardState(1, 1, g * 4))
        h.sync()
    mark = h.mark()
    h.append(entries(13, 15, term=2, size=20))
    h.hard_state(HardState(2, 1, 12))
    h.sync()
    last_group = h.rec.writes[-1][3]
    assert len(last_group) >= 100
    assert h.verify(every_byte_from=mark) > len(last_group)


def test_crash_during_a_conflicting_truncation(tmp_path, monkeypatch):
    h = Harness(tmp_path, monkeypatch)
    h.append(entries(1, 8, term=1, size=10))
    h.hard_state(HardState(1, 0, 3))
    h.sync()
    mark = h.mark()
    h.hard_state(HardState(2, 2, 3))
    h.append(entries(5, 6, term=2))  # conflict at 5: entries 5..8 of term 1 are void
    h.sync()
    h.verify(every_byte_from=mark)
    # Recovery must never show term-1 entries 5..8 mixed with the term-2 ones.
    assert h.model.live.entries[4].term == 2 and len(h.model.live.entries) == 6


def test_crash_during_segment_rolls(tmp_path, monkeypatch):
    h = Harness(tmp_path, monkeypatch, segment_size=160)
    for i in range(1, 13):
        if i == 9:
            mark = h.mark()  # every byte of the groups around the last rolls
        h.append([entry(i, 1 + i // 5, b"r" * 30)])
        h.hard_state(HardState(1 + i // 5, 1, i - 1))
        h.sync()
    assert sum(n.startswith("wal-") for n in os.listdir(h.dir)) >= 4
    # Appends to rolled segments (through the descriptor each was created with) are cut too.
    assert len({w[1] for w in h.rec.writes}) >= 4
    h.verify(every_byte_from=mark)


def test_crash_during_compaction(tmp_path, monkeypatch):
    h = Harness(tmp_path, monkeypatch, segment_size=160)
    for i in range(1, 13):
        h.append([entry(i, 1, b"c" * 30)])
        h.sync()
    h.compact(5, b"state@5")
    h.append(entries(13, 14, term=1))  # buffered: compaction syncs it first
    h.compact(10, b"state@10")  # deletes segments and the older snapshot
    h.append(entries(15, 16, term=1))
    h.sync()
    names = os.listdir(h.dir)
    assert [n for n in names if n.endswith(".snap")] == [
        "snapshot-00000000000000000010-00000000000000000001.snap"
    ]
    h.verify()


@pytest.mark.parametrize("chunked", [False, True])
def test_crash_during_snapshot_install_that_resets_the_log(tmp_path, monkeypatch, chunked):
    h = Harness(tmp_path, monkeypatch, segment_size=160)
    for i in range(1, 10):
        h.append([entry(i, 1, b"i" * 30)])
        h.hard_state(HardState(1, 1, i // 2))
        h.sync()
    h.hard_state(HardState(3, 0, 7))
    h.install(7, 3, b"leader-state@7" * 3, chunked=chunked)  # entry 7 has term 1: reset
    h.append(entries(8, 9, term=3))
    h.sync()
    assert sum(n.startswith("wal-") for n in os.listdir(h.dir)) == 1
    h.verify()


def test_crash_during_snapshot_install_that_keeps_a_suffix(tmp_path, monkeypatch):
    h = Harness(tmp_path, monkeypatch, segment_size=160)
    for i in range(1, 10):
        h.append([entry(i, 2, b"k" * 30)])
        h.sync()
    h.install(6, 2, b"leader-state@6")
    h.append(entries(10, 10, term=2))
    h.sync()
    h.verify()


@pytest.mark.parametrize("seed", range(3))
def test_crash_during_a_random_workload(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    h = Harness(tmp_path, monkeypatch, segment_size=rng.choice([120, 250, 1000]))
    term = 1
    for _ in range(30):
        s, op = h.s, rng.random()
        last = s.last_index()
        if op < 0.45:
            start = rng.randint(max(s.first_index(), last - 2), last + 1)
            term += rng.random() < 0.3
            h.append(entries(start, start + rng.randint(0, 3), term, size=rng.randint(0, 40)))
        elif op < 0.6:
            h.hard_state(HardState(term, rng.randint(0, 3), rng.randint(0, last)))
        elif op < 0.85:
            h.sync()
        elif op < 0.93 and last > s.snapshot_meta().index:
            h.compact(rng.randint(s.snapshot_meta().index + 1, last), b"s%d" % rng.random())
        else:
            index = s.snapshot_meta().index + rng.randint(1, 4)
            t = s.term(index) if index <= last and rng.random() < 0.5 else term + 1
            term = max(term, t)
            h.install(index, t, b"i" * rng.randint(0, 20), chunked=rng.random() < 0.5)
    h.sync()
    h.verify()
