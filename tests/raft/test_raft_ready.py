"""The Ready contract's early send: which Readies may send before their writes are durable."""

from __future__ import annotations

from raft_harness import Cluster

from raftkv.raft import RaftConfig
from wire.raft import AppendEntries


def test_a_leaders_new_entries_may_leave_before_its_fsync() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"x")
    rd = c.handle(1)
    assert rd is not None and rd.entries and rd.must_sync
    assert rd.send_before_sync
    assert any(isinstance(m, AppendEntries) and m.entries for m in rd.messages)


def test_a_followers_acknowledgement_waits_for_its_fsync() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"x")
    c.handle(1)
    for m in c.take(lambda m: m.dst == 2):
        c.nodes[2].step(m)
    rd = c.handle(2)
    assert rd is not None and rd.entries and rd.must_sync
    assert not rd.send_before_sync


def test_a_candidates_vote_requests_wait_for_its_durable_vote() -> None:
    c = Cluster(3, config=RaftConfig(election_ticks=10, heartbeat_ticks=2, pre_vote=False))
    c.nodes[1].campaign()
    rd = c.handle(1)
    assert rd is not None and rd.hard_state is not None and rd.must_sync
    assert not rd.send_before_sync
