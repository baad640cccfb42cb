"""Membership changes in the core: learners first, one voter change at a time, a joining
node that starts with no configuration, removed nodes that cannot disturb the cluster."""

from __future__ import annotations

import pytest
from raft_harness import FAST, Cluster, members

from raftkv.raft import ConfigChangePending, MembershipError, MemoryStorage, Role
from raftkv.raft.membership import check_single_change, with_learner
from raftkv.storage.snapshot_file import decode_meta, encode_meta
from wire.raft import (
    AppendEntries,
    ClusterConfig,
    Member,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
)

SNAP = FAST


def add_node(c: Cluster, i: int) -> None:
    """Start node ``i`` with an empty data directory: no configuration at all (--join)."""
    c.ids.append(i)
    c.configs[i] = c.configs[c.ids[0]]
    for d in (c.applied, c.read_states, c.failed_reads, c.readies, c.sm, c.installed):
        d[i] = []  # type: ignore[index]
    c.storages[i] = MemoryStorage(ClusterConfig())
    c.start(i)


def write(c: Cluster, n: int) -> int:
    leader = c.leader()
    index = 0
    for k in range(n):
        index, _ = leader.propose(b"w%d" % k)
    c.run()
    return index


def test_a_joining_node_learns_its_configuration_from_the_leader() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    last = write(c, 5)
    add_node(c, 4)
    assert c.nodes[4].cluster_config == ClusterConfig()
    c.tick(FAST.election_ticks * 3, nodes=[4])
    assert c.nodes[4].role is Role.FOLLOWER and c.nodes[4].term == 0  # no config: no campaign
    index, _ = leader.add_learner(4, "127.0.0.1:7104", promote=True)
    c.tick(3)
    new = c.nodes[4]
    assert new.cluster_config == leader.cluster_config
    assert new.is_learner and new.commit_index == index > last
    assert [e.data for e in c.applied[4] if e.kind == 0] == [b"w%d" % k for k in range(5)]
    assert leader.learners_to_promote(max_lag=100) == [4]


def test_a_joining_node_catches_up_through_a_snapshot_and_keeps_its_members() -> None:
    c = Cluster(3, config=SNAP)
    leader = c.elect(1)
    write(c, 10)
    c.compact(1)
    add_node(c, 4)
    leader.add_learner(4, "127.0.0.1:7104")
    c.tick(10)
    assert len(c.installed[4]) == 1  # the log it needed was compacted away
    assert c.nodes[4].cluster_config == leader.cluster_config
    assert c.nodes[4].commit_index == leader.commit_index
    c.crash(4)
    c.start(4)  # restarted from its own storage: it still knows who the members are
    assert c.nodes[4].cluster_config == leader.cluster_config
    assert c.nodes[4].is_learner


def test_learners_get_the_log_but_neither_vote_count_nor_campaign() -> None:
    c = Cluster(3, learners=[3])
    leader = c.elect(1)
    assert leader.voters == {1, 2}
    assert not any(isinstance(m, RequestVote) and m.dst == 3 for m in c.sent)
    c.isolate(2)
    x, _ = leader.propose(b"x")
    c.run()
    assert c.nodes[3].last_index == x  # the learner has it...
    assert leader.commit_index < x  # ...but only voters count: 1 of {1, 2} is no quorum
    c.heal()
    c.tick(3)
    assert leader.commit_index == x
    c.isolate(1)
    c.tick(FAST.election_ticks * 4, nodes=[3])
    assert c.nodes[3].role is Role.FOLLOWER  # a learner never campaigns
    c.nodes[3].campaign()
    assert c.nodes[3].role is Role.FOLLOWER


def test_a_learner_still_votes_when_asked() -> None:
    # A candidate may know a newer configuration in which this learner votes (4.1: servers
    # answer RPCs without consulting their configuration).
    c = Cluster(3, learners=[3])
    node = c.nodes[3]
    node.step(RequestVote(5, 2, 3, 0, 0))
    (reply,) = c.take(lambda m: isinstance(m, RequestVoteResponse))
    assert reply.granted and node.vote == 2


def test_one_change_at_a_time_with_a_clear_error() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(2)
    c.isolate(3)
    leader.add_learner(4, "h:4")
    assert leader.config_pending
    with pytest.raises(ConfigChangePending, match="still uncommitted"):
        leader.add_learner(5, "h:5")
    with pytest.raises(ConfigChangePending, match="still uncommitted"):
        leader.remove_member(2)
    c.heal()
    c.tick(3)
    assert not leader.config_pending
    leader.remove_member(2)  # the first one committed: the next may go


def test_a_new_leader_makes_no_change_before_committing_in_its_term() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(1)
    c.hold = lambda m: isinstance(m, AppendEntries)  # the new leader's no-op cannot commit
    for _ in range(FAST.election_ticks * 4):
        c.tick(1, nodes=[2, 3])
        if c.leaders() != [1]:
            break
    leader = c.nodes[next(i for i in c.leaders() if i != 1)]
    with pytest.raises(ConfigChangePending, match="not committed an entry of its term"):
        leader.add_learner(4, "h:4")
    c.release()
    c.hold = lambda m: False
    c.tick(3, nodes=[2, 3])
    leader.add_learner(4, "h:4")  # its no-op committed: now it may


def test_membership_rules() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    with pytest.raises(MembershipError, match="already a member"):
        leader.add_learner(2, "h:9")
    with pytest.raises(MembershipError, match="already node 2's"):
        leader.add_learner(9, "127.0.0.1:7102")
    with pytest.raises(MembershipError, match="not a member"):
        leader.remove_member(9)
    with pytest.raises(MembershipError, match="already a voter"):
        leader.promote_learner(2, max_lag=100)
    with pytest.raises(MembershipError, match="one voter at a time"):
        check_single_change(members([1, 2, 3]), members([1]))
    one = Cluster(1)
    with pytest.raises(MembershipError, match="last voter"):
        one.elect(1).remove_member(1)
    assert with_learner(members([2, 1]), 0 + 3, "h:3", True).members[-1] == Member(
        3, "h:3", True, True
    )


def test_promotion_waits_until_the_learner_caught_up() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    write(c, 20)
    add_node(c, 4)
    c.isolate(4)
    leader.add_learner(4, "h:4", promote=True)
    c.tick(3)
    # Isolated from the start: it never answered, and the refusal says so (attack21).
    with pytest.raises(ConfigChangePending, match="learner 4 is not caught up: it has not "
                       "answered the leader"):
        leader.promote_learner(4, max_lag=5)
    assert leader.learners_to_promote(max_lag=5) == []
    c.heal()
    c.tick(3)
    assert leader.learners_to_promote(max_lag=5) == [4]
    leader.promote_learner(4, max_lag=5)
    c.tick(3)
    assert leader.voters == {1, 2, 3, 4} and c.nodes[4].voters == {1, 2, 3, 4}
    assert not c.nodes[4].is_learner


def test_learners_that_stay_are_not_offered_for_promotion() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    add_node(c, 4)
    leader.add_learner(4, "h:4", promote=False)
    c.tick(3)
    assert leader.progress(4) is not None and leader.progress(4).match == leader.last_index
    assert leader.learners_to_promote(max_lag=100) == []


def test_a_removed_node_that_keeps_ticking_cannot_disturb_the_members() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(3)  # node 3 never hears of its removal
    leader.remove_member(3)
    c.run()
    assert not leader.config_pending
    term = leader.term
    c.heal()
    c.drop = lambda m: m.src == 1 and m.dst == 3  # nor does the leader talk to it any more
    for _ in range(FAST.election_ticks * 6):
        c.tick(1)
    assert c.nodes[3].role is not Role.LEADER
    assert c.nodes[3].voters == {1, 2, 3}  # it still believes it is a voter...
    assert leader.role is Role.LEADER and leader.term == term  # ...but bumps nobody's term
    assert c.nodes[2].term == term


def test_a_node_that_saw_its_removal_stops_campaigning() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.remove_member(3)
    c.run()
    c.isolate(3)
    c.tick(FAST.election_ticks * 4, nodes=[3])
    assert c.nodes[3].role is Role.FOLLOWER
    assert not any(isinstance(m, RequestVote) and m.src == 3 for m in c.sent)


def test_the_leader_removing_itself_steps_down_once_committed() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    index, _ = leader.remove_member(1)
    assert leader.role is Role.LEADER and leader.voters == {2, 3}
    c.run()
    assert leader.role is Role.FOLLOWER
    c.tick(FAST.election_ticks * 3, nodes=[2, 3])
    (new,) = c.leaders()
    assert new in (2, 3) and c.nodes[new].commit_index >= index


def test_votes_are_answered_for_candidates_outside_our_configuration() -> None:
    # Node 2 never saw node 4 added; 4 has the newer log and asks for its vote once the
    # leader is gone (no lease): 2 must grant it (dissertation 4.1 / 4.2.3).
    c = Cluster(3)
    c.elect(1)
    node = c.nodes[2]
    term = node.term
    node.step(RequestVote(node.term + 1, 4, 2, node.last_index + 5, node.term))
    assert node.term == term  # still within the leader lease: ignored (4.2.3)
    c.tick(FAST.election_ticks, nodes=[2])
    c.take()
    node.step(RequestVote(node.term + 1, 4, 2, node.last_index + 5, node.term))
    (reply,) = c.take(lambda m: isinstance(m, RequestVoteResponse) and m.dst == 4)
    assert reply.granted and node.vote == 4


def test_a_joining_node_accepts_appends_before_it_knows_it_is_a_member() -> None:
    c = Cluster(3)
    c.elect(1)
    add_node(c, 4)
    node = c.nodes[4]
    node.step(AppendEntries(1, 1, 4, 0, 0, (), 0, 0))
    assert node.leader_id == 1 and node.term == 1


def test_snapshot_meta_keeps_the_promote_flag_and_reads_old_members() -> None:
    conf = ClusterConfig((Member(1, "a:1"), Member(4, "d:4", True, True)))
    meta = SnapshotMeta(9, 2, conf)
    assert decode_meta(encode_meta(meta)) == meta
    import msgpack

    old = msgpack.packb([9, 2, [[1, "a:1", False], [4, "d:4", True]]])
    assert decode_meta(old).config.members[1] == Member(4, "d:4", True, False)


def test_a_strict_removal_must_leave_a_quorum_the_leader_hears_from() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(3)  # down: last heard at the election, two CheckQuorum periods ago
    c.tick(2 * FAST.check_quorum_ticks)
    assert leader.role is Role.LEADER  # 2 of 3 still a quorum
    last = leader.last_index
    for target in (2, 1):  # a live follower, or the leader itself: {x, 3} needs 3
        with pytest.raises(ConfigChangePending, match="not from 3"):
            leader.remove_member(target, strict=True)
    assert leader.last_index == last and leader.voters == {1, 2, 3}  # nothing proposed
    leader.remove_member(3, strict=True)  # removing the dead one is what removal is for
    c.tick(3)
    assert not leader.config_pending and leader.voters == {1, 2}


def test_a_peer_heard_in_the_previous_period_still_counts() -> None:
    c = Cluster(3)
    leader = c.elect(1)  # both followers heard in this period
    c.isolate(2)
    c.isolate(3)
    c.tick(FAST.check_quorum_ticks, nodes=[1])  # the period ends: every flag was reset
    assert leader.role is Role.LEADER
    c.heal()
    leader.remove_member(3, strict=True)  # 2 was heard lately: {1, 2} is a quorum
    assert leader.config_pending
