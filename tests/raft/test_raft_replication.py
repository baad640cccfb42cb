"""Log replication: consistency check, conflicts, commit rules, flow control, batching."""

from __future__ import annotations

import random

import attrs
import pytest
from raft_harness import Cluster, entries

from raftkv.raft import NotLeader, ProgressState, RaftConfig, RaftCore, Role, entry_size
from wire.raft import (
    NOOP,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
)

PLAIN = RaftConfig(election_ticks=10, heartbeat_ticks=2, pre_vote=False, check_quorum=False)


def test_proposals_replicate_commit_and_apply_in_order_everywhere() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    proposed = [leader.propose(f"v{n}".encode()) for n in range(10)]
    c.run()
    for i in c.ids:
        assert [(e.index, e.term) for e in c.applied[i]] == [(1, 1), *proposed]
        assert [e.data for e in c.applied[i][1:]] == [f"v{n}".encode() for n in range(10)]
        assert c.nodes[i].commit_index == 11
    assert c.applied[1][0].kind == NOOP


def test_followers_refuse_proposals() -> None:
    c = Cluster(3)
    c.elect(1)
    with pytest.raises(NotLeader) as err:
        c.nodes[2].propose(b"x")
    assert err.value.leader_id == 1


def test_leader_counts_itself_only_once_its_entries_are_persisted() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    index, _ = leader.propose(b"x")
    rd = leader.ready()  # not yet persisted, not advanced
    assert rd.entries[-1].index == index
    for m in rd.messages:  # both followers would ack, but drop one of them
        if m.dst == 2:
            c.nodes[2].step(m)
    c.flush_node = None
    resp = [m for m in c.nodes[2].ready().messages if isinstance(m, AppendEntriesResponse)]
    leader.step(resp[0])
    # Follower 2 holds it; the leader's own copy is not durable yet: no majority.
    assert leader.commit_index < index
    c.storages[1].append(rd.entries)
    c.storages[1].sync()
    leader.advance(rd)
    assert leader.commit_index == index


def test_previous_term_entry_is_not_committed_by_counting_replicas() -> None:
    # Dissertation Figure 8 (c): S1, leader of term 4, gets its term-2 entry 2 onto a majority
    # (S1, S2, S3). It must not count that as committed: S5 (last entry 2 of term 3) can still
    # be elected by S2, S3, S4 and overwrite index 2.
    c = _figure_8(PLAIN)
    s1 = c.nodes[1]
    assert s1.role is Role.LEADER and s1.term == 4
    assert [c.log(i)[1] for i in (1, 2, 3)] == [(2, 2)] * 3
    assert s1.progress(2).match == 2 and s1.progress(3).match == 2
    assert s1.commit_index == 1
    assert all(e.index < 2 for i in c.ids for e in c.applied[i])
    # S5 wins and replaces index 2 on the majority: committing it would have lost it.
    c.heal()
    c.isolate(1)
    for _ in range(3):
        if c.nodes[5].role is not Role.LEADER:
            c.nodes[5].campaign()
            c.run()
    assert c.nodes[5].role is Role.LEADER
    assert [c.log(i)[1] for i in (2, 3, 4)] == [(2, 3)] * 3


def _figure_8(config: RaftConfig) -> Cluster:
    config = attrs.evolve(config, max_batch_bytes=1)  # one entry per AppendEntries
    logs = {
        1: entries(1, 2),
        2: entries(1, 2),
        3: entries(1),
        4: entries(1),
        5: entries(1, 3),
    }
    hs = {i: HardState(term=3, commit=1) for i in range(1, 6)}
    c = Cluster(5, config=config, logs=logs, hard_states=hs)
    c.configs = {i: config for i in c.ids}
    c.nodes[1].campaign()
    # S1 is elected by S3 and S4; S5 hears nothing from it; no entry of term 4 gets out.
    c.cut.add(frozenset((1, 5)))
    c.drop = lambda m: isinstance(m, AppendEntries) and any(e.term == 4 for e in m.entries)
    c.run()
    c.tick(3, nodes=[1])
    return c


def test_bug_commit_previous_term_commits_by_counting() -> None:
    config = RaftConfig(
        election_ticks=10,
        heartbeat_ticks=2,
        pre_vote=False,
        check_quorum=False,
        bugs=frozenset({"commit_previous_term"}),
    )
    c = _figure_8(config)
    assert c.nodes[1].commit_index == 2  # the rule is really broken...
    assert any(e.index == 2 and e.term == 2 for e in c.applied[1])
    c.heal()
    c.isolate(1)
    for _ in range(3):
        if c.nodes[5].role is not Role.LEADER:
            c.nodes[5].campaign()
            c.run()
    c.nodes[5].propose(b"x")
    c.run()
    # ...and a committed, applied entry is lost: S2 applies a different entry at index 2.
    assert [(e.index, e.term) for e in c.applied[2]][:2] == [(1, 1), (2, 3)]


def _follower(log_terms: tuple[int, ...], commit: int = 0, term: int = 9, config=PLAIN):
    c = Cluster(3, config=config)
    st = c.storages[2]
    st.append(entries(*log_terms))
    st.set_hard_state(HardState(term=term, commit=commit))
    node = RaftCore(2, st, config, random.Random(0))
    node.step(AppendEntries(term, 1, 2, 0, 0, (), 0, 0))  # meet the leader
    node.ready()
    return node


def _append(node: RaftCore, prev: int, prev_term: int, terms=(), commit: int = 0, term: int = 9):
    ents = tuple(entries(*terms, start=prev + 1))
    node.step(AppendEntries(term, 1, node.id, prev, prev_term, ents, commit, 0))
    (resp,) = node.ready().messages
    return resp


def test_consistency_check_rejects_with_hints() -> None:
    node = _follower((1, 1, 2, 2, 2))
    # Log too short: hint is our last index + 1, no term.
    r = _append(node, 8, 5, (5,))
    assert (r.success, r.match_index, r.conflict_index, r.conflict_term) == (False, 8, 6, 0)
    # Term mismatch at 4: hint is our term there and the first index we hold of it.
    r = _append(node, 4, 3, (3,))
    assert (r.success, r.match_index, r.conflict_index, r.conflict_term) == (False, 4, 3, 2)
    assert node.last_index == 5


def test_follower_truncates_only_from_the_first_conflict() -> None:
    node = _follower((1, 1, 2, 2, 2))
    r = _append(node, 2, 1, (2, 3, 3))  # index 3 matches, 4 conflicts
    assert r.success and r.match_index == 5
    assert [node.log_term(i) for i in range(1, 6)] == [1, 1, 2, 3, 3]


def test_stale_and_duplicate_append_entries_are_harmless() -> None:
    node = _follower((1,))
    assert _append(node, 1, 1, (9, 9), commit=1).success
    assert _append(node, 3, 9, (9, 9, 9), commit=3).success
    assert node.last_index == 6
    # A delayed copy of the first message: all its entries match, nothing is truncated.
    r = _append(node, 1, 1, (9, 9), commit=1)
    assert r.success and r.match_index == 3
    assert node.last_index == 6 and node.commit_index == 3
    # A reordered later message arriving first is rejected, then harmless when it repeats.
    assert not _append(node, 8, 9, (9,)).success
    assert _append(node, 6, 9, (9, 9)).success
    assert _append(node, 6, 9, (9,)).success
    assert node.last_index == 8 and [node.log_term(i) for i in range(1, 9)] == [1] + [9] * 7
    # Entries below the commit index are skipped, never compared or rewritten.
    r = _append(node, 0, 0, (1, 9, 9, 9, 9), commit=3)
    assert r.success and node.last_index == 8


def test_leader_ignores_stale_replies_and_never_moves_progress_back() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    for n in range(5):
        leader.propose(b"%d" % n)
    c.run()
    pr = leader.progress(2)
    assert pr.state is ProgressState.REPLICATE and pr.match == 6 and pr.next == 7
    term = leader.term
    # An old success reply, a duplicate, and an old rejection arrive late.
    leader.step(AppendEntriesResponse(term, 2, 1, True, 3))
    leader.step(AppendEntriesResponse(term, 2, 1, True, 6))
    leader.step(AppendEntriesResponse(term, 2, 1, False, 2, 1, 1))
    assert (pr.state, pr.match, pr.next) == (ProgressState.REPLICATE, 6, 7)
    assert leader.commit_index == 6


def test_conflicting_follower_converges_in_few_round_trips() -> None:
    # Figure 7 style: the leader's log and a follower with a long divergent suffix.
    leader_log = entries(1, 1, 1, 4, 4, 5, 5, 6, 6, 6)
    follower_log = entries(1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3)
    c = Cluster(
        3,
        config=PLAIN,
        logs={1: leader_log, 2: follower_log, 3: leader_log},
        hard_states={i: HardState(term=6) for i in (1, 2, 3)},
    )
    c.drop = lambda m: m.dst == 2 or m.src == 2
    c.elect(1)
    c.heal()
    c.tick(2, nodes=[1])
    c.run()
    assert c.log(2) == c.log(1)
    rejections = [
        m for m in c.sent if isinstance(m, AppendEntriesResponse) and m.src == 2 and not m.success
    ]
    assert 1 <= len(rejections) <= 3  # one per diverging term, not one per entry


def test_pipelining_keeps_several_appends_in_flight() -> None:
    c = Cluster(3, config=RaftConfig(election_ticks=10, heartbeat_ticks=2, max_inflight=3))
    leader = c.elect(1)
    for n in range(5):
        leader.propose(b"%d" % n)
        c.flush()  # one AppendEntries per follower per ready(), none delivered yet
    in_flight = c.appends_to(2, c.queue)
    assert len(in_flight) == 3  # the window: max_inflight unacknowledged messages
    assert [m.entries[0].index for m in in_flight] == [2, 3, 4]
    pr = leader.progress(2)
    assert pr.paused() and pr.next == 5
    c.run()  # acks reopen the window; everything is replicated
    assert c.nodes[2].last_index == 6 and leader.commit_index == 6
    assert leader.progress(2).match == 6


def test_proposals_between_readies_are_batched() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    for n in range(20):
        leader.propose(b"%d" % n)
    (m,) = c.appends_to(2, c.take())
    assert len(m.entries) == 20


def test_batches_respect_the_byte_budget() -> None:
    budget = 1000
    c = Cluster(3, config=RaftConfig(election_ticks=10, heartbeat_ticks=2, max_batch_bytes=budget))
    leader = c.elect(1)
    c.isolate(2)
    for _ in range(50):
        leader.propose(b"x" * 100)
    c.run()
    c.heal()
    c.tick(2, nodes=[1])
    c.run()
    assert c.nodes[2].last_index == 51
    batches = [m.entries for m in c.appends_to(2, c.sent) if m.entries]
    assert len(batches) >= 6
    for ents in batches:
        assert len(ents) == 1 or sum(entry_size(e) for e in ents) <= budget
    assert max(len(e) for e in batches) == budget // entry_size(Entry(1, 1, 0, b"x" * 100))


def test_lost_append_in_replicate_state_is_recovered_by_heartbeat() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"a")
    lost = c.appends_to(2, c.take(lambda m: m.dst == 2))
    assert lost  # the AppendEntries carrying "a" to node 2 is lost
    c.run()
    leader.propose(b"b")
    c.run()
    c.tick(4)
    assert c.log(2) == c.log(1) and c.nodes[2].commit_index == 3


def test_restarted_follower_catches_up() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.crash(3)
    for n in range(5):
        leader.propose(b"%d" % n)
    c.run()
    c.start(3)
    c.tick(3)
    assert c.log(3) == c.log(1)
    assert [e.index for e in c.applied[3]] == [1, 1, 2, 3, 4, 5, 6]  # re-applied after restart


def test_unsynced_tail_lost_in_a_crash_is_refetched() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"x")
    c.flush()
    (m,) = c.appends_to(3, c.take(lambda m: m.dst == 3))
    c.nodes[3].step(m)
    rd = c.nodes[3].ready()  # appended in memory, never synced: the ack is never sent
    c.storages[3].append(rd.entries)
    c.crash(3)
    c.start(3)
    assert c.nodes[3].last_index == 1
    c.run()
    c.tick(3)
    assert c.log(3) == c.log(1)


def test_follower_commit_never_exceeds_what_it_verified() -> None:
    node = _follower((1, 1, 1, 1))  # an old suffix that may not match the leader
    r = _append(node, 1, 1, (), commit=4)  # a heartbeat claims commit 4, verified only 1
    assert r.success and node.commit_index == 1
