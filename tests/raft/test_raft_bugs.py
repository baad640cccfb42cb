"""Each test-only bug switch really breaks the rule it names (the simulator must catch it)."""

from __future__ import annotations

import random

import pytest
from raft_harness import Cluster, entries

from raftkv.raft import BUGS, RaftConfig, RaftCore
from wire.raft import AppendEntries, HardState, RequestVote


def _config(*bugs: str) -> RaftConfig:
    return RaftConfig(
        election_ticks=10, heartbeat_ticks=2, pre_vote=False, check_quorum=False, bugs=bugs
    )


def test_unknown_bug_names_are_refused() -> None:
    assert len(BUGS) == 6
    with pytest.raises(ValueError, match="unknown bug"):
        RaftConfig(bugs=frozenset({"typo"}))


def _node(bugs: tuple[str, ...], terms: tuple[int, ...], term: int) -> tuple[Cluster, RaftCore]:
    c = Cluster(3)
    st = c.storages[1]
    st.append(entries(*terms))
    st.set_hard_state(HardState(term=term))
    return c, RaftCore(1, st, _config(*bugs), random.Random(0))


@pytest.mark.parametrize("bug", [False, True])
def test_vote_without_log_check(bug: bool) -> None:
    _, node = _node(("vote_without_log_check",) if bug else (), (1, 2, 2), 2)
    node.step(RequestVote(3, 2, 1, 1, 1))  # a candidate missing committed-looking entries
    (resp,) = node.ready().messages
    assert resp.granted is bug


@pytest.mark.parametrize("bug", [False, True])
def test_skip_persist_vote(bug: bool) -> None:
    c, node = _node(("skip_persist_vote",) if bug else (), (), 0)
    node.step(RequestVote(1, 2, 1, 0, 0))
    rd = node.ready()
    assert rd.messages[0].granted
    st = c.storages[1]
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    st.sync()
    st.crash()
    again = RaftCore(1, st, _config(*(["skip_persist_vote"] if bug else [])), random.Random(0))
    again.step(RequestVote(1, 3, 1, 0, 0))
    (resp,) = again.ready().messages
    assert resp.granted is bug  # with the bug: two votes in term 1


@pytest.mark.parametrize("bug", [False, True])
def test_truncate_matching_suffix(bug: bool) -> None:
    _, node = _node(("truncate_matching_suffix",) if bug else (), (1, 1, 1, 1, 1, 1), 1)
    # A delayed AppendEntries whose entries all match what the follower has.
    node.step(AppendEntries(1, 2, 1, 1, 1, tuple(entries(1, 1, start=2)), 0, 0))
    assert node.last_index == (3 if bug else 6)


@pytest.mark.parametrize("bug", [False, True])
def test_no_term_check_on_append(bug: bool) -> None:
    _, node = _node(("no_term_check_on_append",) if bug else (), (1, 5, 5), 5)
    node.step(AppendEntries(3, 2, 1, 1, 1, tuple(entries(3, start=2)), 0, 0))  # a stale leader
    assert all(m.term == 5 for m in node.ready().messages)
    assert node.log_term(2) == (3 if bug else 5)
    assert node.last_index == (2 if bug else 3)
