"""Seeded random schedules (reorder, duplicate, drop, crash, restart) checked for Raft's
safety properties after every step. A small sibling of the simulator in chaos/sim that
lives with the core and runs in seconds."""

from __future__ import annotations

import random

import attrs
import pytest
from raft_harness import Cluster

from raftkv.raft import NotLeader, RaftConfig, Role

CONFIGS = [
    RaftConfig(election_ticks=10, heartbeat_ticks=2, max_inflight=4),
    RaftConfig(election_ticks=10, heartbeat_ticks=3, pre_vote=False, max_batch_bytes=1),
    RaftConfig(election_ticks=10, heartbeat_ticks=2, check_quorum=False, max_inflight=1),
]


class Checker:
    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.leader_of: dict[int, int] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.read_floor: dict[bytes, int] = {}

    def check(self) -> None:
        c = self.c
        for i, node in c.nodes.items():
            if i in c.down:
                continue
            if node.role is Role.LEADER:  # election safety
                assert self.leader_of.setdefault(node.term, i) == i, f"two leaders in {node.term}"
        for i in c.ids:  # state machine safety: one entry per index, ever, on every node
            for e in c.applied[i]:
                seen = self.committed.setdefault(e.index, (e.term, e.data))
                assert seen == (e.term, e.data), f"node {i} applied a different entry {e.index}"
        top = max(self.leader_of, default=0)
        newest = [
            n
            for i, n in c.nodes.items()
            if i not in c.down and n.role is Role.LEADER and n.term == top
        ]
        for lead in newest:  # leader completeness, for the leader of the highest term so far
            compacted = lead.log_term(0) is None  # index 0 is gone once a snapshot is taken
            for index, (term, _) in self.committed.items():
                if compacted and lead.log_term(index) is None and index < lead.commit_index:
                    continue  # in the leader's snapshot (its entries were checked as applied)
                assert lead.log_term(index) == term, f"leader lacks committed {index}"
        for i in c.ids:  # ReadIndex: a read covers everything committed when it was asked
            for rs in c.read_states[i]:
                assert rs.index >= self.read_floor[rs.ctx], f"stale read index for {rs.ctx!r}"

    def frontier(self) -> int:
        return max(
            (n.commit_index for i, n in self.c.nodes.items() if i not in self.c.down), default=0
        )


def _run(
    seed: int, config: RaftConfig, steps: int = 1500, compact: float = 0.0
) -> tuple[int, int]:
    rng = random.Random(seed)
    c = Cluster(rng.choice((3, 5)), config=config, seed=seed)
    chk = Checker(c)
    proposals = reads = 0
    for _ in range(steps):
        c.flush()
        if compact and rng.random() < compact:  # a node snapshots what it applied
            i = rng.choice(c.ids)
            if i not in c.down and c.state(i):
                c.compact(i, rng.choice(c.state(i)).index)
        r = rng.random()
        if r < 0.45 and c.queue:
            m = c.queue.pop(rng.randrange(min(len(c.queue), 4)))  # mild reordering
            if rng.random() < 0.05:
                c.queue.append(m)  # duplicate
            if rng.random() > 0.05:  # else lost
                c.deliver(m)
        elif r < 0.75:
            for i in c.ids:
                if i not in c.down:
                    c.nodes[i].tick()
        elif r < 0.88:
            i = rng.choice(c.ids)
            if i not in c.down:
                try:
                    c.nodes[i].propose(b"%d.%d" % (seed, proposals))
                    proposals += 1
                except NotLeader:
                    pass
        elif r < 0.94:
            i = rng.choice(c.ids)
            if i not in c.down:
                ctx = b"r%d" % reads
                try:
                    c.nodes[i].read_index(ctx)
                    chk.read_floor[ctx] = chk.frontier()
                    reads += 1
                except NotLeader:
                    pass
        elif r < 0.96:
            if c.cut:
                c.cut.clear()
            else:
                c.isolate(rng.choice(c.ids))  # often the leader's turn to be cut off
        elif r < 0.98 and len(c.down) < (len(c.ids) - 1) // 2:
            c.crash(rng.choice([i for i in c.ids if i not in c.down]))
        elif c.down:
            c.start(rng.choice(sorted(c.down)))
        c.flush()
        chk.check()
    # Heal: everything up, no loss, until one leader has committed a fresh entry everywhere.
    for i in sorted(c.down):
        c.start(i)
    c.heal()
    for _ in range(60):
        c.tick(1)
        if c.leaders():
            break
    lead = c.leader()
    index, _ = lead.propose(b"final")
    # Without PreVote, a healed node whose log cannot win may still depose this leader once
    # (its lease covers only the first election timeout of each CheckQuorum window), and the
    # others elect again: allow for one more election before the commit reaches everyone.
    for _ in range(3 * config.election_ticks):
        c.tick(1)
        if all(n.commit_index >= index for n in c.nodes.values()):
            break
    chk.check()
    assert all(n.commit_index >= index for n in c.nodes.values())
    if compact:  # logs start at different snapshots: they agree wherever they overlap
        logs = [dict(c.log(i)) for i in c.ids]
        for log in logs[1:]:
            assert all(logs[0][k] == log[k] for k in logs[0].keys() & log.keys())
        assert len({n.last_index for n in c.nodes.values()}) == 1
        assert len({tuple(c.state(i)) for i in c.ids}) == 1
    else:
        assert len({tuple(c.log(i)) for i in c.ids}) == 1
    return len(chk.committed), sum(len(v) for v in c.read_states.values())


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "one-entry-batches", "no-cq"])
def test_random_schedules_keep_raft_safe(config: RaftConfig) -> None:
    committed = served = 0
    for seed in range(6):
        n, r = _run(seed, config)
        committed += n
        served += r
    # The schedules did real work (a sanity floor, not a speed test: with 5% loss and
    # random reordering the count moves by a third between equally correct versions).
    assert committed > 60 and served > 5


@pytest.mark.parametrize("config", CONFIGS[:2], ids=["default", "one-entry-batches"])
def test_random_schedules_with_snapshots_keep_raft_safe(config: RaftConfig) -> None:
    config = attrs.evolve(
        config, snapshot_chunk_bytes=16, snapshot_window=2, snapshot_retry_ticks=4
    )
    committed = 0
    for seed in range(6):
        n, _ = _run(100 + seed, config, compact=0.03)
        committed += n
    assert committed > 100


def test_the_checks_have_teeth() -> None:
    """A core that grants votes without the log check is caught within a few seeds."""
    broken = attrs.evolve(CONFIGS[0], bugs=frozenset({"vote_without_log_check"}))
    for seed in range(10):
        try:
            _run(seed, broken)
        except AssertionError as exc:
            assert "leader lacks committed" in str(exc) or "applied a different" in str(exc)
            return
    pytest.fail("vote_without_log_check went unnoticed for 10 seeds")
