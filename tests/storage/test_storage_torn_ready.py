"""A crash that keeps a Ready's entries but not its hard state (the WAL cut between the two
records): DiskStorage recovers that prefix as it is, and the core restarts in the term of
the entry it holds (seed 9100594 of the simulator, reproduced on the real WAL)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from storage_model import entries, entry, reopen

from raftkv.raft import RaftConfig, RaftCore, Ready, persist
from raftkv.storage import records
from wire.raft import HardState


def newest_segment(path: Path) -> Path:
    return max(p for p in path.iterdir() if p.name.startswith("wal-"))


def test_wal_cut_between_entry_and_hard_state_restarts_in_the_entrys_term(tmp_path) -> None:
    data = tmp_path / "node"
    s = reopen(data, fsync="always")
    persist(s, Ready(entries=entries(1, 41, 8), hard_state=HardState(term=8, vote=4, commit=41)))
    s.sync()
    term9 = HardState(term=9, vote=0, commit=41)
    persist(s, Ready(entries=[entry(42, 9)], hard_state=term9))
    s.sync()
    s.close()

    # The crash: only the prefix up to the end of entry 42's record reached the disk.
    seg = newest_segment(data)
    cut = seg.stat().st_size - len(records.hard_state_record(term9))
    os.truncate(seg, cut)

    s = reopen(data, fsync="always")
    hs, _ = s.initial_state()
    assert hs.term == 8 and s.last_index() == 42 and s.term(42) == 9  # the torn prefix
    node = RaftCore(1, s, RaftConfig(), random.Random(0))
    assert node.term == 9 and node.vote == 0
    rd = node.ready()
    persist(s, rd)
    s.sync()
    s.close()
    s = reopen(data, fsync="always")
    assert s.initial_state()[0].term == 9  # the raised term is durable before anything leaves
