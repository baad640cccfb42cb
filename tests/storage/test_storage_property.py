"""Property: any sequence of appends (with truncations), hard states, syncs, compactions,
snapshot installs and crash-restarts leaves DiskStorage equal to an in-memory model; a
restart recovers exactly what was synced."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from storage_model import CONFIG, Model, reopen, state_of

from wire.raft import Entry, HardState, SnapshotMeta


class StorageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="raftkv-prop-")
        self.segment_size = 200
        self.s = reopen(self.dir, segment_size=self.segment_size)
        self.model = Model()
        self.term = 1

    def teardown(self) -> None:
        self.s.close(sync=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(data=st.data(), n=st.integers(1, 4), bump=st.booleans(), size=st.integers(0, 60))
    def append(self, data, n, bump, size) -> None:
        last = self.s.last_index()
        start = data.draw(st.integers(max(self.s.first_index(), last - 3), last + 1))
        self.term += bump
        batch = [
            Entry(self.term, i, i % 2, bytes([i % 256]) * size) for i in range(start, start + n)
        ]
        self.s.append(batch)
        self.model.append(batch)

    @rule(vote=st.integers(0, 3), commit=st.integers(0, 50))
    def set_hard_state(self, vote, commit) -> None:
        hs = HardState(self.term, vote, commit)
        self.s.set_hard_state(hs)
        self.model.set_hard_state(hs)

    @rule()
    def sync(self) -> None:
        self.s.sync()
        self.model.sync()

    @precondition(lambda self: self.s.last_index() > self.s.snapshot_meta().index)
    @rule(data=st.data(), payload=st.binary(max_size=30))
    def compact(self, data, payload) -> None:
        index = data.draw(st.integers(self.s.first_index(), self.s.last_index()))
        meta = SnapshotMeta(index, self.s.term(index), CONFIG)
        self.s.compact(meta, payload)
        self.model.compact(meta, payload)

    @rule(ahead=st.integers(1, 6), matching=st.booleans(), payload=st.binary(max_size=30))
    def install_snapshot(self, ahead, matching, payload) -> None:
        index = self.s.snapshot_meta().index + ahead
        if matching and index <= self.s.last_index():
            term = self.s.term(index)
        else:
            self.term += 1
            term = self.term
        meta = SnapshotMeta(index, term, CONFIG)
        self.s.install_snapshot(meta, payload)
        self.model.install_snapshot(meta, payload)

    @rule()
    def crash_and_restart(self) -> None:
        self.s.close(sync=False)  # buffered writes die with the process
        self.s = reopen(self.dir, segment_size=self.segment_size)
        self.model = Model(self.model.durable)
        assert state_of(self.s).normalized() == self.model.durable.normalized()

    @invariant()
    def reads_match_the_model(self) -> None:
        live = self.model.live
        assert self.s.snapshot_meta() == live.snap
        assert self.s.last_index() == live.last_index
        got = self.s.entries(self.s.first_index(), self.s.last_index() + 1)
        assert tuple(got) == live.entries
        assert self.s.term(live.snap.index) == live.snap.term


StorageMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_storage_matches_model = StorageMachine.TestCase
