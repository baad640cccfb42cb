"""K consensus cores, their disks, the network and a virtual clock, driven step by step.

The driver handles each node's ``Ready`` exactly as the core's contract says: append the
entries and save the hard state, sync if asked, then send the messages, then apply the
committed entries (and answer reads), then ``advance``. Every step (a message delivered, a
node's tick, a client call, a fault) ends with the incremental safety checks.

Snapshots (when the cluster gets a ``snapshots`` generator): every node compacts its log at
random points of its applied index (a snapshot of its register), and a follower writes the
InstallSnapshot chunks its Readys hand out and installs the last. Until the heal, a node
may crash at any chunk it receives (the last one included: in the middle of the install),
losing the half-received snapshot, and restart a little later; so does one that a
``torn_crash`` was armed on.

Membership changes (``change_config``, when the runner has a generator for them): at the
current leader, through the core's API, one change at a time as the core enforces: add a
fresh empty node as a learner, promote a learner, remove a voter, or remove the leader and
add a fresh node next. Removed nodes keep running (and may try to disrupt) until the heal,
where nodes outside every configuration are stopped for good, as an operator would; the
liveness checks then look at the members of the leader's configuration only.

Slow writes (when the cluster gets a ``slow_writes`` generator): a Ready that must sync may
stay *in flight* for a while, as the runtime's fsync in its worker thread does: its writes
are handed to storage and (if ``send_before_sync``) its messages sent, and the fsync, the
other messages, the apply and ``advance`` happen a few units later. Meanwhile messages and
ticks keep stepping the core, and after each step the node sends what
``RaftCore.take_early`` hands out, checked against what is durable like every other
message; no other Ready is taken until the one in flight is done (one ready loop). A crash
meanwhile loses the unsynced writes as any crash does.

Virtual time runs in units of 1/``TICK`` of a tick; node i ticks when ``time % TICK`` equals
its random phase, so ticks and deliveries interleave differently per node and per seed.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from chaos.sim import messages
from chaos.sim.faults import Fault, View
from chaos.sim.history import History
from chaos.sim.invariants import MISSING, SafetyChecker, Violation
from chaos.sim.kvmode import KVLayer
from chaos.sim.network import TICK, LinkModel, Network
from chaos.sim.storage import DiskImage, SimStorage
from raftkv.kv.codec import encode_entry
from raftkv.raft.log_storage import Compacted, Unavailable
from raftkv.raft.membership import ConfigChangePending, MembershipError, decode_config
from raftkv.raft.ready import persist
from wire.raft import CONFIG, NORMAL, ClusterConfig, Member, SnapshotMeta


@attrs.define
class SimNode:
    """One node id across incarnations: the disk persists, the core is rebuilt on restart."""

    id: int
    image: DiskImage
    phase: int
    inc: int = 0
    raft: Any = None
    storage: SimStorage | None = None
    alive: bool = False
    applied: int = 0
    value: bytes = b""
    torn_armed: bool = False
    send_armed: bool = False
    # What the checks last saw of this incarnation: commit index, term led (0: not leader).
    seen_commit: int = -1
    seen_lead: int = 0
    # Snapshots: the term and configuration at ``applied``, the snapshot being received,
    # and how many more applied entries until the next compaction.
    applied_term: int = 0
    config: ClusterConfig = attrs.field(factory=ClusterConfig)
    writer: Any = None
    snap_due: int = 0
    retired: bool = False  # removed from the cluster and stopped for good (at the heal)
    # The KV layer (chaos/sim/kvmode.py), when on: this incarnation's state machine and
    # stamp clock.
    kv: Any = None
    clock: Any = None
    # Slow writes: the Ready whose fsync is in flight, and the time it completes.
    in_flight: Any = None
    sync_at: int = 0

    def term_at(self, index: int) -> int | None:
        try:
            return self.storage.term(index)  # type: ignore[union-attr]
        except Compacted:
            return None
        except Unavailable:
            return MISSING


@attrs.define
class ClusterStats:
    steps: int = 0  # events checked
    delivered_to_dead: int = 0
    proposals_rejected: int = 0
    reads_rejected: int = 0
    transfers: int = 0
    snapshots: int = 0  # compactions
    installs: int = 0  # snapshots installed from a leader
    install_crashes: int = 0  # crashes while receiving or installing one
    faults: dict[str, int] = attrs.Factory(dict)
    # Membership changes proposed (add, promote, remove, replace-leader), refused
    # (ConfigChangePending or not allowed), and CONFIG entries committed.
    changes: dict[str, int] = attrs.Factory(dict)
    configs_committed: int = 0


class Cluster:
    """The simulated world. ``make_node(id, storage, rng)`` builds a consensus core."""

    def __init__(
        self,
        rng: random.Random,
        ids: list[int],
        make_node: Callable[[int, SimStorage, random.Random], Any],
        trace_len: int = 50,
        digest: Any = None,
        rules: bool = True,
        snapshots: random.Random | None = None,
        snapshot_max: int = 40,
        kv: KVLayer | None = None,
        slow_writes: random.Random | None = None,
        gone_hints: random.Random | None = None,
    ) -> None:
        self.rng = rng
        # The runtime's hint that a peer's process is gone (its port refuses: kill -9 on a
        # host that stays up) reaches some survivors of a crash, each after its own delay.
        self.hint_rng = gone_hints
        self._hints: list[tuple[int, int, int]] = []  # (tick, node told, node gone)
        self.write_rng = slow_writes  # None: every Ready is handled at once
        self.slow_write_p = slow_writes.uniform(0.2, 0.8) if slow_writes else 0.0
        self.kv = kv
        if kv is not None:
            kv.clocks.now = lambda: self.now
        self.snap_rng = snapshots  # None: no compaction
        self.snapshot_max = snapshot_max
        self.install_crash_p = 0.03  # chance a Ready with snapshot chunks crashes its node
        self.ids = list(ids)
        self.make_node = make_node
        self.now = 0
        self.net = Network(random.Random(rng.getrandbits(64)), ids)
        self.disk_rng = random.Random(rng.getrandbits(64))
        self.checker = SafetyChecker(rules)
        self.history = History()
        self.stats = ClusterStats()
        self.trace: deque[tuple[int, int, str, Any]] = deque(maxlen=trace_len)
        self.digest = digest
        config = ClusterConfig(tuple(Member(i, f"sim-{i}") for i in ids))
        self.nodes: dict[int, SimNode] = {}
        for i in ids:
            node = SimNode(i, DiskImage.bootstrap(config), phase=rng.randrange(TICK))
            self.nodes[i] = node
        self._by_phase: list[list[SimNode]] = [[] for _ in range(TICK)]
        for node in self.nodes.values():
            self._by_phase[node.phase].append(node)
        self.vote_crash_armed = False
        self.churn = 0  # how many of the next new leaders to kill young
        self._crash_at: dict[int, int] = {}  # node -> tick
        self._restart_at: dict[int, int] = {}  # node -> tick
        # Membership: the newest committed configuration (index, config) any node applied,
        # the next fresh node id, and whether a removed leader still awaits its replacement.
        self.committed_config: tuple[int, ClusterConfig] = (0, config)
        self.next_id = max(ids) + 1
        self.replace_pending = False
        for i in ids:
            self._start(self.nodes[i])

    # -- tracing --------------------------------------------------------------------------
    def event(self, node: int, what: str, detail: Any = None) -> None:
        self.trace.append((self.now, node, what, detail))
        if self.digest is not None:
            self.digest.update(f"{self.now}|{node}|{what}|{messages.brief(detail)}\n".encode())

    def format_trace(self) -> list[str]:
        out = []
        for now, node, what, detail in self.trace:
            where = f"n{node}" if node else "--"
            text = f"t={now // TICK}.{now % TICK} {where} {what}"
            if detail is not None:
                text += f" {messages.show(detail)}"
            out.append(text)
        return out

    # -- lifecycle ------------------------------------------------------------------------------
    def _start(self, node: SimNode) -> None:
        node.inc += 1
        node.storage = SimStorage(node.image)
        node.raft = self.make_node(node.id, node.storage, random.Random(self.rng.getrandbits(64)))
        node.alive = True
        node.torn_armed = node.send_armed = False
        node.seen_commit, node.seen_lead = -1, 0
        node.applied = node.image.snapshot.index
        node.value = messages.register_from_snapshot(node.image.snapshot_data)
        node.applied_term, node.config = node.image.snapshot.term, node.image.snapshot.config
        node.writer = None
        node.in_flight = None
        if self.kv is not None:
            self.kv.start(node, node.image.snapshot_data)
        if self.snap_rng is not None:
            node.snap_due = self.snap_rng.randint(1, self.snapshot_max)
        self.checker.incarnation(node.id, node.inc, node.applied)
        self.event(node.id, "start", f"inc {node.inc} {node.image.hard_state}")
        self._drain(node)

    def crash(self, node: SimNode, torn: bool = False) -> None:
        if not node.alive:
            return
        note = node.storage.crash(self.disk_rng, torn=torn)  # type: ignore[union-attr]
        node.alive = False
        node.raft = None
        node.writer = None  # a half-received snapshot dies with the process
        node.in_flight = None  # so does a write in flight (storage.crash dropped it)
        self.history.forget_node(node.id, node.inc)
        if self.kv is not None:
            self.kv.crashed(node)
        self.event(node.id, "crash" + (" (torn)" if torn else ""), note)
        if self.hint_rng is not None:
            self._schedule_hints(node.id)

    def _schedule_hints(self, gone: int) -> None:
        """Survivors learn of the crash at different times (a dial retry apart), some never
        (a partitioned one); a hint that comes after a quick restart is a false alarm."""
        rng, tick = self.hint_rng, self.now // TICK
        for other in self.ids:
            if other != gone and rng.random() < 0.75:  # type: ignore[union-attr]
                self._hints.append((tick + rng.randint(0, 8), other, gone))  # type: ignore[union-attr]

    def restart(self, node: SimNode) -> None:
        if not node.alive and not node.retired:
            self._start(node)

    # -- the event loop -------------------------------------------------------------------------
    def run_tick(self, tick: int) -> None:
        """Advance virtual time by one tick: deliveries and node ticks interleaved."""
        base = tick * TICK
        net = self.net
        by_phase = self._by_phase
        for unit in range(TICK):
            self.now = now = base + unit
            while True:
                msg = net.pop_due(now)
                if msg is None:
                    break
                self.deliver(msg)
            if self.write_rng is not None:
                for node in self.nodes.values():
                    if node.alive and node.in_flight is not None and node.sync_at <= now:
                        rd, node.in_flight = node.in_flight, None
                        self.stats.steps += 1
                        self._finish(node, rd)
                        if node.alive:
                            self._drain(node)
            for node in by_phase[unit]:
                if node.alive:
                    self.stats.steps += 1
                    node.raft.tick()
                    self._drain(node)
        for n in [n for n, t in self._crash_at.items() if t <= tick]:
            del self._crash_at[n]
            self.crash(self.nodes[n])
        for n in [n for n, t in self._restart_at.items() if t <= tick]:
            del self._restart_at[n]
            self.restart(self.nodes[n])
        if self._hints:
            due = [h for h in self._hints if h[0] <= tick]
            self._hints = [h for h in self._hints if h[0] > tick]
            for _, told, gone in due:
                node = self.nodes.get(told)
                if node is not None and node.alive:
                    self.stats.faults["gone_hint"] = self.stats.faults.get("gone_hint", 0) + 1
                    self.event(told, "gone hint", gone)
                    node.raft.leader_unreachable(gone)
                    self._drain(node)

    def deliver(self, msg: Any) -> None:
        node = self.nodes[msg.dst]
        self.stats.steps += 1
        if not node.alive:
            self.stats.delivered_to_dead += 1
            return
        self.event(node.id, "recv", msg)
        node.raft.step(msg)
        self._drain(node)

    # -- Ready handling -------------------------------------------------------------------------
    def _drain(self, node: SimNode) -> None:
        raft = node.raft
        if raft.role is messages.LEADER and raft.term != node.seen_lead:
            self._new_leader(node)  # checked before anything it says goes out
        if node.in_flight is not None:
            # A Ready's fsync is in flight: only what may leave before it is durable. The
            # checks of _observe wait for the Ready's end: until then the core's commit may
            # point into entries storage has not been handed yet, as it may in the runtime.
            early = raft.take_early()
            if early:
                self._send(node, early)
            return
        while node.alive and raft.has_ready():
            self._handle(node, raft.ready())
            if node.in_flight is not None:
                return
        if node.alive:
            self._observe(node)

    def _handle(self, node: SimNode, rd: Any) -> None:
        raft, storage, checker = node.raft, node.storage, self.checker
        assert storage is not None
        if (rd.snapshot_chunks or rd.snapshot_discard) and self._receive_snapshot(node, rd):
            return  # crashed while installing
        if rd.entries:
            checker.appending(
                node.id,
                rd.entries,
                storage.last_index(),
                node.term_at,
                checker.commit_seen(node.id, node.inc),
                leading=raft.role is messages.LEADER,
            )
        persist(storage, rd)
        early = rd.send_before_sync  # a leader's entries leave during its own fsync
        if early and self._send(node, rd.messages) is None:
            return  # crashed while sending
        if node.torn_armed and (rd.entries or rd.hard_state is not None):
            self.crash(node, torn=True)
            return
        wr = self.write_rng
        if (wr is not None and rd.must_sync and not (rd.snapshot_chunks or rd.snapshot_discard)
                and wr.random() < self.slow_write_p):
            node.in_flight = rd  # finished by run_tick (_finish) a little later
            node.sync_at = self.now + wr.randint(1, 3 * TICK)
            self.event(node.id, "fsync in flight")
            self._observe(node)  # storage holds all the core's entries now: check them
            return
        self._finish(node, rd)

    def _finish(self, node: SimNode, rd: Any) -> None:
        """The rest of a Ready, from its fsync on."""
        raft, storage, checker = node.raft, node.storage, self.checker
        assert storage is not None
        vote_granted = False
        early = rd.send_before_sync
        if rd.must_sync:
            storage.sync()
        if not early:
            sent = self._send(node, rd.messages)
            if sent is None:
                return
            vote_granted = sent
        if rd.committed_entries:
            history = self.history
            commit = raft.commit_index
            kv = self.kv
            for e in rd.committed_entries:
                checker.apply(node.id, node.inc, e, commit)
                node.applied = e.index
                node.applied_term = e.term
                if kv is not None:
                    if e.kind == NORMAL:
                        kv.apply(node, e)
                    else:
                        kv.skipped(e)
                if e.kind == NORMAL:
                    node.value = e.data
                elif e.kind == CONFIG:
                    node.config = decode_config(e.data)
                    if kv is not None:  # as the runtime's Applier: removed ids unpublished
                        node.kv.keep_members(m.id for m in node.config.members)
                    if e.index > self.committed_config[0]:
                        self.committed_config = (e.index, node.config)
                        self.stats.configs_committed += 1
                history.applied(e)
            if kv is not None:
                node.clock.observe(node.kv.now)  # as the runtime's Applier, per batch
            self.event(node.id, "apply", f"{rd.committed_entries[0].index}..{node.applied}")
            for ctx in history.ready_to_serve(node.id, node.inc, node.applied):
                self._serve(node, ctx)
        for rs in rd.read_states:
            self.event(node.id, "read index", f"{rs.ctx!r} -> {rs.index}")
            if self.history.read_state(node.id, node.inc, rs.ctx, rs.index, node.applied):
                self._serve(node, rs.ctx)
        for ctx in rd.failed_reads:
            self.history.read_failed(ctx)
        raft.advance(rd)
        if self.snap_rng is not None and rd.committed_entries:
            self._maybe_compact(node)
        if vote_granted and self.vote_crash_armed:
            self.vote_crash_armed = False
            self.crash(node)
            self._restart_at[node.id] = self.now // TICK + 1 + self.disk_rng.randrange(3)

    def _serve(self, node: SimNode, ctx: bytes) -> None:
        self.history.serve(ctx, node.applied, node.value)
        if self.kv is not None:
            self.kv.served(node, self.now)

    def _send(self, node: SimNode, outgoing: list[Any]) -> bool | None:
        """Send a Ready's messages, checking each against what is durable; True if a vote
        was granted, None if the node crashed while they went out."""
        storage, checker = node.storage, self.checker
        assert storage is not None
        vote_granted = False
        durable = storage.image.hard_state
        cut_short = node.send_armed and any(getattr(m, "entries", None) for m in outgoing)
        if cut_short:
            # Power fails while the batch goes out: each peer may or may not have got it.
            outgoing = [m for m in outgoing if self.disk_rng.random() < 0.5]
        for msg in outgoing:
            if checker.rules and not messages.is_prevote(msg) and msg.term > durable.term:
                raise Violation(
                    "persistence",
                    f"node {node.id} sends {messages.show(msg)} in term {msg.term} but its "
                    f"durable term is {durable.term}",
                )
            if messages.is_append_ack(msg):
                match = msg.match_index
                checker.append_ack(node.id, msg.term, msg.dst, match)
                live = node.term_at(match)  # None: compacted, so applied and durable
                if checker.rules and live is not None and storage.image.term(match) != live:
                    raise Violation(
                        "persistence",
                        f"node {node.id} acknowledges its log up to {match} before that "
                        "entry is durable",
                    )
            elif messages.is_vote_grant(msg):
                if checker.rules and durable.term == msg.term and durable.vote != msg.dst:
                    raise Violation(
                        "persistence",
                        f"node {node.id} grants its term-{msg.term} vote to {msg.dst} but its "
                        f"durable vote is {durable.vote}",
                    )
                checker.vote(node.id, msg.term, msg.dst)
                vote_granted = True
            self.event(node.id, "send", msg)
            self.net.send(self.now, msg)
        if cut_short:
            self.crash(node)
            return None
        return vote_granted

    # -- snapshots -------------------------------------------------------------------------------
    def _receive_snapshot(self, node: SimNode, rd: Any) -> bool:
        """Write the Ready's snapshot chunks; install at the last. True if the node crashed."""
        storage = node.storage
        assert storage is not None
        if rd.snapshot_discard and node.writer is not None:
            node.writer.abort()
            node.writer = None
        for chunk in rd.snapshot_chunks:
            w = node.writer
            if w is None or chunk.offset == 0 or w.meta != chunk.meta:
                if w is not None:
                    w.abort()
                w = node.writer = storage.snapshot_writer(chunk.meta)
            if node.torn_armed or self._install_crash():
                # Power fails in the middle of the receive or the install.
                self.stats.install_crashes += 1
                self.crash(node, torn=True)
                delay = 1 + (self.snap_rng or self.disk_rng).randrange(20)
                self._restart_at.setdefault(node.id, self.now // TICK + delay)
                return True
            w.write(chunk.offset, chunk.data)
            if not chunk.done:
                continue
            node.writer = None
            w.finish()
            meta = chunk.meta
            value = messages.register_from_snapshot(storage.snapshot_data())
            self.checker.snapshot(node.id, node.inc, meta.index, meta.term, value, True,
                                 node_term=node.raft.term)
            node.applied, node.applied_term, node.config = meta.index, meta.term, meta.config
            node.value = value
            if self.kv is not None:
                self.kv.installed(node, meta.index, storage.snapshot_data())
            self.stats.installs += 1
            self.event(node.id, "snapshot installed", f"({meta.index}, {meta.term})")
            history = self.history
            for ctx in history.ready_to_serve(node.id, node.inc, node.applied):
                self._serve(node, ctx)
        return False

    def _install_crash(self) -> bool:
        rng = self.snap_rng
        return rng is not None and self.install_crash_p > 0 and rng.random() < self.install_crash_p

    def _maybe_compact(self, node: SimNode) -> None:
        """Snapshot the register and compact the log, at a random distance from the last."""
        storage = node.storage
        assert storage is not None and self.snap_rng is not None
        if node.applied - storage.snapshot_meta().index < node.snap_due:
            return
        meta = SnapshotMeta(node.applied, node.applied_term, node.config)
        self.checker.snapshot(node.id, node.inc, meta.index, meta.term, node.value, False,
                             node_term=node.raft.term)
        data = (messages.register_snapshot(node.value, node.applied) if self.kv is None
                else self.kv.snapshot(node, node.applied))
        storage.compact(meta, data)
        node.snap_due = self.snap_rng.randint(1, self.snapshot_max)
        self.stats.snapshots += 1
        self.event(node.id, "snapshot", f"({meta.index}, {meta.term})")

    def _kill_young(self, node: SimNode) -> None:
        """Leaders dying early in their term, with their first entries on a minority, are
        what Figure 8 of the Raft paper is made of."""
        self.churn -= 1
        rng = self.disk_rng
        tick = self.now // TICK
        if rng.random() < 0.5:
            node.send_armed = True
            self._restart_at[node.id] = tick + rng.randint(2, 40)
        else:
            self._crash_at[node.id] = tick + rng.randint(0, 10)
            self._restart_at[node.id] = self._crash_at[node.id] + rng.randint(1, 40)

    def _new_leader(self, node: SimNode) -> None:
        raft = node.raft
        if self.checker.leader(node.id, raft.term, node.term_at):
            self.event(node.id, "leader", f"term {raft.term}")
            if self.churn:
                self._kill_young(node)

    def _observe(self, node: SimNode) -> None:
        raft = node.raft
        self.checker.term_covers_log(node.id, raft.term, raft.last_term)
        leading = raft.term if raft.role is messages.LEADER else 0
        commit = raft.commit_index
        if commit == node.seen_commit and leading == node.seen_lead:
            return  # nothing the checks look at changed
        if leading and leading != node.seen_lead:
            self._new_leader(node)
        self.checker.commit(node.id, node.inc, commit, node.term_at, leading, term=raft.term)
        node.seen_commit, node.seen_lead = commit, leading

    # -- clients -------------------------------------------------------------------------------
    def propose(self, node: SimNode, value: bytes) -> int | None:
        """Propose at ``node``; the leader hint on NotLeader, None on success. With the KV
        layer, the register's unique value goes as ``SET reg value``."""
        if self.kv is not None:
            return self.propose_command(node, [b"SET", b"reg", value])[0]
        if not node.alive:
            return 0
        self.stats.steps += 1
        try:
            index, term = node.raft.propose(value)
        except messages.NotLeader as e:
            self.stats.proposals_rejected += 1
            return e.leader_id or 0
        self.history.proposed(node.id, value, index, term, self.now)
        self.event(node.id, "propose", f"{value!r} -> ({index}, {term})")
        self._drain(node)
        return None

    def propose_command(self, node: SimNode, args: list[bytes], op: Any = None
                        ) -> tuple[int | None, tuple[int, int] | None]:
        """Propose a KV command at ``node``, stamped by its clock as the runtime's leader
        does: (None, (index, term)) on success, (leader hint, None) on NotLeader. ``op``:
        the client command it sends (the exactly-once checks follow it)."""
        kv = self.kv
        assert kv is not None
        if not node.alive:
            return 0, None
        self.stats.steps += 1
        raft = node.raft
        if raft.role is not messages.LEADER:
            self.stats.proposals_rejected += 1
            return raft.leader_id or 0, None
        data = encode_entry(args, node.clock.stamp())
        try:
            index, term = raft.propose(data)
        except messages.NotLeader as e:
            self.stats.proposals_rejected += 1
            return e.leader_id or 0, None
        self.history.proposed(node.id, data, index, term, self.now)
        kv.proposed(index, term, self.now, op)
        self.event(node.id, "propose", f"{b' '.join(args)!r} -> ({index}, {term})")
        self._drain(node)
        return None, (index, term)

    def wait_reply(self, send: Any, callback: Callable[[Any], None]) -> None:
        """A client waits for the reply to ``send`` (node, inc, index, term)."""
        assert self.kv is not None
        self.kv.wait_reply(send.node, send.inc, send.index, send.term, callback)

    def read(self, node: SimNode, ctx: bytes) -> bool:
        if not node.alive:
            return False
        self.stats.steps += 1
        frontier = self.checker.commit_max
        try:
            node.raft.read_index(ctx)
        except messages.NotLeader:
            self.stats.reads_rejected += 1
            return False
        self.history.read_requested(node.id, node.inc, ctx, self.now, frontier)
        self.event(node.id, "read", f"{ctx!r} (committed >= {frontier})")
        self._drain(node)
        return True

    def transfer(self, node: SimNode, target: int) -> None:
        if not node.alive or target not in node.raft.voters:  # removed, or a learner
            return
        self.stats.steps += 1
        self.stats.transfers += 1
        self.event(node.id, "transfer", f"to {target}")
        node.raft.transfer_leadership(target)
        self._drain(node)

    # -- faults --------------------------------------------------------------------------------
    def view(self) -> View:
        crashed = tuple(n.id for n in self.nodes.values() if not n.alive)
        return View(tuple(self.ids), crashed, self.leader())

    def leader(self) -> int:
        """The live leader with the highest term, or 0."""
        best, best_term = 0, -1
        for node in self.nodes.values():
            if node.alive and node.raft.role is messages.LEADER and node.raft.term > best_term:
                best, best_term = node.id, node.raft.term
        return best

    def apply_fault(self, fault: Fault) -> None:
        kind = fault.kind
        if kind not in ("restart", "calm"):
            self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1
        self.stats.steps += 1
        self.event(0, "fault", fault)
        net = self.net
        if kind == "partition":
            net.partition(fault.groups, fault.hold)
        elif kind == "isolate_leader":
            net.isolate(fault.nodes[0], fault.hold)
        elif kind == "one_way":
            net.one_way(fault.groups[0], fault.groups[1], fault.hold)
        elif kind == "heal":
            net.heal(self.now)
        elif kind == "churn":
            self.churn = fault.count
        elif kind == "crash":
            self.crash(self.nodes[fault.nodes[0]])
        elif kind == "torn_crash":
            self.nodes[fault.nodes[0]].torn_armed = True
        elif kind == "send_crash":
            self.nodes[fault.nodes[0]].send_armed = True
        elif kind == "vote_crash":
            self.vote_crash_armed = True
        elif kind == "restart":
            self.restart(self.nodes[fault.nodes[0]])
        elif kind == "lossy":
            net.model.drop, net.model.dup = fault.drop, fault.dup
        elif kind == "slow":
            net.model.spike = fault.spike
        elif kind == "calm":
            net.model = LinkModel()
        else:
            raise ValueError(f"unknown fault {kind}")

    def heal_all(self) -> None:
        """The final phase: links up, no loss, every crashed node back."""
        self.event(0, "heal all")
        self.churn = 0
        self._crash_at.clear()
        self.net.heal(self.now)
        self.net.model = LinkModel()
        self.vote_crash_armed = False
        self.install_crash_p = 0.0
        self._restart_at.clear()
        for node in self.nodes.values():
            node.torn_armed = node.send_armed = False
            self.restart(node)
        # Every node is up, so every log's latest configuration is known: a change still
        # uncommitted in a log that was down at this point may yet commit and need its node.
        members = {m.id for m in self.committed_config[1].members}
        for node in self.nodes.values():  # and those of changes not committed yet
            if node.alive:
                members.update(node.raft.known_members)
        # A leader sends its entries before its own fsync: a CONFIG entry its crash lost may
        # still be on its way to a follower that will keep it (seed 30005386: learner 5 was
        # retired at the heal, then its add arrived and committed, and the cluster never
        # settled without it).
        for msg in self.net.messages():
            for e in getattr(msg, "entries", ()):
                if e.kind == CONFIG:
                    members.update(m.id for m in decode_config(e.data).members)
        for node in self.nodes.values():
            if node.id not in members and self.stats.changes:
                # Removed (or never added): an operator stops it, as the runtime's docs ask.
                self.crash(node)
                node.retired = True
                self.event(node.id, "retired")

    def settled(self) -> int:
        """The leader's id once it is a voter of its configuration, every member is up and
        follows it, and it has committed and applied its whole log (so every proposal's fate
        is decided), else 0."""
        lid = self.leader()
        if not lid:
            return 0
        leader = self.nodes[lid]
        commit = leader.raft.commit_index
        if commit != leader.raft.last_index or leader.applied != commit:
            return 0
        if lid not in leader.raft.voters:
            return 0
        for node in self.members(leader):
            if not node.alive or node.raft.leader_id != lid or node.raft.term != leader.raft.term:
                return 0
        return lid

    def members(self, leader: SimNode) -> list[SimNode]:
        """The nodes of ``leader``'s configuration (all nodes without membership changes)."""
        if not self.stats.changes:
            return list(self.nodes.values())
        return [self.nodes[m.id] for m in leader.raft.cluster_config.members]

    def backlog(self) -> int:
        """Entries between the longest log and the least applied live node."""
        alive = [n for n in self.nodes.values() if n.alive]
        if not alive:
            return 0
        return max(n.raft.last_index for n in alive) - min(n.applied for n in alive)

    def lag(self, lid: int) -> int:
        """How far the furthest member's state machine is behind leader ``lid``'s commit."""
        leader = self.nodes[lid]
        commit = leader.raft.commit_index
        return max(commit - node.applied for node in self.members(leader))

    # -- membership changes ----------------------------------------------------------------------
    def add_node(self, node_id: int, rng: random.Random) -> SimNode:
        """A fresh, empty node (no configuration: it learns it from the leader's log)."""
        node = SimNode(node_id, DiskImage.bootstrap(ClusterConfig()), phase=rng.randrange(TICK))
        self.nodes[node_id] = node
        self._by_phase[node.phase].append(node)
        self.ids.append(node_id)
        self.net.ids = tuple(sorted(self.ids))
        self._start(node)
        return node

    def change_config(self, change: str, rng: random.Random, max_members: int = 7,
                      promote_lag: int = 20) -> bool:
        """One membership change proposed at the current leader, through the core's API
        (``add_learner``/``promote_learner``/``remove_member``, all ``propose_config``):
        ``add`` a learner, ``promote`` a learner, ``remove`` a voter other than the leader,
        ``replace_leader`` (remove the leader; the next change adds a fresh node). A change
        the core refuses (another one pending, not allowed) is counted, not an error."""
        lid = self.leader()
        if not lid:
            return False
        leader = self.nodes[lid]
        raft = leader.raft
        config = raft.cluster_config
        voters = sorted(raft.voters)
        learners = sorted(m.id for m in config.members if m.learner)
        if self.replace_pending:
            change = "add"
        stats = self.stats.changes
        new_nodes: list[int] = []
        try:
            if change == "add":
                if len(config.members) >= max_members:
                    return False
                new_nodes = [self.next_id]
                raft.add_learner(self.next_id, f"sim-{self.next_id}", promote=False)
                self.replace_pending = False
            elif change == "promote":
                if not learners:
                    return False
                raft.promote_learner(rng.choice(learners), promote_lag)
            elif change == "remove":
                others = [v for v in voters if v != lid]
                if len(voters) <= 2 or not others:
                    return False
                raft.remove_member(rng.choice(others))
            elif change == "replace_leader":
                if len(voters) <= 2 or lid not in voters:
                    return False
                raft.remove_member(lid)
                self.replace_pending = True
            else:
                raise ValueError(f"unknown membership change {change}")
        except (ConfigChangePending, MembershipError, messages.NotLeader) as e:
            stats["refused"] = stats.get("refused", 0) + 1
            self.event(lid, "config refused", f"{change}: {e}")
            return False
        stats[change] = stats.get(change, 0) + 1
        self.event(lid, "config change", f"{change} {new_nodes or ''} -> "
                   f"{raft.cluster_config.members and sorted(raft.voters)}")
        for node_id in new_nodes:
            self.next_id = node_id + 1
            self.add_node(node_id, rng)
        self._drain(leader)
        return True
