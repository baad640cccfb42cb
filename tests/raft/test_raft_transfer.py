"""Leadership transfer (TimeoutNow)."""

from __future__ import annotations

import pytest
from raft_harness import FAST, Cluster

from raftkv.raft import NotLeader, Role
from wire.raft import RequestVote, TimeoutNow


def _with_lagging_3() -> Cluster:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(3)
    for n in range(5):
        leader.propose(b"%d" % n)
    c.run()
    c.heal()
    assert c.nodes[3].last_index < leader.last_index
    return c


def test_transfer_to_a_lagging_follower() -> None:
    c = _with_lagging_3()
    leader = c.nodes[1]
    term = leader.term
    before = c.log(1)
    leader.transfer_leadership(3)
    with pytest.raises(NotLeader, match="transfer"):
        leader.propose(b"refused")
    out = c.take()
    assert not any(isinstance(m, TimeoutNow) for m in out)  # first it catches node 3 up
    for m in out:
        c.deliver(m)
    c.run()
    assert c.leaders() == [3]
    assert c.nodes[3].term == term + 1
    assert c.log(3)[: len(before)] == before  # it took over with every entry
    # TimeoutNow went out only once node 3 matched; its vote requests bypassed the lease.
    (tn,) = [m for m in c.sent if isinstance(m, TimeoutNow)]
    assert tn.dst == 3
    votes = [m for m in c.sent if isinstance(m, RequestVote) and m.src == 3]
    assert votes and all(m.transfer and not m.pre_vote for m in votes)
    c.nodes[3].propose(b"after")
    c.run()
    assert c.applied[1][-1].data == b"after"


def test_transfer_to_an_up_to_date_follower_sends_timeout_now_at_once() -> None:
    c = Cluster(3)
    c.elect(1)
    c.nodes[1].transfer_leadership(2)
    (tn,) = c.take(lambda m: isinstance(m, TimeoutNow))
    assert tn.dst == 2
    c.deliver(tn)
    c.run()
    assert c.leaders() == [2]


def test_transfer_aborts_after_an_election_timeout() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(3)
    leader.transfer_leadership(3)
    with pytest.raises(NotLeader):
        leader.propose(b"x")
    c.tick(FAST.election_ticks - 1, nodes=[1, 2])
    assert leader.transferee == 3
    c.tick(1, nodes=[1, 2])
    assert leader.transferee == 0 and leader.role is Role.LEADER
    index, _ = leader.propose(b"x")  # proposals are accepted again
    c.run()
    assert leader.commit_index == index


def test_transfer_rules() -> None:
    c = Cluster(3, learners=[3])
    c.elect(1)
    with pytest.raises(NotLeader):
        c.nodes[2].transfer_leadership(1)
    with pytest.raises(ValueError, match="not a voter"):
        c.nodes[1].transfer_leadership(3)
    c.isolate(2)
    c.nodes[1].transfer_leadership(2)
    c.nodes[1].transfer_leadership(1)  # to itself: cancels
    assert c.nodes[1].transferee == 0
    c.nodes[1].propose(b"ok")


def test_timeout_now_is_ignored_by_a_non_voter_and_from_a_stale_term() -> None:
    c = Cluster(3, learners=[3])
    c.elect(1)
    term = c.nodes[1].term
    c.nodes[3].step(TimeoutNow(term, 1, 3))
    assert c.nodes[3].role is Role.FOLLOWER and c.nodes[3].term == term
    c.nodes[2].step(TimeoutNow(term - 1, 1, 2))
    assert c.nodes[2].role is Role.FOLLOWER and c.nodes[2].term == term


def test_timeout_now_only_from_the_current_leader() -> None:
    """A TimeoutNow from anyone but our leader (a buggy or hostile peer) starts nothing: the
    votes it would trigger bypass the other voters' leader lease."""
    c = Cluster(3)
    c.elect(1)
    term = c.nodes[1].term
    c.nodes[2].step(TimeoutNow(term, 3, 2))
    assert c.nodes[2].role is Role.FOLLOWER and c.nodes[2].term == term
    c.nodes[2].step(TimeoutNow(term, 1, 2))  # from the leader: campaigns at once
    assert c.nodes[2].role is Role.CANDIDATE and c.nodes[2].term == term + 1
