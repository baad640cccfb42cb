"""Log compaction and snapshot transfer in the core: InstallSnapshot in chunks with a window,
retransmission, restarts, leader changes, newer snapshots, conflicting suffixes, config."""

from __future__ import annotations

import random

import attrs
import pytest
from raft_harness import Cluster, members

from raftkv.raft import MemoryStorage, ProgressState, RaftConfig, RaftCore, Role
from wire.raft import (
    CONFIG,
    AppendEntries,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    SnapshotMeta,
)

SNAP = RaftConfig(
    election_ticks=10,
    heartbeat_ticks=2,
    snapshot_chunk_bytes=64,
    snapshot_window=2,
    snapshot_retry_ticks=3,
)


def is_chunk(m: object) -> bool:
    return isinstance(m, InstallSnapshot)


def write(c: Cluster, leader: RaftCore, n: int, tag: str = "v") -> None:
    for k in range(n):
        leader.propose(f"{tag}{k}-{'x' * 20}".encode())
        c.run()


def behind(c: Cluster, lagging: int = 3, n: int = 30) -> RaftCore:
    """Leader 1; node ``lagging`` misses ``n`` writes; the leader compacts them all away."""
    leader = c.elect(1)
    c.isolate(lagging)
    write(c, leader, n)
    c.compact(1)
    c.heal()
    return leader


def assert_caught_up(c: Cluster, i: int, leader: int = 1) -> None:
    """Node i applied what the leader applied and its log agrees wherever both hold entries."""
    assert c.state(i) == c.state(leader)
    assert c.nodes[i].last_index == c.nodes[leader].last_index
    assert c.nodes[i].commit_index == c.nodes[leader].commit_index
    mine, theirs = dict(c.log(i)), dict(c.log(leader))
    assert {k: mine[k] for k in mine.keys() & theirs.keys()} == {
        k: theirs[k] for k in mine.keys() & theirs.keys()
    }


def test_compaction_keeps_replication_working() -> None:
    c = Cluster(3, config=SNAP)
    leader = c.elect(1)
    write(c, leader, 10)
    for i in c.ids:
        c.compact(i)
    write(c, leader, 10, tag="after")
    assert not [m for m in c.sent if is_chunk(m)]  # nobody needed a snapshot
    for i in c.ids:
        assert c.state(i) == c.state(1)
        assert c.storages[i].first_index() == 12  # noop + 10 writes compacted
    assert c.state(1)[-1].data.startswith(b"after9")
    assert leader.progress(2).state is ProgressState.REPLICATE


def test_follower_behind_the_compacted_prefix_gets_chunks_within_the_window() -> None:
    c = Cluster(3, config=SNAP)
    leader = behind(c)
    meta = c.storages[1].snapshot_meta()
    size = c.storages[1].snapshot_size()
    for _ in range(SNAP.heartbeat_ticks):  # heartbeat -> reply -> probe -> Compacted
        leader.tick()
    c.flush()
    while c.queue:  # one message at a time, checking the window after each
        c.deliver(c.queue.pop(0))
        c.flush()
        in_flight = [m for m in c.queue if is_chunk(m) or (
            isinstance(m, InstallSnapshotResponse) and not m.done)]
        assert len(in_flight) <= SNAP.snapshot_window
    chunks = [m for m in c.sent if is_chunk(m)]
    assert c.installed[3] == [meta]
    assert [m.offset for m in chunks] == list(range(0, size, 64))
    assert b"".join(m.data for m in chunks) == c.storages[1].snapshot_data()
    assert [m.done for m in chunks] == [False] * (len(chunks) - 1) + [True]
    assert len(chunks) > SNAP.snapshot_window
    assert leader.progress(3).state is ProgressState.REPLICATE
    assert c.storages[3].snapshot_meta() == meta
    assert_caught_up(c, 3)
    write(c, leader, 3, tag="later")  # and replication carries on after the snapshot
    assert_caught_up(c, 3)
    assert c.state(3)[-1].data.startswith(b"later2")


def test_lost_duplicated_and_reordered_chunks_are_retransmitted() -> None:
    c = Cluster(3, config=SNAP)
    leader = behind(c, n=40)
    rng = random.Random(5)
    c.drop = lambda m: is_chunk(m) and rng.random() < 0.3
    for _ in range(400):
        if c.installed[3]:
            break
        for i in c.ids:
            c.nodes[i].tick()
        c.flush()
        rng.shuffle(c.queue)  # reorder
        c.queue += [m for m in c.queue if rng.random() < 0.3]  # duplicate
        while c.queue:
            c.deliver(c.queue.pop(0))
            c.flush()
    c.heal()
    c.tick(5)
    assert len(c.installed[3]) == 1
    assert leader.role is Role.LEADER
    dropped_or_dup = [m for m in c.sent if is_chunk(m)]
    assert len(dropped_or_dup) > c.storages[1].snapshot_size() // 64 + 1  # some resent
    assert_caught_up(c, 3)


def test_a_hole_is_rejected_and_the_leader_resends_from_what_the_follower_holds() -> None:
    c = Cluster(3, config=SNAP)
    behind(c)
    c.hold = is_chunk
    c.tick(2)
    first = c.release()
    assert [m.offset for m in first] == [0, 64]
    c.deliver(first[1])  # offset 64 before 0: a hole
    replies = c.take(lambda m: isinstance(m, InstallSnapshotResponse))
    assert [(r.offset, r.reject) for r in replies] == [(0, True)]
    c.deliver(replies[0])
    resent = c.take(is_chunk)
    assert [m.offset for m in resent] == [0, 64]  # rewound to 0, window refilled
    c.queue += resent
    c.run()
    assert len(c.installed[3]) == 1
    assert_caught_up(c, 3)


def test_leader_change_mid_transfer() -> None:
    c = Cluster(3, config=SNAP)
    behind(c)
    c.compact(2)  # the next leader has a snapshot too
    c.hold = is_chunk
    c.tick(2)
    c.deliver(c.release()[0])  # node 3 gets the first chunk of node 1's snapshot
    c.flush()
    c.queue = []
    assert c.writers[3].received == 64  # half received from the old leader
    c.isolate(1)
    c.tick(4 * SNAP.election_ticks, nodes=[2, 3])  # 2 wins: 3's log is behind
    assert c.nodes[2].role is Role.LEADER
    assert len(c.installed[3]) == 1
    assert c.installed[3][0] == c.storages[2].snapshot_meta()
    firsts = [m for m in c.sent if is_chunk(m) and m.src == 2]
    assert firsts[0].offset == 0  # the new leader started over
    assert_caught_up(c, 3, leader=2)


def test_a_stale_chunk_from_a_deposed_leader_is_refused_with_the_new_term() -> None:
    c = Cluster(3, config=SNAP)
    old = behind(c)
    c.hold = is_chunk
    c.tick(2)
    stale = c.release()[0]
    c.isolate(1)
    c.hold = is_chunk  # the new leader's own transfer is held back
    c.tick(4 * SNAP.election_ticks, nodes=[2, 3])
    assert c.nodes[2].role is Role.LEADER
    c.heal()
    c.nodes[3].step(stale)
    (reply,) = c.take(lambda m: isinstance(m, InstallSnapshotResponse))
    assert reply.reject and reply.term == c.nodes[2].term > stale.term
    c.deliver(reply)
    assert old.role is Role.FOLLOWER and old.term == c.nodes[2].term
    assert not c.installed[3]


def test_newer_snapshot_mid_transfer_restarts_the_transfer() -> None:
    c = Cluster(3, config=SNAP)
    leader = behind(c)
    old_meta = c.storages[1].snapshot_meta()
    c.hold = is_chunk
    c.tick(2)
    for m in c.release():
        c.deliver(m)
    acks = c.take(lambda m: isinstance(m, InstallSnapshotResponse))
    assert acks and not any(a.done for a in acks)
    c.isolate(3)
    write(c, leader, 5, tag="newer")
    new_meta = c.compact(1)
    c.heal()
    for a in acks:
        c.deliver(a)
    chunks = c.take(is_chunk)
    assert chunks and all(m.meta == new_meta and m.offset == 0 for m in chunks[:1])
    c.queue += chunks
    c.run()
    assert c.installed[3] == [new_meta] and new_meta.index > old_meta.index
    assert_caught_up(c, 3)


def test_restart_mid_receive_discards_the_partial_snapshot() -> None:
    c = Cluster(3, config=SNAP)
    behind(c)
    c.hold = is_chunk
    c.tick(2)
    for m in c.release():
        c.deliver(m)
    c.flush()
    assert c.writers[3].received == 128
    c.crash(3)  # the half-written receive dies with the process
    c.queue = [m for m in c.queue if m.src != 3]
    c.start(3)
    assert 3 not in c.writers
    c.tick(12)
    assert len(c.installed[3]) == 1
    offsets = [m.offset for m in c.sent if is_chunk(m)]
    assert offsets.count(0) == 2  # the leader started over from 0 after the restart
    assert_caught_up(c, 3)


def test_follower_with_a_conflicting_suffix_discards_it_for_the_snapshot() -> None:
    c = Cluster(3, config=SNAP)
    stray = c.elect(3)
    c.isolate(3)
    for k in range(4):
        stray.propose(b"lost%d" % k)  # never committed: node 3 is cut off
    c.flush()
    assert [t for _, t in c.log(3)] == [stray.term] * 5
    c.tick(3 * SNAP.election_ticks, nodes=[1, 2])  # 1 and 2 elect a new leader
    (lead,) = [i for i in c.leaders() if i != 3]
    leader = c.nodes[lead]
    write(c, leader, 20)
    c.compact(lead)
    c.heal()
    c.tick(15)
    assert leader.role is Role.LEADER
    assert len(c.installed[3]) == 1
    assert not [e for e in c.state(3) if e.data.startswith(b"lost")]
    assert all(t > stray.term for _, t in c.log(3))  # the stray suffix is gone
    assert_caught_up(c, 3, leader=lead)


def test_follower_whose_log_holds_the_snapshot_entry_needs_no_transfer() -> None:
    c = Cluster(3, config=SNAP)
    leader = c.elect(1)
    write(c, leader, 10)
    meta = c.compact(1)
    node3 = c.nodes[3]
    node3.step(InstallSnapshot(leader.term, 1, 3, meta, 0, b"abc", False))
    (reply,) = c.take(lambda m: isinstance(m, InstallSnapshotResponse))
    assert reply.done and reply.index == meta.index
    assert not c.installed[3] and 3 not in c.writers
    assert c.storages[3].first_index() == 1  # its log is untouched


def test_snapshot_carries_the_configuration() -> None:
    config = SNAP
    c = Cluster(3, config=config)
    leader = c.elect(1)
    c.isolate(3)
    learner = members([1, 2, 3, 4], learners=[4])
    leader.propose_config(learner)
    c.run()
    write(c, leader, 10)
    c.compact(1)
    assert c.storages[1].snapshot_meta().config == learner
    c.heal()
    c.tick(15, nodes=[1, 2, 3])
    assert len(c.installed[3]) == 1
    assert c.nodes[3].cluster_config == learner
    assert c.storages[3].snapshot_meta().config == learner
    c.crash(3)
    c.start(3)  # restored from the snapshot, it still knows its members
    assert c.nodes[3].cluster_config == learner
    assert c.storages[3].initial_state()[1] == learner


def test_install_of_an_empty_snapshot_is_one_chunk() -> None:
    c = Cluster(3, config=SNAP)
    leader = c.elect(1)
    c.isolate(3)
    write(c, leader, 3)
    meta = SnapshotMeta(4, leader.term, leader.cluster_config)
    c.storages[1].compact(meta, b"")
    c.heal()
    c.tick(6)
    chunks = [m for m in c.sent if is_chunk(m)]
    assert [(m.offset, m.data, m.done) for m in chunks][:1] == [(0, b"", True)]
    assert c.installed[3] == [meta]


def test_memory_snapshot_writer_rules() -> None:
    conf = members([1, 2, 3])
    st = MemoryStorage(conf)
    st.append([Entry(1, i, 0, b"") for i in range(1, 4)])
    w = st.snapshot_writer(SnapshotMeta(5, 2, conf))
    w.write(0, b"abcd")
    w.write(2, b"CDEF")  # an overlapping resend
    with pytest.raises(ValueError, match="hole"):
        w.write(7, b"x")
    assert w.received == 6
    assert st.snapshot_meta().index == 0  # nothing visible before finish
    w.finish()
    assert st.snapshot_meta().index == 5 and st.snapshot_data() == b"abCDEF"
    assert (st.first_index(), st.last_index()) == (6, 5)  # the log did not hold index 5
    with pytest.raises(ValueError, match="not newer"):
        st.snapshot_writer(SnapshotMeta(5, 2, conf))
    late = MemoryStorage(conf)
    slow = late.snapshot_writer(SnapshotMeta(2, 1, conf))
    late.append([Entry(1, i, 0, b"") for i in range(1, 4)])
    late.compact(SnapshotMeta(3, 1, conf), b"newer")
    with pytest.raises(ValueError, match="not newer"):
        slow.finish()  # overtaken while receiving
    assert late.snapshot_data() == b"newer"


def test_config_entry_after_the_snapshot_still_counts() -> None:
    c = Cluster(3, config=SNAP)
    leader = c.elect(1)
    write(c, leader, 5)
    c.compact(1)
    c.compact(2)
    c.compact(3)
    two = members([1, 2, 3, 4], learners=[4])
    leader.propose_config(two)
    c.run()
    assert c.storages[2].entries(c.storages[2].last_index(), c.storages[2].last_index() + 1)[
        0
    ].kind == CONFIG
    c.crash(2)
    c.start(2)
    assert c.nodes[2].cluster_config == two


def test_heartbeats_keep_a_receiving_follower_from_campaigning() -> None:
    c = Cluster(3, config=SNAP)
    leader = behind(c, n=60)
    c.drop = lambda m: is_chunk(m) and m.offset > 0  # the transfer stalls after chunk 0
    c.tick(40)
    assert leader.role is Role.LEADER and c.nodes[3].leader_id == 1
    assert not any(isinstance(m, AppendEntries) and m.entries and m.dst == 3
                   for m in c.sent[-50:])
    c.heal()
    c.tick(20)
    assert len(c.installed[3]) == 1
    assert_caught_up(c, 3)


def test_lost_appends_to_a_replicating_follower_then_compaction_lead_to_a_snapshot() -> None:
    """REPLICATE with a full window of lost appends, all of them compacted away since: the
    heartbeat must still expose the gap (it once passed with prev = 0, stalling forever)."""
    config = RaftConfig(election_ticks=10, heartbeat_ticks=2, max_inflight=2,
                        snapshot_chunk_bytes=64)
    c = Cluster(3, config=config)
    leader = c.elect(1)
    c.drop = lambda m: m.dst == 3  # node 3 vanishes (a kill -9), its appends are lost
    write(c, leader, 6)
    assert leader.progress(3).state is ProgressState.REPLICATE
    assert leader.progress(3).inflights.full()
    c.compact(1)
    c.heal()
    c.tick(10)
    assert len(c.installed[3]) == 1
    assert_caught_up(c, 3)


def test_a_partial_receive_without_chunks_is_abandoned_after_its_deadline() -> None:
    """The leader stops sending mid-transfer (gone, or no longer sending to us): after
    snapshot_receive_ticks without a chunk the follower discards the partial snapshot, and a
    later chunk that does not start at 0 is refused so the transfer restarts cleanly."""
    config = attrs.evolve(SNAP, election_ticks=100, snapshot_receive_ticks=30)
    c = Cluster(3, config=config)  # (a follower that campaigns discards it anyway)
    behind(c)
    c.hold = is_chunk
    c.tick(2)
    first, *_ = c.release()
    c.deliver(first)
    c.flush()
    assert c.writers[3].received == 64
    c.hold = lambda m: True  # from now on nothing reaches node 3 (or leaves it)
    node3 = c.nodes[3]
    for _ in range(config.snapshot_receive_ticks - 1):
        node3.tick()
        assert not node3.ready().snapshot_discard
    node3.tick()
    rd = node3.ready()
    assert rd.snapshot_discard
    node3.advance(rd)
    node3.step(attrs.evolve(first, offset=64, data=b"y" * 64))  # the rest of the old transfer
    (reply,) = [m for m in node3.ready().messages if isinstance(m, InstallSnapshotResponse)]
    assert reply.reject and reply.offset == 0
