"""Linearizable reads by ReadIndex: on the leader, across leader changes, on followers."""

from __future__ import annotations

import pytest
from raft_harness import FAST, Cluster

from raftkv.raft import NotLeader, RaftConfig, ReadState, Role
from wire.raft import AppendEntries, AppendEntriesResponse, ReadIndexRequest, ReadIndexResponse


def _cluster(n: int = 3, config: RaftConfig = FAST) -> Cluster:
    c = Cluster(n, config=config)
    c.elect(1)
    c.nodes[1].propose(b"x")
    c.run()
    return c


def test_many_reads_share_one_heartbeat_round() -> None:
    c = _cluster()
    leader = c.nodes[1]
    for ctx in (b"a", b"b", b"c", b"d"):
        leader.read_index(ctx)
    out = c.take()
    beats = [m for m in out if isinstance(m, AppendEntries)]
    # One message for four reads, to the one follower a quorum needs besides the leader.
    assert len(beats) == 1 and beats[0].dst in (2, 3) and beats[0].seq >= 1
    assert c.read_states[1] == []  # nothing is served before a quorum confirms
    # One follower's reply makes a quorum (with the leader itself).
    c.deliver(beats[0])
    (resp,) = c.take(lambda m: isinstance(m, AppendEntriesResponse))
    assert resp.seq == beats[0].seq
    c.deliver(resp)
    c.flush()
    commit = leader.commit_index
    assert c.read_states[1] == [ReadState(ctx, commit) for ctx in (b"a", b"b", b"c", b"d")]


@pytest.mark.parametrize("n", [3, 5])
def test_a_read_round_goes_to_the_voters_a_quorum_needs_those_that_answered_first(
        n: int) -> None:
    """Each other follower's answer would confirm nothing more, and cost the leader a
    message in and that follower one each way."""
    c = _cluster(n)
    leader = c.nodes[1]
    leader.read_index(b"a")
    first = [m for m in c.take() if isinstance(m, AppendEntries)]
    assert len(first) == n // 2
    for m in first:
        c.deliver(m)
    c.run()
    assert [rs.ctx for rs in c.read_states[1]] == [b"a"]
    leader.read_index(b"b")  # the same followers again: they answered the latest round
    again = [m for m in c.take() if isinstance(m, AppendEntries)]
    assert sorted(m.dst for m in again) == sorted(m.dst for m in first)


def test_a_round_its_chosen_follower_leaves_unanswered_reaches_every_peer_a_tick_later(
        ) -> None:
    c = _cluster(config=RaftConfig(election_ticks=50, heartbeat_ticks=20))  # no heartbeat
    leader = c.nodes[1]
    leader.read_index(b"a")
    (beat,) = [m for m in c.take() if isinstance(m, AppendEntries)]
    other = 5 - beat.dst  # (ids 2 and 3)
    c.crash(beat.dst)  # the chosen one is gone: its heartbeat is never answered

    def beats_to_other() -> list[AppendEntries]:
        sent = c.appends_to(other, c.sent[mark:])
        return sent

    mark = len(c.sent)
    c.tick(1)  # the round may still be answered within this tick
    assert beats_to_other() == [] and c.read_states[1] == []
    c.tick(1)  # unanswered for a whole tick: every peer hears it (before any heartbeat)
    (late,) = beats_to_other()
    assert late.seq >= beat.seq
    assert [rs.ctx for rs in c.read_states[1]] == [b"a"]  # the other answered it
    mark = len(c.sent)
    leader.read_index(b"b")  # the next round goes to the follower that answered
    c.run()
    assert [rs.ctx for rs in c.read_states[1]] == [b"a", b"b"]
    assert len(beats_to_other()) == 1
    mark = len(c.sent)
    c.tick(2)  # nothing overdue: no heartbeat before the interval
    assert beats_to_other() == []


def test_read_rounds_counts_one_per_heartbeat_round_not_per_read() -> None:
    """INFO's raft_read_rounds: how many reads share a round is what a GET bench reads."""
    c = _cluster()
    leader = c.nodes[1]
    before = leader.read_rounds
    for ctx in (b"a", b"b", b"c"):
        leader.read_index(ctx)
    c.run()
    assert [rs.ctx for rs in c.read_states[1]] == [b"a", b"b", b"c"]
    assert leader.read_rounds == before + 1
    leader.read_index(b"d")
    c.run()
    assert leader.read_rounds == before + 2


def test_reply_to_a_message_sent_before_the_read_does_not_confirm_it() -> None:
    c = _cluster()
    leader = c.nodes[1]
    leader.propose(b"y")
    old = c.take()  # AppendEntries sent before the read, with the old round number
    leader.read_index(b"r")
    new = c.take()
    for m in old:
        c.deliver(m)
    replies = c.take(lambda m: isinstance(m, AppendEntriesResponse))
    for m in replies:
        c.deliver(m)
    c.flush()
    assert c.read_states[1] == []
    for m in new:
        c.deliver(m)
    c.run()
    assert [rs.ctx for rs in c.read_states[1]] == [b"r"]


def test_single_voter_serves_reads_without_a_round() -> None:
    c = Cluster(1)
    c.elect(1)
    c.nodes[1].read_index(b"r")
    rd = c.handle(1)
    assert rd.read_states == [ReadState(b"r", 1)] and rd.messages == []


def test_new_leader_queues_reads_until_its_noop_commits() -> None:
    c = Cluster(3)
    c.nodes[1].campaign()
    c.drop = lambda m: isinstance(m, AppendEntries) and bool(m.entries)  # no-op held back
    c.run()
    leader = c.nodes[1]
    assert leader.role is Role.LEADER and leader.commit_index == 0
    leader.read_index(b"early")
    c.tick(3)  # heartbeats flow and are answered, but the no-op is not committed
    assert c.read_states[1] == [] and c.failed_reads[1] == []
    c.heal()
    c.tick(3)
    assert leader.commit_index == 1
    assert c.read_states[1] == [ReadState(b"early", 1)]


def test_pending_read_fails_when_leadership_is_lost() -> None:
    c = _cluster()
    old = c.nodes[1]
    old.read_index(b"doomed")
    c.isolate(1)
    c.run()  # the round's heartbeats are lost
    c.tick(3 * FAST.election_ticks, nodes=[2, 3])
    assert c.nodes[1].role is Role.LEADER  # not ticked: it still believes it leads
    assert len(c.leaders()) == 2 and c.nodes[1].term < max(n.term for n in c.nodes.values())
    c.heal()
    c.tick(2)  # the old leader hears the new term and steps down
    assert old.role is Role.FOLLOWER
    assert c.failed_reads[1] == [b"doomed"] and c.read_states[1] == []


def test_check_quorum_step_down_fails_pending_reads() -> None:
    c = _cluster()
    c.nodes[1].read_index(b"r")
    c.isolate(1)
    c.tick(2 * FAST.check_quorum_ticks, nodes=[1])  # two CheckQuorum windows at most
    assert c.nodes[1].role is Role.FOLLOWER
    assert c.failed_reads[1] == [b"r"]


def test_read_on_a_follower() -> None:
    c = _cluster()
    follower = c.nodes[2]
    follower.read_index(b"f")
    (req,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    assert (req.src, req.dst) == (2, 1)  # its ctx is the batch's id (below)
    c.deliver(req)
    c.run()
    responses = [m for m in c.sent if isinstance(m, ReadIndexResponse)]
    assert [(m.dst, m.ok, m.index) for m in responses] == [(2, True, c.nodes[1].commit_index)]
    assert c.read_states[2] == [ReadState(b"f", c.nodes[1].commit_index)]
    assert follower.commit_index >= c.read_states[2][0].index  # it can apply and serve


def test_follower_read_fails_on_leader_change_and_on_timeout() -> None:
    c = _cluster()
    c.nodes[2].read_index(b"lost")
    c.take(lambda m: isinstance(m, ReadIndexRequest))  # the request is lost
    c.tick(FAST.read_timeout_ticks - 1)  # heartbeats keep node 2 a follower
    assert c.failed_reads[2] == []
    c.tick(1)
    assert c.failed_reads[2] == [b"lost"]
    c.nodes[3].read_index(b"moved")
    c.take(lambda m: isinstance(m, ReadIndexRequest))
    c.nodes[3].step(AppendEntries(c.nodes[1].term + 1, 2, 3, 0, 0, (), 0, 0))
    c.flush()
    assert c.failed_reads[3] == [b"moved"]


def test_follower_read_outlives_an_election_timeout_on_a_slow_link() -> None:
    """Request, heartbeat round and answer each take a while: the read still succeeds."""
    c = _cluster()
    assert FAST.read_timeout_ticks > 2 * FAST.election_ticks
    c.nodes[2].read_index(b"slow")
    (req,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    c.tick(2 * FAST.election_ticks)  # heartbeats flow; the request arrives two timeouts late
    c.deliver(req)
    c.run()
    assert c.failed_reads[2] == []
    assert c.read_states[2] == [ReadState(b"slow", c.nodes[1].commit_index)]


def test_read_without_a_leader_raises() -> None:
    c = Cluster(3)
    with pytest.raises(NotLeader):
        c.nodes[1].read_index(b"r")


def test_bug_read_without_quorum_serves_an_isolated_leader() -> None:
    config = RaftConfig(
        election_ticks=10,
        heartbeat_ticks=2,
        check_quorum=False,
        bugs=frozenset({"read_without_quorum"}),
    )
    c = _cluster(config=config)
    c.isolate(1)
    c.tick(3 * FAST.election_ticks, nodes=[2, 3])
    assert c.leaders() != [1]  # a newer leader exists...
    c.nodes[1].read_index(b"stale")
    c.flush()
    assert [rs.ctx for rs in c.read_states[1]] == [b"stale"]  # ...yet the old one serves


def test_a_reply_to_an_older_terms_append_answers_no_read_round() -> None:
    """Seed 8706: the reply to a late AppendEntries of an older term carries the replier's
    term, which its sender may lead again by then; echoing the old round number would
    confirm that leader's new rounds without a quorum."""
    c = _cluster()
    term = c.nodes[1].term
    follower = c.nodes[3]
    follower.step(AppendEntries(term + 1, 2, 3, 0, 0, (), 0, 0))  # now follows 2 in term+1
    c.flush()
    follower.step(AppendEntries(term, 1, 3, 0, 0, (), 0, 9))  # late: term's read round 9
    c.flush()
    reply = [m for m in c.sent if isinstance(m, AppendEntriesResponse) and m.dst == 1][-1]
    assert (reply.term, reply.success, reply.seq) == (term + 1, False, 0)


def test_a_leader_takes_no_ack_for_a_round_it_has_not_opened() -> None:
    c = _cluster()
    leader = c.nodes[1]
    term = leader.term
    for peer in (2, 3):  # replies echoing some other leadership's round 50
        leader.step(AppendEntriesResponse(term, peer, 1, False, 0, seq=50))
    c.flush()
    c.isolate(1)
    leader.read_index(b"r")
    c.run()
    assert c.read_states[1] == []  # no quorum heard the round: the read waits
    c.heal()
    c.tick(FAST.heartbeat_ticks)
    assert [rs.ctx for rs in c.read_states[1]] == [b"r"]


def test_a_followers_reads_between_two_readies_share_one_request_and_one_answer() -> None:
    c = _cluster()
    follower = c.nodes[2]
    for ctx in (b"a", b"b", b"c"):
        follower.read_index(ctx)
    (req,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    assert req.ctx not in (b"a", b"b", b"c")
    follower.read_index(b"d")  # after that ready(): the next batch
    (req2,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    assert req2.ctx != req.ctx
    for r in (req, req2):
        c.deliver(r)
    c.run()
    responses = [m for m in c.sent if isinstance(m, ReadIndexResponse)]
    assert len(responses) == 2  # one answer per batch, not per read
    index = c.nodes[1].commit_index
    assert c.read_states[2] == [ReadState(ctx, index) for ctx in (b"a", b"b", b"c", b"d")]


def test_a_batch_fails_whole_and_unsent_reads_fail_with_a_leader_change() -> None:
    c = _cluster()
    c.nodes[2].read_index(b"x")
    c.nodes[2].read_index(b"y")
    (req,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    c.nodes[2].step(ReadIndexResponse(req.term, 1, 2, req.ctx, 0, False))
    c.flush()
    assert c.failed_reads[2] == [b"x", b"y"]
    c.nodes[2].read_index(b"z")  # not sent yet when a new term's leader speaks
    c.nodes[2].step(AppendEntries(c.nodes[1].term + 1, 3, 2, 0, 0, (), 0, 0))
    c.flush()
    assert c.failed_reads[2] == [b"x", b"y", b"z"]
    assert not c.take(lambda m: isinstance(m, ReadIndexRequest))


def test_an_answer_to_a_batch_sent_before_a_restart_serves_no_later_read() -> None:
    # The leader's answer carries an index confirmed before the follower restarted; a read
    # made after the restart may need a later one (a write acknowledged in between).
    c = _cluster()
    c.nodes[2].read_index(b"before")
    (old,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    c.crash(2)
    c.start(2)
    c.tick(FAST.heartbeat_ticks)  # it hears the leader again
    assert c.nodes[2].leader_id == 1
    c.nodes[2].read_index(b"after")
    (new,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    assert new.ctx != old.ctx
    c.nodes[2].step(ReadIndexResponse(old.term, 1, 2, old.ctx, 1, True))
    c.flush()
    assert c.read_states[2] == []


@pytest.mark.parametrize(("n", "at_once"), [(3, True), (5, False)])
def test_a_voters_request_counts_as_its_ack_so_three_voters_need_no_round(
        n: int, at_once: bool) -> None:
    # With 3 voters, the requesting follower and the leader are a quorum: the request, sent
    # at the leader's term after the reads began, is the follower's ack. With 5 they are
    # not, and the leader still confirms with a heartbeat round.
    c = _cluster(n)
    c.nodes[2].read_index(b"r")
    (req,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    c.deliver(req)
    rd = c.handle(1)  # the leader's next Ready, handled as the runtime would
    assert rd is not None
    answers = [m for m in rd.messages if isinstance(m, ReadIndexResponse)]
    beats = [m for m in rd.messages if isinstance(m, AppendEntries)]
    if at_once:
        assert [(m.dst, m.ok, m.index) for m in answers] == [(2, True, c.nodes[1].commit_index)]
        assert beats == []
    else:
        assert answers == [] and len(beats) == n // 2  # the followers a quorum needs
    c.run()
    assert c.read_states[2] == [ReadState(b"r", c.nodes[1].commit_index)]


def test_a_learners_request_still_takes_a_round() -> None:
    c = Cluster(3, config=FAST, learners=[3])
    c.elect(1)
    c.tick(FAST.heartbeat_ticks)  # the learner hears its leader
    c.nodes[3].read_index(b"l")
    (req,) = c.take(lambda m: isinstance(m, ReadIndexRequest))
    c.deliver(req)
    rd = c.handle(1)
    assert rd is not None
    assert not [m for m in rd.messages if isinstance(m, ReadIndexResponse)]
    assert sorted(m.dst for m in rd.messages if isinstance(m, AppendEntries)) == [2, 3]
