"""RaftConfig.lazy_commit: a commit index that advanced reaches the followers on the next
AppendEntries with entries, or on an empty one at the next tick, read round or follower
read; never by an empty AppendEntries of its own at once."""

from __future__ import annotations

import attrs
from raft_harness import FAST, Cluster

from raftkv.raft import ReadState
from wire.raft import AppendEntries

LAZY = attrs.evolve(FAST, lazy_commit=True)


def _empty_appends(msgs: list[object]) -> list[AppendEntries]:
    return [m for m in msgs if isinstance(m, AppendEntries) and not m.entries]


def test_eager_commit_sends_an_empty_append_at_once() -> None:
    """The other way (the default), which the lazy tests below are measured against."""
    c = Cluster(3)
    leader = c.elect(1)
    index, _ = leader.propose(b"x")
    sent = len(c.sent)
    c.run()
    assert _empty_appends(c.sent[sent:])
    assert all(c.nodes[i].commit_index == index for i in c.ids)


def test_a_commit_waits_for_the_next_tick_when_nothing_else_carries_it() -> None:
    c = Cluster(3, config=LAZY)
    leader = c.elect(1)
    c.tick()  # the no-op's commit reaches everyone
    index, _ = leader.propose(b"x")
    sent = len(c.sent)
    c.run()
    assert leader.commit_index == index and c.applied[1][-1].data == b"x"
    assert [c.nodes[i].commit_index for i in (2, 3)] == [index - 1, index - 1]
    assert _empty_appends(c.sent[sent:]) == []  # the write cost no commit-only message
    assert not leader.has_ready()  # and the loop has nothing to do until the tick
    c.tick(nodes=[1])
    assert [c.nodes[i].commit_index for i in (2, 3)] == [index, index]
    assert [e.data for e in c.applied[2]][-1] == b"x"


def test_the_next_proposal_carries_the_commit_index() -> None:
    c = Cluster(3, config=LAZY)
    leader = c.elect(1)
    c.tick()
    first, _ = leader.propose(b"a")
    c.run()
    sent = len(c.sent)
    leader.propose(b"b")
    c.run()
    appends = [m for m in c.sent[sent:] if isinstance(m, AppendEntries)]
    assert appends and all(m.entries and m.commit == first for m in appends)
    assert [c.nodes[i].commit_index for i in (2, 3)] == [first, first]
    assert _empty_appends(c.sent[sent:]) == []


def test_a_followers_read_learns_the_commit_index_without_a_tick() -> None:
    """A follower's read waits to apply up to its read index: the leader that releases it
    tells that follower the index is committed."""
    c = Cluster(3, config=LAZY)
    leader = c.elect(1)
    c.tick()
    index, _ = leader.propose(b"x")
    c.run()
    assert c.nodes[2].commit_index < index
    c.nodes[2].read_index(b"r")
    c.run()
    assert c.read_states[2] == [ReadState(b"r", index)]
    assert c.nodes[2].commit_index == index and c.applied[2][-1].data == b"x"
