"""The runtime's two hints about the leader (RaftCore.leader_activity, leader_unreachable):
they move a follower's election timer and leader hint, never a term, a vote or the log."""

from __future__ import annotations

from raft_harness import FAST, Cluster

from raftkv.raft import RaftConfig, Role
from wire.raft import HardState


def _healthy() -> Cluster:
    c = Cluster(3, config=FAST)
    c.elect(1)
    c.tick(3)
    return c


def _hard(c: Cluster, i: int) -> HardState:
    n = c.nodes[i]
    return HardState(n.term, n.vote, n.commit_index)


# -- leader_activity (issue 12: a large frame from the leader still arriving) ----------------


def test_activity_from_the_leader_holds_off_an_election() -> None:
    c = _healthy()
    c.isolate(1)  # no message gets through; only the runtime's activity hint
    before = _hard(c, 2)
    for _ in range(3 * FAST.election_ticks):
        c.nodes[2].leader_activity(1)
        c.tick(1, nodes=[2])
    assert c.nodes[2].role is Role.FOLLOWER and c.nodes[2].leader_id == 1
    assert _hard(c, 2) == before  # no term, vote or commit change
    # The contrast: without the hint the same follower campaigns within 2 timeouts.
    c.tick(2 * FAST.election_ticks, nodes=[2])
    assert c.nodes[2].role is not Role.FOLLOWER


def test_activity_from_anyone_but_the_leader_is_ignored() -> None:
    c = _healthy()
    c.isolate(1)
    for _ in range(2 * FAST.election_ticks):
        c.nodes[2].leader_activity(3)  # a follower, not our leader
        c.nodes[2].leader_activity(0)
        c.nodes[2].leader_activity(99)
        c.tick(1, nodes=[2])
    assert c.nodes[2].role is not Role.FOLLOWER


def test_activity_changes_nothing_for_a_candidate_or_a_leader() -> None:
    c = _healthy()
    leader = c.nodes[1]
    elapsed = leader.election_elapsed
    leader.leader_activity(1)
    assert leader.election_elapsed == elapsed and leader.role is Role.LEADER
    c.isolate(2)
    c.tick(2 * FAST.election_ticks, nodes=[2])
    assert c.nodes[2].role is Role.PRE_CANDIDATE  # it forgot leader 1 when it campaigned
    c.nodes[2].leader_activity(1)
    assert c.nodes[2].role is Role.PRE_CANDIDATE and c.nodes[2].leader_id == 0


# -- leader_unreachable (its process is gone: kill -9, crash on a host that stays up) ----------


def test_an_unreachable_leader_is_replaced_at_the_next_tick() -> None:
    c = _healthy()
    term = c.nodes[1].term
    c.crash(1)
    for i in (2, 3):
        c.nodes[i].leader_unreachable(1)
        assert c.nodes[i].leader_id == 0 and c.nodes[i].term == term  # nothing else yet
    c.tick(1, nodes=[2, 3])
    # The lowest id campaigns first, one tick later; the next stands by one heartbeat longer
    # (so they do not split the vote), and grants it.
    assert c.leaders() == [2] and c.nodes[2].term == term + 1
    assert c.nodes[3].leader_id == 2


def test_without_the_hint_the_same_crash_waits_for_the_election_timeout() -> None:
    c = _healthy()
    c.crash(1)
    c.tick(2 * FAST.heartbeat_ticks + 1, nodes=[2, 3])
    assert c.leaders() == []  # FAST's election timeout is 10-19 ticks from the last heartbeat


def test_one_survivor_told_is_enough_its_pre_vote_is_granted() -> None:
    # Node 3 has not noticed yet and still holds the lease when node 2's pre-vote comes, so
    # it ignores it; node 2 is then no leader's follower and grants node 3's later pre-vote,
    # or wins once node 3 also times out. Either way a leader comes, as without the hint.
    c = _healthy()
    c.crash(1)
    c.nodes[2].leader_unreachable(1)
    c.tick(1, nodes=[2, 3])
    assert c.nodes[2].role is Role.PRE_CANDIDATE and c.leaders() == []  # node 3's lease
    c.tick(3 * FAST.election_ticks, nodes=[2, 3])
    (lead,) = c.leaders()
    assert lead in (2, 3)


class _Slowest:
    """An rng whose every election timeout is the longest one."""

    def randrange(self, lo: int, hi: int) -> int:
        return hi - 1


def test_a_pre_candidate_told_asks_again_each_heartbeat() -> None:
    # Node 3 has not seen node 1 go (its sighting came late) and ignores node 2's pre-vote
    # while its lease lasts. Node 2 asks again each heartbeat interval, not after a random
    # full timeout, so it leads about when node 3's lease ends (node 3 campaigns later).
    c = _healthy()
    for i in (2, 3):
        c.nodes[i]._rng = _Slowest()
        c.nodes[i]._randomized_timeout = 2 * FAST.election_ticks - 1
    c.crash(1)
    c.nodes[2].leader_unreachable(1)
    c.tick(1, nodes=[2, 3])
    assert c.nodes[2].role is Role.PRE_CANDIDATE and c.leaders() == []
    c.tick(FAST.election_ticks + FAST.heartbeat_ticks, nodes=[2, 3])
    assert c.leaders() == [2]


def test_a_false_alarm_with_a_live_leader_changes_no_term() -> None:
    # The hint is wrong (node 1 is alive): node 2 campaigns, but node 3 still hears the
    # leader (the lease) and the leader is inside its own, so the pre-vote fails and node 2
    # follows the leader again at its next heartbeat.
    c = _healthy()
    term = c.nodes[1].term
    c.nodes[2].leader_unreachable(1)
    c.tick(2 * FAST.heartbeat_ticks + 1)
    assert c.leaders() == [1] and all(n.term == term for n in c.nodes.values())
    assert c.nodes[2].role is Role.FOLLOWER and c.nodes[2].leader_id == 1


def test_survivors_that_campaign_together_retry_in_id_order() -> None:
    # Sightings of the refused port differ by up to a dial retry: node 3 (the higher id,
    # a heartbeat later) saw it first, node 2 a heartbeat after it, so both campaign in the
    # same tick, each grants the other's pre-vote and the vote splits (bench, 07:50 UTC:
    # a 250 ms failover). The rivals back off in id order, not for a random full timeout.
    c = _healthy()
    term = c.nodes[1].term
    c.crash(1)
    c.nodes[3].leader_unreachable(1)
    c.tick(FAST.heartbeat_ticks, nodes=[2, 3])
    c.nodes[2].leader_unreachable(1)
    c.tick(1, nodes=[2, 3])
    assert {c.nodes[2].role, c.nodes[3].role} == {Role.CANDIDATE}  # split at term + 1
    assert c.nodes[2].term == c.nodes[3].term == term + 1
    c.tick(2, nodes=[2, 3])
    assert c.leaders() == [2] and c.nodes[3].leader_id == 2
    # Node 3 follows with a full election timeout again (it heard the leader).
    assert c.nodes[3]._randomized_timeout >= FAST.election_ticks


def test_rivals_without_a_gone_leader_still_back_off_at_random() -> None:
    # The same split without the runtime's hint (a partition healed): no id order.
    c = _healthy()
    c.crash(1)
    for i in (2, 3):
        c.nodes[i]._randomized_timeout = c.nodes[i].election_elapsed + 1
    c.tick(1, nodes=[2, 3])
    assert {c.nodes[2].role, c.nodes[3].role} == {Role.CANDIDATE}
    assert all(c.nodes[i]._randomized_timeout >= FAST.election_ticks for i in (2, 3))


def test_unreachable_about_another_node_is_ignored() -> None:
    c = _healthy()
    before = (c.nodes[2].leader_id, c.nodes[2]._randomized_timeout)
    c.nodes[2].leader_unreachable(3)
    c.nodes[2].leader_unreachable(0)
    assert (c.nodes[2].leader_id, c.nodes[2]._randomized_timeout) == before
    c.nodes[1].leader_unreachable(1)  # a leader told about itself: nothing
    assert c.nodes[1].role is Role.LEADER


def test_reads_forwarded_to_an_unreachable_leader_fail_at_once() -> None:
    c = _healthy()
    c.crash(1)
    c.nodes[2].read_index(b"r1")
    c.nodes[2].leader_unreachable(1)
    c.flush()
    assert c.failed_reads[2] == [b"r1"]


def test_after_a_false_alarm_the_full_election_timeout_is_back() -> None:
    c = _healthy()
    c.nodes[3].leader_unreachable(1)  # node 3 would campaign a heartbeat after node 2
    assert c.nodes[3]._randomized_timeout < FAST.election_ticks
    c.tick(FAST.heartbeat_ticks, nodes=[1])  # the live leader's heartbeat reaches it first
    assert c.nodes[3].leader_id == 1
    # Or it would campaign a few ticks after every heartbeat from now on.
    assert c.nodes[3]._randomized_timeout >= FAST.election_ticks


# -- heartbeat_late (harden10: a leader starved of CPU ticked at a third of its followers'
# rate, so its heartbeats came later than their election timeout) ---------------------------


def _sent_by_leader_on_tick(c: Cluster, late: int = 0) -> int:
    """Messages leader 1 sends on its next tick, after ``late`` intervals it missed."""
    before = len(c.sent)
    if late:
        c.nodes[1].heartbeat_late(late)
    c.tick(1, nodes=[1])
    return sum(1 for m in c.sent[before:] if m.src == 1)


def test_a_late_tick_still_sends_the_leaders_heartbeat_on_time() -> None:
    config = RaftConfig(election_ticks=15, heartbeat_ticks=5)
    c = Cluster(3, config=config)
    c.elect(1)
    while not _sent_by_leader_on_tick(c):  # up to the tick that sends a heartbeat
        pass
    assert _sent_by_leader_on_tick(c) == 0  # one tick later: not due
    # The runtime's tick came 4 intervals late: a heartbeat interval has passed.
    elapsed = c.nodes[1].election_elapsed
    assert _sent_by_leader_on_tick(c, late=4) == 2  # one heartbeat to each follower
    assert c.nodes[1].election_elapsed == elapsed + 1  # its check-quorum clock: 1 tick
    assert _sent_by_leader_on_tick(c) == 0  # and the interval starts again from there
    assert _sent_by_leader_on_tick(c, late=1) == 0  # late, but not an interval yet


def test_late_ticks_change_nothing_on_a_follower() -> None:
    c = _healthy()
    follower = c.nodes[2]
    elapsed, hard = follower.election_elapsed, _hard(c, 2)
    follower.heartbeat_late(1000)
    assert follower.election_elapsed == elapsed and _hard(c, 2) == hard
    assert follower.role is Role.FOLLOWER
