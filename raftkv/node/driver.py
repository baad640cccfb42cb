"""The core driver: the one loop around the consensus core (where the WAL is fsynced).

Everything that touches the core runs in the trio thread, so the core needs no locks: the
ticker calls ``tick``, the inbound task calls ``step``, client requests call ``propose`` or
``read_index``; each of them only *wakes* the ready loop, which is the single place that
persists, sends and applies (``_handle_ready``, in the order raftkv/raft/ready.py writes
down: the core says which messages may leave before the fsync). Only the fsync runs
elsewhere (raftkv.node.sync_thread: a small group's in the kernel, through AIO, the loop
waiting on an eventfd; without AIO, or for a large group, in a worker thread or, while the
disk is quick, on the loop); while it runs, new proposals accumulate in the core and go to
disk together in the next Ready (group commit). A leader's appends are on
the wire before its fsync starts either way. The ticker is raftkv.node.ticker.

While a Ready is in hand (its fsync, a snapshot install, the storage lock), every wake also
sends what the core says may leave at once (``RaftCore.take_early``: a leader's heartbeats,
a follower's heartbeat replies): the WAL write of an 8 MiB entry took 50-225 ms per node
here, longer than the 150 ms election timeout, and a leader that said nothing meanwhile, or
followers that answered nothing, cost an election (issue 12 item 2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import trio

from raftkv.log import event
from raftkv.metrics import NodeMetrics
from raftkv.node import apply as apply_module
from raftkv.node.apply import Applier
from raftkv.node.forwarding import Forwarder
from raftkv.node.membership import Membership
from raftkv.node.requests import ReadBatch, RequestTracker
from raftkv.node.snapshots import Snapshotter
from raftkv.node.sync_thread import SyncThread
from raftkv.node.transport import PeerTransport
from raftkv.raft import RaftCore, Role, persist
from raftkv.storage import DiskStorage
from wire.raft import Entry, ForwardRequest, ForwardResponse, InstallSnapshot, PeerMessage

log = logging.getLogger("raftkv.node")
APPLY_SLICE = 0.02  # seconds of applying between two looks at the loop (two ticks)


class CoreDriver:
    def __init__(self, core: RaftCore, storage: DiskStorage, storage_lock: trio.Lock,
                 sync_thread: SyncThread, transport: PeerTransport, applier: Applier,
                 requests: RequestTracker, snapshots: Snapshotter, forwarder: Forwarder,
                 membership: Membership, metrics: NodeMetrics, stats: dict[str, int],
                 on_forward_request: Callable[[ForwardRequest], None],
                 unpark: Callable[[], None],
                 ask_reads: Callable[[], None] = lambda: None) -> None:
        self.core = core
        self.storage = storage
        self.storage_lock = storage_lock
        self.sync_thread = sync_thread
        # The WAL's write and fsync apart (DiskStorage; SyncThread's AIO path), if it can.
        self._split = storage if hasattr(storage, "sync_write") else None
        self.transport = transport
        self.applier = applier
        self.requests = requests
        self.snapshots = snapshots
        self.forwarder = forwarder
        self.membership = membership
        self.metrics = metrics
        self.stats = stats
        self.on_forward_request = on_forward_request  # the leader runs a follower's command
        self.unpark = unpark  # a leader is known: run the commands that waited for one
        # The reads taken since the last look at the core go to it as one ReadIndex
        # (Node._before_look, which proposes the gathered write runs first), before every
        # look: they join the next Ready's round.
        self.ask_reads = ask_reads
        self.role_changed = trio.Event()  # set (and replaced) at every role change
        self._wake = trio.Event()
        self._last_leader = 0
        self._last_term = 0
        self._last_role: Role | None = None
        self._in_ready = False  # a Ready is being handled: its writes may be in flight
        # Set while a founder on an empty data directory asks whether it served
        # (raftkv.node.publish): the core hears nothing, so it neither votes nor acks.
        self.hold = False
        self.held = 0  # messages dropped meanwhile

    def wake(self) -> None:
        self._wake.set()
        if self._in_ready:
            self.send_early()

    def proposed(self) -> None:
        """Wake the ready loop for a leader's proposal. ``RaftCore.propose`` queues no
        message (its append leaves with the next Ready), so it lets nothing leave early:
        no ``send_early`` (a pipelined SET on a saturated leader asked the core for early
        messages once per command, while a Ready was in hand; p16)."""
        self._wake.set()

    def send_early(self) -> None:
        """Send what may leave before the Ready in hand is durable (the core decides)."""
        send = self.transport.send
        for msg in self.core.take_early():
            send(msg)

    def deliver(self, msg: PeerMessage) -> None:
        """A peer's message, called by the transport's receiving task itself: stepping the
        core is synchronous, so a channel and a task between them only cost a task switch
        per inbound read (a follower's append and the leader's ack are in every write's
        critical path). The receiving task's next read yields, so the ready loop runs."""
        self.on_peer_message(msg)
        self.wake()

    def on_peer_message(self, msg: PeerMessage) -> None:
        if isinstance(msg, ForwardRequest):
            self.on_forward_request(msg)
        elif isinstance(msg, ForwardResponse):
            self.forwarder.on_response(msg)
        elif self.hold:
            self.held += 1  # the sender retries: votes, appends and snapshots alike
        elif type(msg) is InstallSnapshot and msg.done:
            self.snapshots.gate.submit(msg)  # decoded before the core may install it
        else:
            self.core.step(msg)

    async def run(self) -> None:
        """The ready loop."""
        lock = self.storage_lock
        while True:
            await self._wake.wait()
            while True:
                # A fresh event before every look at the core, not once per wake: a wake
                # while a Ready was handled (a peer's ack, a proposal, a tick) is seen by
                # the look that follows it, so only a wake after the last look turns the
                # loop again. (One event per wake, set during the Ready, turned the loop
                # once more for nothing: a scheduler pass and a task step in half of a c1
                # SET's on the leader, count_task_steps.py.)
                self._wake = trio.Event()
                if not self._has_ready():
                    break
                self.membership.observe()
                self._in_ready = True
                try:
                    try:  # uncontended (nearly always): no trip through the scheduler
                        lock.acquire_nowait()
                    except trio.WouldBlock:
                        await lock.acquire()
                    try:
                        await self._handle_ready()
                    finally:
                        lock.release()
                finally:
                    self._in_ready = False
            self.snapshots.maybe_start()
            self._observe_leadership()
            self.membership.observe()

    def _has_ready(self) -> bool:
        self.ask_reads()
        return self.core.has_ready()

    async def _handle_ready(self) -> None:
        rd = self.core.ready()
        storage = self.storage
        if rd.snapshot_chunks or rd.snapshot_discard:
            await self.snapshots.receive(rd)  # first: this Ready's entries follow it
        persist(storage, rd)
        transport = self.transport
        if rd.send_before_sync:  # the core's call (Ready.send_before_sync)
            transport.send_many(rd.messages)
        if rd.must_sync:
            # DESIGN.md ordering: the hard state (vote, term) and appended entries are
            # durable before any other message of this Ready (a vote, an append ack) leaves.
            written = storage.buffered_bytes
            started = trio.current_time()
            sync = self.sync_thread
            split = self._split
            if (rd.send_before_sync and sync.may_inline(written, split is not None)
                    and transport.backlog()):
                # Some appends are only queued (an idle link's went out in send_many): let
                # the sender tasks put them on the wire before the loop waits for the disk.
                # Two passes, since trio runs a batch of tasks in either order.
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
            await sync.sync(storage.sync, written, split)
            # INFO raft_wal_syncs: raft_proposed (or raft_applied) over it is how many
            # commands share a Ready, an fsync and an append to each follower.
            self.stats["wal_syncs"] += 1
            self.metrics.wal_fsync.observe(trio.current_time() - started)
            self.metrics.wal_bytes.inc(written)
        if not rd.send_before_sync:
            transport.send_many(rd.messages)
        self.snapshots.log_sends(rd.messages)
        if rd.committed_entries:
            await self._apply(rd.committed_entries)
        if rd.read_states:
            # One clock reading serves every read confirmed in this Ready: each was asked
            # before it (its ReadIndex was confirmed), so it is within each read's span.
            applier = self.applier
            now, applied = applier.clock.now(), applier.applied
            confirmed = self.requests.read_confirmed
            serve = applier.kv.read_deferred  # (Applier.serve_read at ``now``, one call less)
            for rs in rd.read_states:
                waiter = confirmed(rs.ctx, rs.index, applied)
                if waiter is not None:
                    cast(ReadBatch, waiter.pending).serve(serve, now)  # each its own value
        for ctx in rd.failed_reads:
            self.requests.read_failed(ctx)
        self.core.advance(rd)

    async def _apply(self, entries: list[Entry]) -> None:
        """Apply a Ready's committed entries, letting the loop run every ``APPLY_SLICE``
        seconds of it (between two entries). A batch of costly entries applied in one go
        held the loop for their sum on every replica (attack10: 300 pipelined APPENDs to an
        8 MiB value, 21-23 s; 40 pipelined EVALs that spend their budget, 7 s): no
        heartbeat, no tick, no reply, then an election. Meanwhile, as during the fsync,
        what the core says may leave goes out (``wake`` sends it), and the entries applied
        so far have answered their writers and the reads they let through."""
        apply = self.applier.apply
        done = apply(entries, apply_module.monotonic() + APPLY_SLICE)
        while done < len(entries):
            await trio.lowlevel.checkpoint()
            done += apply(entries[done:], apply_module.monotonic() + APPLY_SLICE)

    def _observe_leadership(self) -> None:
        core = self.core
        leader, term, role = core.leader_id, core.term, core.role
        if term != self._last_term:
            event(log, logging.INFO, "term changed", term=term, leader=leader or "-")
        if role is not self._last_role:
            event(log, logging.INFO, "role changed", role=role.name.lower(), term=term)
            self.role_changed.set()
            self.role_changed = trio.Event()
        if leader != self._last_leader and leader:
            event(log, logging.INFO, "leader elected", leader=leader, term=term)
            self.stats["leader_changes"] += 1
            self.requests.leader_changed(leader)
        transferee = core.transferee
        # Parked commands run as soon as the core would take them: as leader not handing
        # over, or as a follower that knows its leader. Not only at a change seen here: a
        # follower can turn candidate and back to the same leader between two looks, and a
        # transfer can end without a leader change (attack16, attack12).
        if self.requests.parked and ((role is Role.LEADER and not transferee)
                                     or (role is Role.FOLLOWER and leader)):
            self.unpark()
        self._last_leader, self._last_term, self._last_role = leader, term, role
