"""A leader defers its own automatic snapshots (node/snapshots.py ``leader_defers``).

Its loop serves every client and sends every heartbeat; a snapshot costs that loop CPU and
the GIL (issue 15's stability row: the leader stalled 123-165 ms at its own snapshot). It
lets its log grow to ``--snapshot-leader-defer`` x ``--snapshot-entries`` entries instead;
followers keep their schedule, and RAFT SNAPSHOT, a step-down, memory pressure or a member
more than a run behind end the wait. Driven here through ``Snapshotter.maybe_start`` with
the node's parts stubbed out: which indexes it starts a snapshot at, one entry at a time.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from raftkv.node.snapshots import Snapshotter, leader_defers, snapshot_due
from wire.raft import SnapshotMeta

EVERY = 100


class _Storage:
    def __init__(self) -> None:
        self.index = 0

    def snapshot_meta(self) -> Any:
        return SnapshotMeta(self.index, 1, None)  # type: ignore[arg-type]


class _KV:
    commands_applied = 0  # (one command an entry: the schedule is the index's)

    def snapshot_state(self) -> str:
        return "state"

    def __len__(self) -> int:
        return 0


class _Applier:
    def __init__(self) -> None:
        self.applied = 0
        self.applied_term = 1
        self.applied_config = None
        self.kv = _KV()


class Harness:
    """A Snapshotter whose snapshots "finish" at once: ``started`` lists their indexes."""

    def __init__(self, leading: bool, defer: int = 4, memory_high: bool = False) -> None:
        self.leading = leading
        self.memory_high = memory_high
        self.match: int | None = None  # the least caught-up member's match (None: in step)
        self.storage = _Storage()
        self.applier = _Applier()
        self.started: list[int] = []
        self.snap = Snapshotter(
            self.storage, trio.Lock(), self.applier, None, EVERY,  # type: ignore[arg-type]
            random.Random(0), self._background, lambda: None, lambda msg: None,
            self._next_tick, node_id=1, leading=lambda: self.leading, leader_defer=defer,
            memory_high=lambda: self.memory_high,
            slowest_match=lambda: self.applier.applied if self.match is None else self.match)
        self.snap.start_serving()

    async def _next_tick(self) -> int:
        return 0

    def _background(self, fn: Any, meta: SnapshotMeta, *args: Any) -> None:
        self.started.append(meta.index)
        self.storage.index = meta.index
        self.snap._running = False  # taken: the next may start

    def apply_to(self, last: int) -> list[int]:
        """Apply one entry at a time up to ``last``; the snapshots started on the way."""
        before = len(self.started)
        while self.applier.applied < last:
            self.applier.applied += 1
            self.applier.kv.commands_applied += 1
            self.snap.maybe_start()
        return self.started[before:]


async def test_a_leader_snapshots_every_4_runs_on_the_followers_points() -> None:
    leader, follower = Harness(leading=True), Harness(leading=False)
    assert follower.apply_to(1_000) == list(range(100, 1_001, 100))  # the schedule
    assert leader.apply_to(1_000) == [400, 800]
    assert leader.snap.deferred == 3  # put off from 100, 500 and 900: once each (INFO)


async def test_a_leaders_log_stays_bounded_from_any_last_snapshot() -> None:
    for start in (0, 1, 37, 99, 101, 250, 399):  # RAFT SNAPSHOT or a role change moved it
        h = Harness(leading=True)
        h.storage.index = h.applier.applied = start
        points = h.apply_to(start + 2_000)
        gaps = [b - a for a, b in zip([start, *points], points, strict=False)]
        assert points and all(p % EVERY == 0 for p in points), (start, points)
        # Back on the points within 3/4 to 7/4 of a run more, then 4 runs apart.
        assert 4 * EVERY - EVERY // 4 <= gaps[0] < 5 * EVERY - EVERY // 4, (start, gaps)
        assert set(gaps[1:]) == {4 * EVERY}, (start, gaps)


async def test_defer_1_is_the_old_schedule() -> None:
    assert Harness(leading=True, defer=1).apply_to(500) == [100, 200, 300, 400, 500]
    assert not any(leader_defers(a, 0, EVERY, 1) for a in range(EVERY, 1_000)
                   if snapshot_due(a, 0, EVERY, 0))


async def test_raft_snapshot_is_immediate_for_a_deferring_leader() -> None:
    h = Harness(leading=True)
    assert h.apply_to(250) == []
    h.snap.request()
    h.snap.maybe_start()
    assert h.started == [250]
    # The next automatic one counts from the manual snapshot.
    assert h.apply_to(800) == [700]


async def test_a_leader_that_steps_down_snapshots_at_once() -> None:
    h = Harness(leading=True)
    assert h.apply_to(350) == []
    h.leading = False
    assert h.apply_to(351) == [351]
    assert h.apply_to(500) == [500]  # then the follower's schedule


async def test_memory_pressure_ends_the_deferral() -> None:
    h = Harness(leading=True)
    assert h.apply_to(150) == []
    h.memory_high = True
    assert h.apply_to(151) == [151]
    assert h.apply_to(400) == [300, 400]  # the followers' schedule while it lasts


async def test_a_member_a_run_behind_ends_the_deferral() -> None:
    """Catching it up from the log cost the leader's loop more than a snapshot: a follower
    restarted 20-30k entries behind a deferring leader cost an election in both loaded
    stability runs where it happened."""
    h = Harness(leading=True)
    assert h.apply_to(140) == []
    h.match = 50  # up to 100 behind: not more than a run
    assert h.apply_to(150) == []
    h.match = 49
    assert h.apply_to(151) == [151]
    h.match = None  # caught up (by that snapshot): deferring again, from 151
    assert h.apply_to(600) == [600]


def test_serve_refuses_a_deferral_past_its_bound() -> None:
    """A mistyped --snapshot-leader-defer (100000) would be a leader whose log grows until
    its disk is full: refused before the node starts."""
    from click.testing import CliRunner

    from raftkv.cli import MAX_LEADER_DEFER, main

    for value in (0, MAX_LEADER_DEFER + 1, 100_000):
        result = CliRunner().invoke(main, ["serve", "--snapshot-leader-defer", str(value)])
        assert result.exit_code == 2, result.output
        assert "--snapshot-leader-defer" in result.output
