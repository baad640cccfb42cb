"""The leader's commit-only heartbeat (``AppendEntries.quiet``) is not answered unless rejected.

At one client, a write's commit was told to each follower by an empty AppendEntries that
each follower answered: two of the ~8 messages of a write, for nothing the leader needed
(README "Performance"). Safety never rests on an answer arriving (the network may drop
any), so the checks here are that the answer is gone, that a rejection still comes back,
that a read round's heartbeats are still answered, and that the followers learn the commit.
"""

from __future__ import annotations

from raft_harness import Cluster

from wire.raft import AppendEntries, AppendEntriesResponse


def _commit_one_write(c: Cluster) -> tuple[int, list[AppendEntries]]:
    """Leader 1 commits a proposal; the commit-only heartbeats it then sends."""
    leader = c.elect(1)
    index, _ = leader.propose(b"x")
    c.handle(1)
    for m in c.take(lambda m: m.dst != 1):
        c.deliver(m)  # the appends
    for m in c.take(lambda m: m.dst == 1):
        c.deliver(m)  # their acks: the entry commits
    assert leader.commit_index == index
    bumps = c.take(lambda m: isinstance(m, AppendEntries) and not m.entries)
    return index, bumps


def test_a_commit_only_heartbeat_is_quiet_and_teaches_the_commit_without_an_answer() -> None:
    c = Cluster(3)
    index, bumps = _commit_one_write(c)
    assert sorted(m.dst for m in bumps) == [2, 3]
    assert all(m.quiet and m.commit == index for m in bumps)
    for m in bumps:
        c.deliver(m)
    assert c.take() == []  # no answers
    assert all(c.nodes[i].commit_index == index for i in (2, 3))


def test_a_rejected_quiet_heartbeat_is_still_answered() -> None:
    c = Cluster(3)
    _, bumps = _commit_one_write(c)
    m = bumps[0]
    f = c.nodes[m.dst]
    # One the follower cannot match (its log is shorter): the leader must hear of it.
    f.step(AppendEntries(m.term, m.src, m.dst, m.prev_index + 5, m.prev_term, (), m.commit,
                         m.seq, True))
    replies = c.take(lambda r: isinstance(r, AppendEntriesResponse))
    assert len(replies) == 1 and not replies[0].success


def test_a_read_rounds_heartbeats_are_answered() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.read_index(b"r")
    c.handle(1)
    beats = c.take(lambda m: isinstance(m, AppendEntries) and not m.entries)
    assert beats and not any(m.quiet for m in beats)
    for m in beats:
        c.deliver(m)
    assert len(c.take(lambda m: isinstance(m, AppendEntriesResponse))) == len(beats)
