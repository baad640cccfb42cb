"""Restart after a torn Ready: the core never runs below a term its own log holds."""

from __future__ import annotations

import random

from raft_harness import FAST, entries, members

from raftkv.raft import MemoryStorage, RaftCore, Ready, Role, persist
from wire.raft import AppendEntries, AppendEntriesResponse, Entry, HardState


def torn_follower() -> MemoryStorage:
    """Node 6's storage in seed 9100594: at term 8 it got entry 4 of term 9 from the new
    leader and crashed before its fsync; the entry survived, the term-9 hard state did not."""
    st = MemoryStorage(members([1, 2, 3, 4, 5, 6]))
    st.append(entries(8, 8, 8))  # indexes 1..3 of term 8
    st.set_hard_state(HardState(term=8, vote=4, commit=2))
    st.append([Entry(term=9, index=4, kind=0, data=b"new leader's")])
    return st


def test_restart_takes_the_term_of_the_last_entry_and_clears_the_vote() -> None:
    node = RaftCore(6, torn_follower(), FAST, random.Random(1))
    assert node.term == 9 and node.last_term == 9
    assert node.vote == 0  # no vote in term 9 can have left: it would have been durable
    rd = node.ready()
    assert rd.hard_state == HardState(term=9, vote=0, commit=2) and rd.must_sync


def test_restarted_node_refuses_the_stale_leader_of_the_older_term() -> None:
    st = torn_follower()
    node = RaftCore(6, st, FAST, random.Random(1))
    stale = AppendEntries(term=8, src=4, dst=6, prev_index=3, prev_term=8,
                          entries=(Entry(term=8, index=4, kind=0, data=b"stale"),), commit=3)
    node.step(stale)
    rd = node.ready()
    persist(st, rd)
    (reply,) = rd.messages
    assert isinstance(reply, AppendEntriesResponse)
    assert reply.term == 9 and not reply.success
    assert st.term(4) == 9 and node.role is Role.FOLLOWER


def test_a_stored_term_above_the_log_is_kept_with_its_vote() -> None:
    st = MemoryStorage(members([1, 2, 3, 4, 5, 6]))
    st.append(entries(1, 1))
    st.set_hard_state(HardState(term=5, vote=2, commit=0))
    node = RaftCore(1, st, FAST, random.Random(1))
    assert (node.term, node.vote) == (5, 2)


def test_persist_writes_entries_before_the_hard_state() -> None:
    calls: list[str] = []

    class Recorder:
        def append(self, es: list[Entry]) -> None:
            calls.append("entries")

        def set_hard_state(self, hs: HardState) -> None:
            calls.append("hard state")

    rd = Ready(entries=[Entry(term=1, index=1, kind=0, data=b"")], hard_state=HardState(1, 1, 1))
    persist(Recorder(), rd)  # type: ignore[arg-type]
    assert calls == ["entries", "hard state"]
