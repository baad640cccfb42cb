"""A deterministic in-process harness for the consensus core: nodes in a dict, one message
queue stepped by hand, a ``drop`` filter and partitions. Readies are handled exactly as the
runtime contract says (snapshot chunks, persist, sync, send, apply, advance); messages are
round-tripped through the wire codec so every message the core emits is known to encode.

The "state machine" is the list of applied entries; ``compact(i)`` snapshots it (msgpack of
the entries) into node i's storage, and an installed snapshot restores it, so tests can
compare what every node applied, however it got there."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from raftkv.raft import MemoryStorage, RaftConfig, RaftCore, ReadState, Ready, Role, persist
from raftkv.raft.membership import decode_config
from raftkv.raft.memory_storage import MemorySnapshotWriter
from wire import record as wire_record
from wire.raft import (
    CONFIG,
    AppendEntries,
    ClusterConfig,
    Entry,
    HardState,
    Member,
    SnapshotMeta,
)

FAST = RaftConfig(election_ticks=10, heartbeat_ticks=2)


def members(ids: Iterable[int], learners: Iterable[int] = ()) -> ClusterConfig:
    ls = set(learners)
    return ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}", i in ls) for i in ids))


def entries(*terms: int, start: int = 1) -> list[Entry]:
    """Entries with the given terms at consecutive indexes from ``start``."""
    return [Entry(t, start + n, 0, b"") for n, t in enumerate(terms)]


def encode_applied(applied: list[Entry]) -> bytes:
    return msgpack.packb([[e.term, e.index, e.kind, e.data] for e in applied])


def decode_applied(data: bytes) -> list[Entry]:
    return [Entry(*e) for e in msgpack.unpackb(data)] if data else []


class Cluster:
    def __init__(
        self,
        n: int = 3,
        *,
        config: RaftConfig = FAST,
        configs: dict[int, RaftConfig] | None = None,
        learners: Iterable[int] = (),
        logs: dict[int, list[Entry]] | None = None,
        hard_states: dict[int, HardState] | None = None,
        seed: int = 0,
    ) -> None:
        self.ids = list(range(1, n + 1))
        self.membership = members(self.ids, learners)
        self.configs = {i: (configs or {}).get(i, config) for i in self.ids}
        self.seed = seed
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RaftCore] = {}
        self.queue: list[Any] = []
        self.sent: list[Any] = []  # every message ever handed to the network
        self.applied: dict[int, list[Entry]] = {i: [] for i in self.ids}
        self.read_states: dict[int, list[ReadState]] = {i: [] for i in self.ids}
        self.failed_reads: dict[int, list[bytes]] = {i: [] for i in self.ids}
        self.readies: dict[int, list[Ready]] = {i: [] for i in self.ids}
        # The state machine: what each node applied since its snapshot, on top of it.
        self.sm: dict[int, list[Entry]] = {i: [] for i in self.ids}
        self.writers: dict[int, MemorySnapshotWriter] = {}
        self.installed: dict[int, list[SnapshotMeta]] = {i: [] for i in self.ids}
        self.cut: set[frozenset[int]] = set()
        self.down: set[int] = set()
        self.drop: Callable[[Any], bool] = lambda m: False
        # Messages matching ``hold`` are parked in ``held`` instead of being delivered.
        self.hold: Callable[[Any], bool] = lambda m: False
        self.held: list[Any] = []
        for i in self.ids:
            st = MemoryStorage(self.membership)
            if logs and i in logs:
                st.append(logs[i])
            if hard_states and i in hard_states:
                st.set_hard_state(hard_states[i])
            st.sync()
            self.storages[i] = st
            self.start(i)

    # -- nodes ------------------------------------------------------------------------------
    def start(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + i + 7919 * len(self.readies[i]))
        self.nodes[i] = RaftCore(i, self.storages[i], self.configs[i], rng)
        self.down.discard(i)

    def crash(self, i: int) -> None:
        """Stop node i, losing whatever it had not synced; drop its queued messages."""
        self.storages[i].crash()
        self.writers.pop(i, None)  # a half-received snapshot dies with the process
        self.sm[i] = decode_applied(self.storages[i].snapshot_data())
        self.down.add(i)
        self.queue = [m for m in self.queue if m.dst != i]

    def leaders(self) -> list[int]:
        return [i for i, n in self.nodes.items() if i not in self.down and n.role is Role.LEADER]

    def leader(self) -> RaftCore:
        (lead,) = self.leaders()
        return self.nodes[lead]

    # -- the runtime loop -------------------------------------------------------------------
    def handle(self, i: int) -> Ready | None:
        node, st = self.nodes[i], self.storages[i]
        if i in self.down or not node.has_ready():
            return None
        rd = node.ready()
        self.write_snapshot(i, rd)
        persist(st, rd)
        if rd.send_before_sync:
            self._send(rd.messages)
        if rd.must_sync:
            st.sync()
        if not rd.send_before_sync:
            self._send(rd.messages)
        self.applied[i].extend(rd.committed_entries)
        self.sm[i].extend(rd.committed_entries)
        self.read_states[i].extend(rd.read_states)
        self.failed_reads[i].extend(rd.failed_reads)
        self.readies[i].append(rd)
        node.advance(rd)
        return rd

    def _send(self, messages: list[Any]) -> None:
        for m in messages:
            m2 = wire_record.decode(wire_record.encode(m))
            assert m2 == m, m
            self.sent.append(m)
            self.queue.append(m)

    def write_snapshot(self, i: int, rd: Ready) -> None:
        st = self.storages[i]
        if rd.snapshot_discard and i in self.writers:
            self.writers.pop(i).abort()
        for chunk in rd.snapshot_chunks:
            w = self.writers.get(i)
            if w is None or chunk.offset == 0 or w.meta != chunk.meta:
                if w is not None:
                    w.abort()
                w = self.writers[i] = st.snapshot_writer(chunk.meta)
            w.write(chunk.offset, chunk.data)
            if chunk.done:
                self.writers.pop(i).finish()
                self.sm[i] = decode_applied(st.snapshot_data())
                self.applied[i] = list(self.sm[i])
                self.installed[i].append(chunk.meta)

    def compact(self, i: int, index: int | None = None) -> SnapshotMeta:
        """Snapshot node i's applied entries (up to ``index``) and compact its storage."""
        applied = self.state(i)
        if index is not None:
            applied = [e for e in applied if e.index <= index]
        last = applied[-1]
        st = self.storages[i]
        config = self.membership  # the configuration in force at ``last``
        for e in applied:
            if e.kind == CONFIG:
                config = decode_config(e.data)
        meta = SnapshotMeta(last.index, last.term, config)
        st.compact(meta, encode_applied(applied))
        return meta

    def state(self, i: int) -> list[Entry]:
        """Node i's state machine: every entry it applied, in order (from its snapshot on)."""
        return self.sm[i]

    def flush(self) -> None:
        """Handle every node's Ready until none has one."""
        busy = True
        while busy:
            busy = False
            for i in self.ids:
                if self.handle(i) is not None:
                    busy = True

    def blocked(self, m: Any) -> bool:
        return (
            m.dst not in self.nodes  # a member that was never started
            or m.dst in self.down
            or frozenset((m.src, m.dst)) in self.cut
            or self.drop(m)
        )

    def deliver(self, m: Any) -> None:
        if self.hold(m):
            self.held.append(m)
        elif not self.blocked(m):
            self.nodes[m.dst].step(m)

    def take(self, pred: Callable[[Any], bool] = lambda m: True) -> list[Any]:
        """Remove and return the queued messages matching ``pred`` (after a flush)."""
        self.flush()
        out = [m for m in self.queue if pred(m)]
        self.queue = [m for m in self.queue if not pred(m)]
        return out

    def run(self, max_steps: int = 100_000) -> None:
        """Deliver messages in FIFO order (blocked ones are lost) until the network is quiet."""
        for _ in range(max_steps):
            self.flush()
            if not self.queue:
                return
            self.deliver(self.queue.pop(0))
        raise AssertionError("network did not quiesce")

    def tick(self, n: int = 1, nodes: Iterable[int] | None = None) -> None:
        """Tick (all live) nodes ``n`` times, running the network to quiet after each tick."""
        for _ in range(n):
            for i in nodes if nodes is not None else self.ids:
                if i not in self.down:
                    self.nodes[i].tick()
            self.run()

    def elect(self, i: int) -> RaftCore:
        """Make node i leader (campaign and deliver) and let its no-op commit everywhere."""
        self.nodes[i].campaign()
        self.run()
        assert self.nodes[i].role is Role.LEADER, self.nodes[i].role
        return self.nodes[i]

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut.add(frozenset((i, j)))

    def release(self, pred: Callable[[Any], bool] = lambda m: True) -> list[Any]:
        """Stop holding; return the held messages matching ``pred`` (the rest are lost)."""
        self.hold = lambda m: False
        out = [m for m in self.held if pred(m)]
        self.held = []
        return out

    def heal(self) -> None:
        self.cut.clear()
        self.drop = lambda m: False

    def log(self, i: int) -> list[tuple[int, int]]:
        """(index, term) of every entry in node i's storage."""
        st = self.storages[i]
        return [(e.index, e.term) for e in st.entries(st.first_index(), st.last_index() + 1)]

    def appends_to(self, dst: int, msgs: Iterable[Any]) -> list[AppendEntries]:
        return [m for m in msgs if isinstance(m, AppendEntries) and m.dst == dst]
