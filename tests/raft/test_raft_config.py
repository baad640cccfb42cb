"""Configuration from the log: in force when appended, rolled back when truncated, quorum
math always from the configuration in force."""

from __future__ import annotations

import random

import pytest
from raft_harness import FAST, Cluster, entries, members

from raftkv.raft import NotLeader, RaftCore, Role
from raftkv.raft.membership import committed_index, decode_config, encode_config, quorum
from wire.raft import CONFIG, AppendEntries, Entry, HardState


def test_quorum_math() -> None:
    assert [quorum(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    assert committed_index(frozenset({1, 2, 3}), {1: 5, 2: 3, 3: 9}) == 5
    assert committed_index(frozenset({1, 2, 3, 4}), {1: 5, 2: 3, 3: 9, 4: 0}) == 3
    assert committed_index(frozenset({1, 2}), {1: 5, 2: 3, 7: 100}) == 3  # non-voters ignored


def test_config_entry_round_trip() -> None:
    conf = members([1, 2, 5], learners=[5])
    assert decode_config(encode_config(conf)) == conf
    with pytest.raises(ValueError, match="ClusterConfig"):
        decode_config(encode_config(HardState()))  # some other record


def test_growing_the_cluster_raises_the_quorum_at_once() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    bigger = members([1, 2, 3, 4])  # node 4 never starts
    index, _ = leader.propose_config(bigger)
    assert leader.voters == {1, 2, 3, 4}  # in force before it commits
    c.run()
    assert leader.commit_index == index  # 1, 2, 3 of 4 voters
    assert c.nodes[2].cluster_config == bigger
    c.isolate(3)
    x, _ = leader.propose(b"x")
    c.run()
    assert leader.commit_index < x  # 1 and 2 were a quorum of 3, not of 4


def test_shrinking_the_cluster_lowers_the_quorum() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose_config(members([1, 2]))
    c.run()
    c.isolate(2)
    x, _ = leader.propose(b"x")
    c.run()
    assert leader.commit_index < x  # {1, 2}: node 3 no longer counts...
    assert leader.progress(3) is None  # ...nor is it replicated to
    c.heal()
    c.tick(3)
    assert leader.commit_index == x


def test_one_config_change_at_a_time() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(2)
    c.isolate(3)
    leader.propose_config(members([1, 2]))
    with pytest.raises(ValueError, match="uncommitted"):
        leader.propose_config(members([1, 2, 3]))
    with pytest.raises(NotLeader):
        c.nodes[2].propose_config(members([2]))


def test_leader_removing_itself_steps_down_once_committed() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    index, _ = leader.propose_config(members([2, 3]))
    assert leader.role is Role.LEADER  # still leads (without counting itself) until committed
    c.run()
    assert leader.role is Role.FOLLOWER
    assert c.nodes[2].commit_index >= index or c.nodes[3].commit_index >= index
    c.tick(3 * FAST.election_ticks, nodes=[2, 3])
    (new,) = c.leaders()
    assert new in (2, 3)
    c.tick(3 * FAST.election_ticks, nodes=[1])
    assert c.nodes[1].role is Role.FOLLOWER  # not a voter: never campaigns


def test_truncated_config_entry_rolls_back() -> None:
    c = Cluster(3)
    follower = c.nodes[2]
    conf = Entry(1, 2, CONFIG, encode_config(members([1, 2, 3, 4, 5])))
    follower.step(AppendEntries(1, 1, 2, 0, 0, (Entry(1, 1, 1, b""), conf), 0, 0))
    assert follower.voters == {1, 2, 3, 4, 5}
    follower.step(AppendEntries(2, 3, 2, 1, 1, tuple(entries(2, start=2)), 0, 0))
    assert follower.voters == {1, 2, 3}
    assert follower.log_term(2) == 2


def test_restart_with_an_uncommitted_config_entry() -> None:
    c = Cluster(3)
    st = c.storages[2]
    st.append(
        [
            Entry(1, 1, CONFIG, encode_config(members([1, 2]))),
            Entry(1, 2, 0, b""),
            Entry(2, 3, CONFIG, encode_config(members([1, 2, 3, 4]))),
        ]
    )
    st.set_hard_state(HardState(term=2, commit=2))
    node = RaftCore(2, st, FAST, random.Random(0))
    assert node.voters == {1, 2, 3, 4}
    node.step(AppendEntries(3, 1, 2, 2, 1, tuple(entries(3, start=3)), 2, 0))
    assert node.voters == {1, 2}  # back to the committed configuration, not the bootstrap one
