"""MemoryStorage (the LogStorage the tests and the simulator use) and the core's RaftLog."""

from __future__ import annotations

import random

import pytest
from raft_harness import FAST, Cluster, entries, members

from raftkv.raft import Compacted, MemoryStorage, RaftCore, Role, Unavailable, entry_size
from raftkv.raft.membership import encode_config
from raftkv.raft.raft_log import RaftLog
from wire.raft import CONFIG, Entry, HardState, SnapshotMeta

CONF = members([1, 2, 3])


def _storage(*terms: int) -> MemoryStorage:
    st = MemoryStorage(CONF)
    st.append(entries(*terms))
    return st


def test_bootstrap_state() -> None:
    st = MemoryStorage(CONF)
    assert st.initial_state() == (HardState(), CONF)
    assert (st.first_index(), st.last_index(), st.term(0)) == (1, 0, 0)
    assert st.snapshot_meta() == SnapshotMeta(0, 0, CONF) and st.snapshot_data() == b""
    assert st.entries(1, 1) == []
    with pytest.raises(Unavailable):
        st.term(1)


def test_append_truncates_a_conflicting_suffix_and_rejects_gaps() -> None:
    st = _storage(1, 1, 2, 2)
    st.append(entries(3, 3, start=3))
    assert [st.term(i) for i in range(1, 5)] == [1, 1, 3, 3]
    with pytest.raises(ValueError, match="gap"):
        st.append(entries(3, start=9))
    with pytest.raises(ValueError, match="contiguous"):
        st.append([Entry(3, 5, 0, b""), Entry(3, 7, 0, b"")])


def test_entries_bounds_and_byte_budget() -> None:
    st = MemoryStorage(CONF)
    st.append([Entry(1, i, 0, b"x" * 100) for i in range(1, 11)])
    size = entry_size(st.entries(1, 2)[0])
    assert len(st.entries(1, 11, max_bytes=3 * size)) == 3
    assert len(st.entries(1, 11, max_bytes=1)) == 1  # at least one entry
    with pytest.raises(Unavailable):
        st.entries(5, 12)
    with pytest.raises(Compacted):
        st.entries(0, 3)


def test_compaction_moves_the_first_index() -> None:
    st = _storage(1, 1, 2, 2, 3)
    st.compact(SnapshotMeta(3, 2, CONF), b"state")
    assert (st.first_index(), st.last_index(), st.term(3), st.term(5)) == (4, 5, 2, 3)
    assert st.snapshot_data() == b"state"
    with pytest.raises(Compacted):
        st.term(2)
    with pytest.raises(Compacted):
        st.entries(3, 5)
    assert [e.index for e in st.entries(4, 6)] == [4, 5]
    st.append(entries(2, 4, start=3))  # the compacted part of an append is skipped
    assert [st.term(i) for i in (3, 4)] == [2, 4] and st.last_index() == 4
    with pytest.raises(ValueError):
        st.compact(SnapshotMeta(4, 9, CONF), b"")


def test_install_snapshot_keeps_a_matching_suffix_only() -> None:
    st = _storage(1, 1, 2, 2)
    st.install_snapshot(SnapshotMeta(2, 1, CONF), b"s")
    assert (st.first_index(), st.last_index()) == (3, 4)
    st.install_snapshot(SnapshotMeta(3, 7, CONF), b"t")  # term differs: drop everything
    assert (st.first_index(), st.last_index(), st.term(3)) == (4, 3, 7)


def test_crash_loses_exactly_what_was_not_synced() -> None:
    st = _storage(1, 1, 2)
    st.set_hard_state(HardState(2, 1, 2))
    st.sync()
    st.append(entries(3, 3, start=2))  # overwrites 2 and 3, unsynced
    st.append(entries(3, start=4))
    st.set_hard_state(HardState(3, 0, 2))
    st.crash()
    assert [st.term(i) for i in (1, 2, 3)] == [1, 1, 2] and st.last_index() == 3
    assert st.initial_state()[0] == HardState(2, 1, 2)
    st.append(entries(4, start=4))
    st.sync()
    st.crash()
    assert st.last_index() == 4


def test_initial_state_reports_the_latest_config_in_the_log() -> None:
    st = _storage(1)
    new = members([1, 2, 3, 4])
    st.append([Entry(1, 2, CONFIG, encode_config(new))])
    assert st.initial_state()[1] == new


def test_raft_log_unstable_tail_supersedes_storage() -> None:
    st = _storage(1, 1, 2, 2)
    log = RaftLog(st)
    log.append(entries(3, 3, start=3))
    assert (log.last_index(), log.term(3), log.stable_index()) == (4, 3, 2)
    assert st.term(3) == 2  # storage still has the old tail until the runtime writes
    assert [e.term for e in log.take_unemitted()] == [3, 3]
    assert log.take_unemitted() == []
    log.append(entries(4, start=4))  # replaced again before the first batch was persisted
    assert [e.index for e in log.take_unemitted()] == [4]
    log.stable_to(4, 3)  # the first batch: no longer what the log holds at 4
    assert log.stable_index() == 2
    st.append(entries(3, 3, start=3))
    st.append(entries(4, start=4))
    log.stable_to(4, 4)
    assert log.stable_index() == 4 and log.unstable == []
    assert [e.term for e in log.entries(1, 5)] == [1, 1, 3, 4]


def test_append_next_is_append_of_one_entry_after_the_last() -> None:
    """A leader's proposal: after storage's last entry, after an unstable tail (emitted or
    not), and after a restored snapshot, as ``append`` of that one entry would do."""
    st = _storage(1, 1, 2)
    log, ref = RaftLog(st), RaftLog(_storage(1, 1, 2))
    for term, kind, data in ((2, 0, b"a"), (3, 0, b"b"), (3, CONFIG, b"c"), (3, 0, b"")):
        e = log.append_next(term, kind, data)
        ref.append([Entry(term, ref.last_index() + 1, kind, data)])
        assert e == Entry(term, ref.last_index(), kind, data)
        assert (log.unstable, log.offset, log.emitted) == (ref.unstable, ref.offset, ref.emitted)
        if data == b"b":  # handed out in a Ready: only what follows is unemitted
            assert log.take_unemitted() == ref.take_unemitted() != []
    assert [x.data for x in log.take_unemitted()] == [b"c", b""]
    log.restore(SnapshotMeta(9, 3, CONF))
    assert log.append_next(4, 0, b"d") == Entry(4, 10, 0, b"d")
    assert log.last_index() == 10 and [x.index for x in log.take_unemitted()] == [10]


def test_raft_log_term_searches() -> None:
    log = RaftLog(_storage(1, 1, 1, 4, 4, 5, 5, 6, 6, 6))
    assert log.first_index_of_term(9, floor=1) == 8
    assert log.first_index_of_term(5, floor=1) == 4
    assert log.last_index_with_term_at_most(4, hi=10) == 5
    assert log.last_index_with_term_at_most(3, hi=10) == 3
    assert log.last_index_with_term_at_most(0, hi=10) == 0


def test_node_starts_from_a_compacted_log() -> None:
    st = _storage(1, 1, 1, 2, 2)
    st.compact(SnapshotMeta(3, 1, CONF), b"snap")
    st.set_hard_state(HardState(2, 0, 4))
    node = RaftCore(1, st, FAST, random.Random(0))
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [4]  # from the snapshot on
    assert node.last_index == 5 and node.commit_index == 4


def test_leader_marks_a_follower_behind_the_compacted_prefix_for_snapshot() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    c.isolate(3)
    for n in range(5):
        leader.propose(b"%d" % n)
    c.run()
    c.compact(1, 4)
    c.heal()
    c.drop = lambda m: m.dst == 3 and type(m).__name__ == "InstallSnapshot"
    c.tick(4)
    assert leader.role is Role.LEADER
    assert leader.progress(3).state.value == "snapshot"
    assert leader.progress(3).pending_snapshot == 4
