"""The deterministic simulator: its parts on fake inputs, then whole seeded runs and the CLI."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.sim.faults import KINDS, Fault, FaultPlanner, View
from chaos.sim.history import COMMITTED, LOST, PENDING, History
from chaos.sim.invariants import MISSING, SafetyChecker, Violation
from chaos.sim.network import TICK, Network
from chaos.sim.storage import DiskImage, SimStorage
from wire.raft import NORMAL, ClusterConfig, Entry, HardState, Member

CONFIG = ClusterConfig((Member(1, "a"), Member(2, "b"), Member(3, "c")))


def E(index: int, term: int, data: bytes = b"", kind: int = NORMAL) -> Entry:
    return Entry(term=term, index=index, kind=kind, data=data or b"x%d.%d" % (index, term))


def log_terms(*terms: int):
    """term_at over a log whose entry i has terms[i-1] (index 0: term 0)."""

    def term_at(index: int) -> int | None:
        if index == 0:
            return 0
        return terms[index - 1] if index <= len(terms) else MISSING

    return term_at


class Msg:
    def __init__(self, src: int, dst: int, n: int = 0) -> None:
        self.src, self.dst, self.n, self.term = src, dst, n, 1


def drain(net: Network, until: int) -> list[Msg]:
    out = []
    for now in range(until):
        while (m := net.pop_due(now)) is not None:
            out.append(m)
    return out


# -- network -------------------------------------------------------------------------------


def test_network_delivers_after_latency_and_reorders() -> None:
    net = Network(random.Random(1), [1, 2])
    net.model.min_latency, net.model.max_latency = 1, 30
    for i in range(50):
        net.send(0, Msg(1, 2, i))
    assert net.pop_due(0) is None  # nothing arrives with zero latency
    got = [m.n for m in drain(net, 31)]
    assert sorted(got) == list(range(50))
    assert got != list(range(50))  # random latencies reorder


def test_network_partitions_cut_both_ways_and_one_way_cuts_one() -> None:
    net = Network(random.Random(2), [1, 2, 3])
    net.partition([[1], [2, 3]])
    for src, dst in [(1, 2), (2, 1), (2, 3), (3, 2), (1, 3)]:
        net.send(0, Msg(src, dst))
    assert {(m.src, m.dst) for m in drain(net, 100)} == {(2, 3), (3, 2)}
    net.heal(0)
    net.one_way([1], [2, 3])
    for src, dst in [(1, 2), (2, 1), (3, 1), (1, 3)]:
        net.send(0, Msg(src, dst))
    assert {(m.src, m.dst) for m in drain(net, 100)} == {(2, 1), (3, 1)}


def test_network_cut_mid_flight_loses_the_message() -> None:
    net = Network(random.Random(3), [1, 2])
    net.send(0, Msg(1, 2))
    net.isolate(2)
    assert drain(net, 100) == []
    assert net.stats.cut == 1


def test_network_holding_cut_delivers_after_the_heal() -> None:
    net = Network(random.Random(5), [1, 2, 3])
    net.isolate(1, hold=True)
    for src, dst in [(1, 2), (3, 1), (2, 3)]:
        net.send(0, Msg(src, dst))
    assert {(m.src, m.dst) for m in drain(net, 100)} == {(2, 3)}
    assert net.in_flight() == 2
    net.heal(100)
    assert {(m.src, m.dst) for m in drain(net, 300)} == {(1, 2), (3, 1)}


def test_network_drop_dup_and_spikes() -> None:
    net = Network(random.Random(4), [1, 2])
    net.model.drop, net.model.dup = 0.3, 0.3
    for i in range(1000):
        net.send(0, Msg(1, 2, i))
    got = [m.n for m in drain(net, net.model.spike_max + 100)]  # late duplicates too
    assert 0 < net.stats.dropped < 1000 and net.stats.duplicated > 0
    assert len(got) == 1000 + net.stats.duplicated - net.stats.dropped
    assert len(set(got)) < len(got)  # duplicates arrive
    net.model.drop = net.model.dup = 0.0
    net.model.spike = 1.0
    net.send(0, Msg(1, 2))
    assert drain(net, TICK) == []  # a spike delays by at least a tick
    assert len(drain(net, net.model.spike_max + 100)) == 1


def test_network_is_deterministic() -> None:
    def run(seed: int) -> list[int]:
        net = Network(random.Random(seed), [1, 2, 3])
        net.model.drop, net.model.dup, net.model.spike = 0.2, 0.2, 0.1
        for i in range(200):
            net.send(i, Msg(1 + i % 3, 1 + (i + 1) % 3, i))
        return [m.n for m in drain(net, 2000)]

    assert run(7) == run(7)
    assert run(7) != run(8)


# -- disk ------------------------------------------------------------------------------------


class FakeMemory:
    """A minimal live log for SimStorage (the real one is raftkv.raft.MemoryStorage)."""

    def __init__(self, config: ClusterConfig) -> None:
        self.img = DiskImage.bootstrap(config)

    def first_index(self) -> int:
        return self.img.snapshot.index + 1

    def last_index(self) -> int:
        return self.img.last_index()

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        return self.img.entries[lo - 1 : hi - 1]

    def term(self, index: int) -> int:
        return self.img.term(index)

    def append(self, entries: list[Entry]) -> None:
        self.img.append(entries)

    def set_hard_state(self, hs: HardState) -> None:
        self.img.hard_state = hs


def test_disk_keeps_only_synced_writes_and_a_prefix_of_the_rest() -> None:
    image = DiskImage.bootstrap(CONFIG)
    disk = SimStorage(image, FakeMemory)
    disk.append([E(1, 1), E(2, 1)])
    disk.set_hard_state(HardState(1, 1, 0))
    disk.sync()
    assert image.last_index() == 2 and image.hard_state == HardState(1, 1, 0)
    disk.append([E(3, 2), E(4, 2), E(5, 2)])
    disk.set_hard_state(HardState(2, 2, 2))
    assert image.last_index() == 2  # not durable before sync
    outcomes = set()
    for seed in range(200):
        img = image.copy()
        d = SimStorage(img, FakeMemory)
        d.pending = list(disk.pending)
        d.crash(random.Random(seed))
        outcomes.add((img.last_index(), img.hard_state.term))
    # Any prefix of the entries may survive, and the hard state only after all of them.
    assert outcomes == {(2, 1), (3, 1), (4, 1), (5, 1), (5, 2)}
    restarted = SimStorage(image, FakeMemory)
    assert restarted.last_index() == 2


def test_disk_truncates_on_append_and_rejects_gaps() -> None:
    image = DiskImage.bootstrap(CONFIG)
    image.append([E(1, 1), E(2, 1), E(3, 1)])
    image.append([E(2, 2)])
    assert [e.term for e in image.entries] == [1, 2]
    with pytest.raises(Exception, match="does not fit"):
        image.append([E(5, 2)])


# -- safety checks --------------------------------------------------------------------------


def test_one_leader_per_term() -> None:
    c = SafetyChecker()
    assert c.leader(1, 3, log_terms()) is True
    assert c.leader(1, 3, log_terms()) is False
    assert c.leader(2, 4, log_terms()) is True
    with pytest.raises(Violation, match="Election Safety"):
        c.leader(3, 3, log_terms())


def test_leader_completeness() -> None:
    c = SafetyChecker()
    c.incarnation(1, 1, 0)
    c.commit(1, 1, 2, log_terms(1, 1, 2), term=2)
    assert c.committed == {1: 1, 2: 1}
    c.leader(2, 3, log_terms(1, 1))
    with pytest.raises(Violation, match=r"Leader Completeness.*lacks"):
        c.leader(3, 4, log_terms(1))
    with pytest.raises(Violation, match=r"Leader Completeness.*has term 3"):
        c.leader(3, 5, log_terms(1, 3))


def test_leader_append_only_and_term_covers_log() -> None:
    c = SafetyChecker()
    c.appending(1, [E(1, 1), E(2, 1)], 0, log_terms(), 0, leading=True)
    c.appending(2, [E(1, 1)], 1, log_terms(1), 0)  # a follower may overwrite from a conflict
    with pytest.raises(Violation, match=r"Leader Append-Only.*from 2 over its log ending at 2"):
        c.appending(1, [E(2, 1)], 2, log_terms(1, 1), 0, leading=True)
    c.term_covers_log(1, 3, 3)
    with pytest.raises(Violation, match=r"term below log: node 6 is at term 8 .* term 9"):
        c.term_covers_log(6, 8, 9)


def test_leader_completeness_binds_only_leaders_of_later_terms() -> None:
    """Seed 7555: a term-15 candidate's late votes made it leader after the leader of term 16
    had committed more. Raft promises the term-16 entries only to leaders of terms > 16."""
    c = SafetyChecker()
    c.incarnation(1, 1, 0)
    c.commit(1, 1, 2, log_terms(1, 1), term=2)  # entries 1-2 committed in term 2
    c.commit(1, 1, 4, log_terms(1, 1, 1, 4), term=4)  # 3-4 committed in term 4
    assert c.commit_term == {1: 2, 2: 2, 3: 4, 4: 4}
    c.leader(2, 3, log_terms(1, 1))  # lacks 3-4: committed after its term, allowed
    with pytest.raises(Violation, match=r"Leader Completeness.*entry 2 .*lacks"):
        c.leader(3, 4, log_terms(1))  # term 4 > 2: needs entry 2
    with pytest.raises(Violation, match=r"Leader Completeness.*entry 3 .*lacks"):
        c.leader(4, 5, log_terms(1, 1))  # term 5 > 4: needs entries 3-4 too
    c.incarnation(2, 1, 0)
    c.commit(2, 1, 4, log_terms(1, 1, 1, 4), term=6)  # a later report does not raise it
    assert c.commit_term[3] == 4


def test_commit_safety_and_monotonic_commit_per_incarnation() -> None:
    c = SafetyChecker()
    c.incarnation(1, 1, 0)
    c.commit(1, 1, 2, log_terms(1, 2), term=2)
    with pytest.raises(Violation, match="commit monotonic"):
        c.commit(1, 1, 1, log_terms(1, 2), term=2)
    c.incarnation(1, 2, 0)
    c.commit(1, 2, 1, log_terms(1, 2), term=2)  # a restart may come back lower
    c.incarnation(2, 1, 0)
    with pytest.raises(Violation, match="commit safety"):
        c.commit(2, 1, 2, log_terms(1, 3), term=3)
    with pytest.raises(Violation, match="past its log"):
        c.commit(2, 1, 5, log_terms(1, 2), term=2)


def test_log_matching_checked_per_entry() -> None:
    c = SafetyChecker()
    c.appending(1, [E(1, 1), E(2, 1)], 0, log_terms(), 0)
    c.appending(2, [E(1, 1)], 0, log_terms(), 0)
    with pytest.raises(Violation, match=r"Log Matching.*contents"):
        c.appending(3, [E(1, 1, b"other")], 0, log_terms(), 0)
    # Same (index, term) after a different previous term: the logs differ before it.
    c.appending(4, [E(1, 2), E(2, 2)], 0, log_terms(), 0)
    with pytest.raises(Violation, match=r"Log Matching.*after an entry of term"):
        c.appending(5, [E(2, 2)], 1, log_terms(1), 0)
    with pytest.raises(Violation, match="log order"):
        c.appending(6, [E(3, 1)], 2, log_terms(2, 2), 0)


def test_truncation_only_from_a_conflict_and_never_committed() -> None:
    c = SafetyChecker()
    c.appending(1, [E(1, 1), E(2, 1), E(3, 1)], 0, log_terms(), 0)
    log = log_terms(1, 1, 1)
    c.appending(1, [E(2, 1), E(3, 1)], 3, log, 0)  # a duplicate batch: harmless
    with pytest.raises(Violation, match=r"drops entries 3..3"):
        c.appending(1, [E(2, 1)], 3, log, 0)  # matching, yet the suffix would go
    c.appending(1, [E(2, 1), E(3, 2)], 3, log, 2)  # conflict above commit: fine
    with pytest.raises(Violation, match="at or below its own commit"):
        c.appending(1, [E(2, 2)], 3, log, 2)
    c.incarnation(2, 1, 0)
    c.commit(2, 1, 2, log, term=1)
    # Seed 50000251: a node that never acknowledged a committed entry was in no quorum for
    # it, and may take a stale leader's entry there; one that acknowledged it may not.
    c.appending(3, [E(2, 2)], 3, log, 0)
    c.leader(9, 1, log)
    c.append_ack(1, 1, 9, match=3)
    with pytest.raises(Violation, match=r"overwrites committed entry 2 .*which it had ack"):
        c.appending(1, [E(2, 2)], 3, log, 0)
    with pytest.raises(Violation, match="log append"):
        c.appending(1, [E(5, 1)], 3, log, 0)


def test_only_an_ack_in_the_committing_term_vouches_for_a_committed_entry() -> None:
    # Seed 70010502 (7-node sweep): node 7 acknowledged entry 72 (term 4) to the term-4
    # leader, which lost it in a crash; a term-10 leader committed it without node 7; cut
    # off at term 8, node 7 then took a delayed term-8 append over it. Its term-4 ack was in
    # no quorum of the term-10 commit: not a violation. An ack in term 10 would have been.
    log = log_terms(1, 4, 9)
    for acked_in, violation in ((4, False), (10, True)):
        c = SafetyChecker()
        c.leader(6, 4, log_terms(1))
        c.leader(2, 10, log)
        c.append_ack(7, acked_in, {4: 6, 10: 2}[acked_in], match=2)
        c.incarnation(2, 1, 0)
        c.commit(2, 1, 3, log, leading=10, term=10)
        if violation:
            with pytest.raises(Violation, match=r"committed entry 2 .*in term 10"):
                c.appending(7, [E(2, 8)], 3, log, 0)
        else:
            c.appending(7, [E(2, 8)], 3, log, 0)


def test_state_machine_safety_and_apply_order() -> None:
    c = SafetyChecker()
    for node in (1, 2, 3):
        c.incarnation(node, 1, 0)
    c.apply(1, 1, E(1, 1), 1)
    c.apply(2, 1, E(1, 1), 1)
    with pytest.raises(Violation, match="State Machine Safety"):
        c.apply(3, 1, E(1, 2), 1)
    with pytest.raises(Violation, match="apply order"):
        c.apply(1, 1, E(3, 1), 3)
    with pytest.raises(Violation, match="beyond commit"):
        c.apply(2, 1, E(2, 1), 1)


def test_commit_rule_leaders_commit_only_their_own_term() -> None:
    c = SafetyChecker()
    c.incarnation(1, 1, 0)
    log = log_terms(1, 1, 2, 3, 3)
    c.commit(1, 1, 2, log, term=3)  # as a follower, previous terms are fine
    c.commit(1, 1, 2, log, leading=3, term=3)  # became leader of term 3 with commit 2
    with pytest.raises(Violation, match="commit rule"):
        c.commit(1, 1, 3, log, leading=3, term=3)  # moved onto the term-2 entry
    c.incarnation(2, 1, 0)
    c.commit(2, 1, 2, log, leading=3, term=3)
    c.commit(2, 1, 5, log, leading=3, term=3)  # onto its own term: 3 commits underneath


def test_appends_acknowledged_only_to_the_leader_of_the_term() -> None:
    c = SafetyChecker()
    c.leader(1, 2, log_terms())
    c.append_ack(3, 2, 1)
    with pytest.raises(Violation, match="append acknowledgement"):
        c.append_ack(3, 2, 2)
    with pytest.raises(Violation, match="whose leader is nobody"):
        c.append_ack(3, 3, 1)


def test_double_vote_across_restarts() -> None:
    c = SafetyChecker()
    c.vote(1, 5, 2)
    c.vote(1, 5, 2)
    c.vote(1, 6, 3)
    with pytest.raises(Violation, match="vote safety"):
        c.vote(1, 5, 3)


# -- the driver's persistence checks, on a scripted core ----------------------------------


class ScriptedCore:
    """Stands in for RaftCore: hands out the Readies a test queues, nothing else."""

    def __init__(self, node_id: int, storage: object, rng: random.Random) -> None:
        from raftkv.raft import Role

        self.id, self.role, self.term, self.commit_index, self.leader_id = (
            node_id, Role.FOLLOWER, 0, 0, 0,
        )
        self.last_index = self.last_term = 0
        self.queue: list = []

    def has_ready(self) -> bool:
        return bool(self.queue)

    def ready(self):
        return self.queue.pop(0)

    def advance(self, rd: object) -> None:
        pass

    def step(self, msg: object) -> None:
        pass

    def tick(self) -> None:
        pass


def scripted_cluster():
    from chaos.sim.cluster import Cluster

    cluster = Cluster(random.Random(1), [1, 2, 3], ScriptedCore)
    cluster.checker.leader(1, 1, log_terms())
    return cluster, cluster.nodes[2]


def test_driver_rejects_messages_sent_before_their_state_is_durable() -> None:
    from raftkv.raft import Ready
    from wire.raft import AppendEntriesResponse, RequestVoteResponse

    cluster, node = scripted_cluster()
    node.raft.queue.append(Ready(hard_state=HardState(1, 0, 0), must_sync=False,
                                 messages=[AppendEntriesResponse(1, 2, 1, False, 0)]))
    with pytest.raises(Violation, match="in term 1 but its durable term is 0"):
        cluster._drain(node)

    cluster, node = scripted_cluster()
    node.raft.queue.append(Ready(hard_state=HardState(1, 0, 0), must_sync=True))
    node.raft.queue.append(Ready(entries=[E(1, 1)], must_sync=False,
                                 messages=[AppendEntriesResponse(1, 2, 1, True, 1)]))
    with pytest.raises(Violation, match="acknowledges its log up to 1 before"):
        cluster._drain(node)

    cluster, node = scripted_cluster()
    node.raft.queue.append(Ready(hard_state=HardState(1, 0, 0), must_sync=True))
    node.raft.queue.append(Ready(hard_state=HardState(1, 3, 0), must_sync=False,
                                 messages=[RequestVoteResponse(1, 2, 3, True)]))
    with pytest.raises(Violation, match="grants its term-1 vote to 3 but its durable vote is 0"):
        cluster._drain(node)

    cluster, node = scripted_cluster()  # the same, synced: fine
    node.raft.queue.append(Ready(hard_state=HardState(1, 3, 0), must_sync=True,
                                 messages=[RequestVoteResponse(1, 2, 3, True)]))
    node.raft.queue.append(Ready(entries=[E(1, 1)], must_sync=True,
                                 messages=[AppendEntriesResponse(1, 2, 1, True, 1)]))
    cluster._drain(node)
    assert cluster.net.in_flight() == 2 and cluster.checker.votes == {(2, 1): 3}


def test_driver_torn_crash_keeps_a_prefix_and_sends_nothing() -> None:
    from raftkv.raft import Ready
    from wire.raft import AppendEntriesResponse

    kept = set()
    for seed in range(40):
        cluster, node = scripted_cluster()
        cluster.disk_rng.seed(seed)
        node.torn_armed = True
        node.raft.queue.append(Ready(entries=[E(1, 1), E(2, 1), E(3, 1)],
                                     hard_state=HardState(1, 1, 0), must_sync=True,
                                     messages=[AppendEntriesResponse(1, 2, 1, True, 3)]))
        cluster._drain(node)
        assert not node.alive and cluster.net.in_flight() == 0
        kept.add((node.image.last_index(), node.image.hard_state.term))
    assert kept == {(0, 0), (1, 0), (2, 0), (3, 0), (3, 1)}


def test_a_message_storm_fails_the_run() -> None:
    from chaos.sim.runner import STORM_PER_NODE, run_tick
    from raftkv.raft import Ready
    from wire.raft import AppendEntries

    cluster, node = scripted_cluster()
    node.phase = 0
    cluster._by_phase = [[node]] + [[] for _ in range(9)]
    node.raft.tick = lambda: node.raft.queue.append(
        Ready(messages=[AppendEntries(0, 2, 1, 0, 0, (), 0)] * (3 * STORM_PER_NODE + 1))
    )
    with pytest.raises(Violation, match="message storm"):
        run_tick(cluster, 0)


# -- client history ----------------------------------------------------------------------------


def test_proposal_fates() -> None:
    h = History()
    h.proposed(1, b"a", 1, 1, 0)
    h.proposed(1, b"b", 2, 1, 0)
    h.proposed(2, b"c", 2, 2, 0)
    h.proposed(2, b"d", 5, 1, 0)
    h.applied(E(1, 1, b"a"))
    h.applied(E(2, 2, b"c"))
    h.applied(E(2, 2, b"c"))  # another node applying it again changes nothing
    fates = {v: p.status for v, (p,) in h.proposals.items()}
    assert fates == {b"a": COMMITTED, b"b": LOST, b"c": COMMITTED, b"d": PENDING}
    assert h.unresolved() == []  # term 2 is committed before index 5: term 1 can't come back
    assert h.proposals[b"d"][0].status == LOST
    h.proposed(2, b"e", 3, 2, 0)
    assert [p.value for p in h.unresolved()] == [b"e"]
    with pytest.raises(Violation, match="proposal placement"):
        h.applied(E(3, 2, b"a"))
    # The KV layer's entries may repeat (a retried command stamped alike): each value maps
    # to all its proposals, and an entry is placed if any of them is at its (index, term).
    h.proposed(2, b"a", 4, 2, 0)
    h.applied(E(3, 2, b"e"))
    h.applied(E(4, 2, b"a"))
    assert [p.status for p in h.proposals[b"a"]] == [COMMITTED, COMMITTED]


def test_reads_must_cover_everything_committed_before_them() -> None:
    h = History()
    h.applied(E(1, 1, b"a"))
    h.applied(E(2, 1, b"b"))
    h.read_requested(1, 1, b"r1", now=0, frontier=2)
    assert h.read_state(1, 1, b"r1", 2, applied=1) is False  # wait for apply
    assert h.ready_to_serve(1, 1, 1) == []
    assert h.ready_to_serve(1, 1, 2) == [b"r1"]
    h.serve(b"r1", 2, b"b")
    h.read_requested(2, 1, b"r2", now=0, frontier=2)
    with pytest.raises(Violation, match=r"linearizable read.*read index 1"):
        h.read_state(2, 1, b"r2", 1, applied=2)
    h.read_requested(3, 1, b"r3", now=0, frontier=1)
    assert h.read_state(3, 1, b"r3", 1, applied=2) is True
    with pytest.raises(Violation, match="served b'a' at apply 2"):
        h.serve(b"r3", 2, b"a")
    assert h.read_state(3, 1, b"unknown", 1, applied=2) is False
    assert h.stats.stray_read_states == 1


# -- fault planner ---------------------------------------------------------------------------


def test_planner_draws_every_kind_and_schedules_their_end() -> None:
    seen: dict[str, int] = {}
    for seed in range(30):
        planner = FaultPlanner(random.Random(seed), [1, 2, 3, 4, 5], intensity=3.0)
        crashed: set[int] = set()
        for tick in range(400):
            for f in planner.plan(tick, View((1, 2, 3, 4, 5), tuple(sorted(crashed)), 1)):
                seen[f.kind] = seen.get(f.kind, 0) + 1
                if f.kind == "crash":
                    assert f.nodes[0] not in crashed
                    crashed.add(f.nodes[0])
                elif f.kind == "restart":
                    crashed.discard(f.nodes[0])
                elif f.kind == "partition":
                    assert sorted(f.groups[0] + f.groups[1]) == [1, 2, 3, 4, 5]
    assert set(KINDS) | {"restart", "calm"} <= set(seen)
    assert seen["restart"] >= seen["crash"] + seen["torn_crash"] - 30 * 5


def test_planner_is_deterministic() -> None:
    def faults(seed: int) -> list[Fault]:
        planner = FaultPlanner(random.Random(seed), [1, 2, 3])
        return [f for t in range(500) for f in planner.plan(t, View((1, 2, 3), (), 2))]

    assert faults(11) == faults(11)
    assert faults(11) != faults(12)


# -- whole runs ------------------------------------------------------------------------------

# These need the consensus core (raftkv.raft.RaftCore).

UNIT_SEEDS = 200


def test_same_seed_same_run_bit_for_bit() -> None:
    from chaos.sim.runner import SimParams, run_seed

    params = SimParams(digest=True)
    for seed in (3, 4):
        a, b = run_seed(seed, params), run_seed(seed, params)
        assert a.digest and a.digest == b.digest
        assert a == b
    assert run_seed(3, params).digest != run_seed(4, params).digest


def test_results_do_not_depend_on_jobs() -> None:
    from chaos.sim.runner import SimParams, run_seeds

    params = SimParams(ticks=150, digest=True)
    one = list(run_seeds(range(8), params, jobs=1))
    two = list(run_seeds(range(8), params, jobs=2))
    assert one == two


def test_unit_quota_of_seeds_holds() -> None:
    from chaos.sim.report import describe_failure
    from chaos.sim.runner import SimParams, Totals, run_seed

    totals = Totals()
    sizes = set()
    for seed in range(UNIT_SEEDS):
        r = run_seed(seed, SimParams(ticks=200))
        assert r.ok, "\n".join(describe_failure(r))
        totals.add(r)
        sizes.add(r.nodes)
    assert sizes == {3, 5, 7}
    # The runs did real work: elections, commits, reads and every kind of fault.
    assert totals.elections > UNIT_SEEDS and totals.commits > 20 * UNIT_SEEDS
    assert totals.reads > UNIT_SEEDS
    assert set(totals.faults) == set(KINDS)


# -- core bugs the simulator found: their seeds stay as regression tests ------------------


@pytest.mark.parametrize("seed", [566, 771, 1217, 1674, 1710, 1714, 1881, 1957])
def test_core_regression_no_heartbeat_storm(seed: int) -> None:
    # A leader re-sent a heartbeat on every reply of a follower whose match was compacted
    # (prev_index 0 never advanced sent_commit): a message storm, caught by the sim.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(seed, SimParams())
    assert found.ok, f"{found.prop}: {found.message}"


@pytest.mark.parametrize("seed", [6392, 9188, 9607])
def test_core_regression_no_probe_storm(seed: int) -> None:
    # A leader answered every reply that moved nothing (late or duplicated) with a new
    # probe, so on a duplicating network the messages in flight multiplied (20,000-seed
    # run). Now a stale reply sends nothing; a lost probe goes again after a heartbeat.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(seed, SimParams())
    assert found.ok, f"{found.prop}: {found.message}"


def test_core_regression_no_stale_read_from_an_old_terms_round_number() -> None:
    # Seed 8706 (7 nodes): replies to a re-elected leader's AppendEntries of an earlier term
    # echoed that term's read round (17, 21) and counted as acks of its new rounds (1, 2):
    # a minority leader served a stale read.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(8706, SimParams())
    assert found.ok, f"{found.prop}: {found.message}"
    assert found.reads > 10


def test_core_regression_restart_below_the_term_of_its_own_log() -> None:
    # Seed 9100594 (5 nodes): a torn crash kept a follower's term-9 entry but not the hard
    # state raising its term to 9; restarted at term 8, it took a stale term-8 leader's
    # append over the committed entry. The core now restarts in the last entry's term.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(9100594, SimParams(nodes=5))
    assert found.ok, f"{found.prop}: {found.message}"


def test_core_regression_stale_vote_requests_are_answered() -> None:
    # Seed 30002979 (3 nodes, PreVote off): after the leader removed itself, the one voter
    # that could elect the remaining candidate ignored its vote requests of older terms and
    # the candidate stayed one term behind for good: no leader after the heal.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(30002979, SimParams(nodes=3))
    assert found.ok, f"{found.prop}: {found.message}"


def test_core_regression_a_candidate_that_cannot_win_yields_to_one_that_can() -> None:
    # Seed 50010599 (5 nodes, PreVote off, sweep): divergent uncommitted configurations left
    # one candidate that could never win and one that needed its vote; the first always
    # campaigned just before the second and rejected it every term. No leader after the heal.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(50010599, SimParams(nodes=5))
    assert found.ok, f"{found.prop}: {found.message}"


def test_core_regression_a_queued_ack_of_truncated_entries_is_dropped() -> None:
    # Seed 1883 (5 nodes, the CLI's default draws: slow writes and the KV layer with --txn):
    # a learner queued its ack of term-2 entries up to 247, a term-3 append truncated them
    # from 244 before they were written, and the ack left after the next fsync. The core
    # now drops queued acks at a truncation (tests/raft/test_raft_early.py).
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(1883, SimParams(nodes=5, ttl=None, sessions=None, slow_writes=None,
                                     txn=None))
    assert found.ok, f"{found.prop}: {found.message}"


def test_checker_regression_an_ack_in_an_earlier_term_does_not_vouch() -> None:
    # Seed 70010502 (7 nodes, sweep): see test_only_an_ack_in_the_committing_term_vouches...
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(70010502, SimParams(nodes=7))
    assert found.ok, f"{found.prop}: {found.message}"


@pytest.mark.parametrize("seed", [50000251, 50011825])
def test_checker_regression_an_unacknowledged_copy_of_a_committed_entry_may_go(
        seed: int) -> None:
    # Seed 50000251 (5 nodes, sweep): a node restarted at term 1 took a delayed term-2
    # append over its copy of entry 72, committed meanwhile by a term-3 leader without it.
    # It had acknowledged nothing in term 3, so it was in no quorum: not a violation.
    # Seed 50011825: the same with entry 51.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(seed, SimParams(nodes=5))
    assert found.ok, f"{found.prop}: {found.message}"


def test_heal_keeps_a_node_whose_config_entry_is_still_in_flight() -> None:
    # Seed 30005386: the leader sent "add learner 5" before its own fsync and crashed (the
    # entry lost from its log); the heal saw 5 in no log and retired it, then the in-flight
    # entry reached a follower, committed, and the cluster could never settle without 5.
    # A simulator error, not a core one: the heal now counts in-flight CONFIG entries too.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(30005386, SimParams(nodes=3))
    assert found.ok, f"{found.prop}: {found.message}"


@pytest.mark.parametrize("seed", [10940, 16648])
def test_liveness_bound_allows_a_slow_but_steady_catch_up(seed: int) -> None:
    # One entry per round trip (max_inflight=1, one-entry batches) and a voter ~450 entries
    # behind at the heal: commits wait for it, and it caught up steadily yet took longer
    # than the fixed settle bound. The bound now grows with the backlog (4 ticks/entry).
    from chaos.sim.runner import SETTLE_BOUND, SimParams, run_seed

    found = run_seed(seed, SimParams())
    assert found.ok, f"{found.prop}: {found.message}"
    assert found.ticks > 500 + SETTLE_BOUND  # it did need more than the fixed bound


def test_checker_regression_late_vote_winner_of_an_older_term() -> None:
    # Seed 7555: vote replies delayed past a newer leader's commits made a term-15 candidate
    # leader; the checker wrongly asked it for a term-16 entry (a false alarm, not a core bug).
    # Later core changes alter the seed's schedule; the unit test above pins the scenario.
    from chaos.sim.runner import SimParams, run_seed

    found = run_seed(7555, SimParams())
    assert found.ok, f"{found.prop}: {found.message}"


# -- the CLI ------------------------------------------------------------------------------------


def cli(*args: str):
    from click.testing import CliRunner

    from chaos.cli import main

    return CliRunner().invoke(main, ["sim", *args])


SUMMARY = re.compile(
    r"^sim (OK|FAILED): seeds=(\d+) held=(\d+) failed=(\d+) ticks=\d+ steps=\d+ "
    r"elections=\d+ commits=\d+ lost=\d+ reads=\d+ faults=\S+ wall=[\d.]+s$"
)


def test_cli_runs_seeds_and_ends_with_the_summary() -> None:
    out = cli("--seeds", "4", "--seed-start", "10", "--steps", "100")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("sim: 4 seeds from 10, 3/5/7 nodes by seed, 100 fault ticks")
    assert lines[1] == ("sim: checking Election Safety, Leader Append-Only, Log Matching, "
                        "Leader Completeness, State Machine Safety, and the rules behind them")
    m = SUMMARY.match(lines[-1])
    assert m and m.group(1, 2, 3, 4) == ("OK", "4", "4", "0"), lines[-1]
    quiet = cli("--seeds", "2", "--nodes", "3", "--steps", "50", "--quiet")
    assert quiet.exit_code == 0 and len(quiet.output.splitlines()) == 1


def test_cli_failing_seed_prints_property_trace_and_reproducer() -> None:
    out = cli("--seeds", "2", "--steps", "150", "--bug", "skip_persist_vote")
    assert out.exit_code == 1
    lines = out.output.splitlines()
    fail = next(i for i, line in enumerate(lines) if line.startswith("FAIL seed "))
    assert re.match(r"FAIL seed \d+ \(\d nodes\): \S[^:]*: .+", lines[fail])
    assert "last " in lines[fail + 1] and lines[fail + 2].startswith("    t=")
    repro = next(line for line in lines if "reproduce:" in line).split("reproduce: ")[1]
    assert re.fullmatch(
        r"raftkv-chaos sim --seeds 1 --seed-start \d+ --nodes \d --steps 150 "
        r"--bug skip_persist_vote",
        repro,
    )
    m = SUMMARY.match(lines[-1])
    assert m and m.group(1) == "FAILED"
    again = cli(*repro.split()[2:], "--quiet")
    assert again.exit_code == 1
    assert lines[fail] in again.output.splitlines()  # same seed, same violation


def test_cli_rejects_bad_usage() -> None:
    assert cli("--seeds", "0").exit_code == 2
    assert cli("--bug", "no_such_bug", "--seeds", "1").exit_code != 0


@pytest.mark.timeout(1800)  # ~4-6 min on an idle 2-core machine; generous for a busy one
def test_ci_quota_of_seeds_via_the_console_script() -> None:
    """What CI promises: 2,000 seeds, 3- and 5-node clusters mixed, on two processes."""
    script = Path(sys.executable).parent / "raftkv-chaos"
    proc = subprocess.Popen(
        [str(script), "sim", "--seeds", "2000", "--jobs", "2", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # on a timeout, kill the workers too, not only the parent
    )
    try:
        stdout, stderr = proc.communicate(timeout=1750)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    last = stdout.splitlines()[-1]
    assert proc.returncode == 0, stdout[-5000:] + stderr[-2000:]
    m = SUMMARY.match(last)
    assert m and m.group(1, 2, 3, 4) == ("OK", "2000", "2000", "0"), last
