"""RaftCore.take_early: what may leave while a Ready's writes are still being made durable.

The runtime calls it while a Ready is in hand (its fsync in the sync thread), so that a long
write (an 8 MiB entry) silences neither a leader's heartbeats nor a follower's answers to
them (issue 12 item 2). Each test holds a Ready persisted but not synced or advanced, as
the runtime does during the fsync, and checks what take_early hands out meanwhile.
"""

from __future__ import annotations

from raft_harness import Cluster

from raftkv.raft import RaftConfig, persist
from wire.raft import NORMAL, AppendEntries, AppendEntriesResponse, Entry, RequestVote


def follower_with_write_in_flight(c: Cluster):
    """Node 2 got an entry from leader 1 and holds the Ready that writes it (not synced)."""
    leader = c.elect(1)
    leader.propose(b"x")
    c.handle(1)
    f = c.nodes[2]
    for m in c.take(lambda m: m.dst == 2):
        f.step(m)
    rd = f.ready()
    persist(c.storages[2], rd)
    assert rd.entries and rd.must_sync and not rd.send_before_sync
    return leader, f, rd


def test_a_heartbeat_reply_leaves_during_the_fsync_claiming_only_what_is_durable() -> None:
    c = Cluster(3)
    leader, f, rd = follower_with_write_in_flight(c)
    new = rd.entries[-1].index
    f.step(AppendEntries(leader.term, 1, 2, new, leader.term, (), leader.commit_index, 7))
    early = f.take_early()
    assert len(early) == 1
    reply = early[0]
    assert isinstance(reply, AppendEntriesResponse) and reply.success and reply.seq == 7
    assert reply.match_index == new - 1  # the entry being written is not claimed
    # The ack of the entry itself waits for the Ready (after the fsync), as before.
    acks = [m for m in rd.messages if isinstance(m, AppendEntriesResponse)]
    assert [a.match_index for a in acks] == [new]
    c.storages[2].sync()
    f.advance(rd)
    assert not f.has_ready() or reply not in f.ready().messages  # handed out once


def test_an_ack_of_entries_not_yet_durable_never_leaves_early() -> None:
    c = Cluster(3)
    leader, f, _ = follower_with_write_in_flight(c)
    leader.propose(b"y")
    c.handle(1)
    for m in c.take(lambda m: m.dst == 2):
        f.step(m)  # appended in memory only: no Ready may be taken while one is in hand
    assert f.take_early() == []
    assert any(isinstance(m, AppendEntriesResponse) and m.success for m in f._msgs)


def test_a_rejection_leaves_early() -> None:
    c = Cluster(3)
    leader, f, _ = follower_with_write_in_flight(c)
    f.step(AppendEntries(leader.term, 1, 2, 50, leader.term, (), leader.commit_index, 0))
    early = f.take_early()
    assert len(early) == 1 and not early[0].success and early[0].match_index == 50


def test_a_leaders_heartbeats_leave_during_its_own_fsync() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"x")
    rd = leader.ready()
    persist(c.storages[1], rd)
    assert rd.send_before_sync
    for _ in range(FAST_HEARTBEAT):
        leader.tick()  # no Ready taken: the one above is in hand
    early = leader.take_early()
    assert sorted(m.dst for m in early if isinstance(m, AppendEntries)) == [2, 3]


def test_nothing_leaves_early_before_the_term_and_vote_are_durable() -> None:
    c = Cluster(3, config=RaftConfig(election_ticks=10, heartbeat_ticks=2, pre_vote=False))
    c.nodes[1].campaign()
    assert c.nodes[1].take_early() == []  # the RequestVotes wait for the durable vote
    rd = c.handle(1)
    assert rd is not None and any(isinstance(m, RequestVote) for m in rd.messages)
    # A follower hearing a leader of a new term: its reply waits for the new term's fsync.
    f = c.nodes[3]
    f.step(AppendEntries(5, 2, 3, 0, 0, (), 0, 0))
    assert f.term == 5 and f.take_early() == []
    assert any(isinstance(m, AppendEntriesResponse) for m in f.ready().messages)


FAST_HEARTBEAT = 2  # raft_harness.FAST's heartbeat_ticks


def test_a_queued_ack_of_entries_a_new_leader_truncates_is_never_sent() -> None:
    """The simulator, seed 1883 (5 nodes, slow writes): a follower queued the ack of entries
    from the term-T leader, then a term-T+1 leader's append replaced them before they were
    written. Sent after the next fsync, that ack claimed entries the follower never wrote,
    and the term-T leader could count it toward a commit. It is dropped at the truncation."""
    c = Cluster(3)
    leader, f, rd = follower_with_write_in_flight(c)
    written = rd.entries[-1].index
    leader.propose(b"y")
    c.handle(1)
    for m in c.take(lambda m: m.dst == 2):
        f.step(m)  # the entry after `written`, in memory, its ack queued
    old_term = leader.term
    assert any(isinstance(m, AppendEntriesResponse) and m.success and m.term == old_term
               and m.match_index == written + 1 for m in f._msgs)
    replacement = Entry(old_term + 1, written + 1, NORMAL, b"z")
    f.step(AppendEntries(old_term + 1, 3, 2, written, old_term, (replacement,), 0, 0))
    c.storages[2].sync()
    f.advance(rd)
    acks = [m for m in f.ready().messages if isinstance(m, AppendEntriesResponse) and m.success]
    assert acks and all(m.term == old_term + 1 for m in acks), acks  # only the new leader's
