"""The trio runtime of one node: one loop around the consensus core.

Everything that touches the core runs in the trio thread, so the core needs no locks:
the ticker calls ``tick``, the inbound task calls ``step``, client connections call
``submit``; each of them only *wakes* the ready loop, which is the single place that
persists, sends and applies (``_handle_ready``, in the order DESIGN.md requires). Only the
fsync runs in a worker thread; while it runs, new proposals accumulate in the core and go to
disk together in the next Ready (group commit).

Snapshots (the methods under "snapshots"): between Readys the ready loop compacts the log
once ``snapshot_entries`` entries were applied since the last snapshot, or when RAFT SNAPSHOT
asks; the snapshot file is written in a worker thread (the ready loop is the only storage
writer, and it waits), the in-memory switch happens here, where the core reads the log. A
follower writes received chunks as its Readys hand them out and installs the last one.

Client requests never get a task each. A request is a ``Pending`` that the ready loop fills
(write applied, read confirmed and applied, forwarded reply received) or the sweeper fails
when its deadline passes, so a pipelined connection just awaits its Pendings in order.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from raftkv.kv import (
    KVState,
    KVStateMachine,
    decode_snapshot,
    encode_command,
    encode_snapshot,
    lookup,
    validate,
)
from raftkv.log import event
from raftkv.metrics import NodeMetrics
from raftkv.node.backoff import Backoff
from raftkv.node.backup_source import BackupSource
from raftkv.node.clock import LeaderClock
from raftkv.node.cluster_id import resolve_cluster_id
from raftkv.node.expiry import active_expiry
from raftkv.node.listen import start_listener
from raftkv.node.membership import Membership, describe_members
from raftkv.node.memory import MemoryGuard
from raftkv.node.peer_auth import load_secret
from raftkv.node.peer_validation import PEER_MESSAGES, check_peer_message
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.node.sizes import max_reply_bytes, request_size, transport_limits
from raftkv.node.sync_thread import SyncThread
from raftkv.node.tls import peer_tls
from raftkv.node.transport import PeerTransport
from raftkv.probe import info_raft
from raftkv.raft import NotLeader, RaftConfig, RaftNode, Role, StorageError, persist
from raftkv.raft.membership import decode_config
from raftkv.storage import SnapshotNotWritten, SnapshotWriter, open_storage
from wire.addr import parse_addr
from wire.raft import (
    CONFIG,
    NOOP,
    NORMAL,
    ClusterConfig,
    ForwardRequest,
    ForwardResponse,
    InstallSnapshot,
    Member,
    SnapshotMeta,
)
from wire.reply import OK, ErrorReply
from wire.resp import encode_reply
from wire.resp_reply import NEED_MORE, ReplyParser

log = logging.getLogger("raftkv.node")

NO_LEADER = ErrorReply("TRYAGAIN no leader known; the command was not applied, retry")
LOST = ErrorReply("TRYAGAIN the command was not committed (leader changed); retry")
READ_FAILED = ErrorReply("TRYAGAIN the read could not be confirmed by a quorum; retry")
UNKNOWN_TIMEOUT = ErrorReply(
    "UNKNOWN timed out waiting for a quorum; the command may or may not have been applied"
)
UNKNOWN_FORWARD = ErrorReply(
    "UNKNOWN no reply from the leader; the command may or may not have been applied"
)
APPLY_TIMEOUT = ErrorReply(
    "TRYAGAIN the read was confirmed but this node did not apply up to it in time; retry"
)
SHUTTING_DOWN = ErrorReply("TRYAGAIN the node is shutting down; the command was not applied")


async def _free_in_slices(data: dict[bytes, bytes] | list[Any], step: int = 5000) -> None:
    """Free a large map or list dropped by the state machine, ``step`` items at a time."""
    pop = data.popitem if isinstance(data, dict) else data.pop
    while data:
        for _ in range(min(step, len(data))):
            pop()
        await trio.lowlevel.checkpoint()


def decode_reply(data: bytes) -> Any:
    """A forwarded reply (RESP3 bytes from the leader) back to a reply value."""
    malformed = ErrorReply("ERR malformed reply from the leader")
    parser = ReplyParser()
    try:  # peer input: anything it holds must become an answer, never an exception
        parser.feed(data)
        value = parser.next_reply()
    except Exception:
        return malformed
    return malformed if value is NEED_MORE else value


class Node:
    """One RaftKV node: core + storage + state machine + peer transport + client port."""

    def __init__(self, settings: NodeSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.id = settings.node_id
        self.rng = rng or random.Random()
        self.kv = KVStateMachine()
        self.clock = LeaderClock()  # stamps our proposals as leader; the time reads use
        self.applied = 0
        self.started_at = 0.0
        self.client_port = 0  # actual bound ports (tests bind port 0)
        self.peer_port = 0
        self.core: RaftNode
        self.transport: PeerTransport
        self._sync_thread: SyncThread  # the WAL fsync worker, alive while run() is
        self._wake = trio.Event()
        self._role_changed = trio.Event()
        self._last_leader = 0
        self._last_term = 0
        self._last_role: Role | None = None
        self._ids = itertools.count(1)
        # index -> (term, pending, deadline): our proposals awaiting apply
        self._writes: dict[int, tuple[int, Pending, float]] = {}
        # ctx -> (pending, args, deadline): reads awaiting leadership confirmation
        self._reads: dict[bytes, tuple[Pending, list[bytes], float]] = {}
        # (index, seq, pending, args, deadline): confirmed reads awaiting apply
        self._read_wait: list[tuple[int, int, Pending, list[bytes], float]] = []
        # req_id -> (pending, deadline, leader): commands forwarded to the leader
        self._forwards: dict[int, tuple[Pending, float, int]] = {}
        # commands waiting for a leader to be known
        self._parked: deque[tuple[list[bytes], bool, Pending, float]] = deque()
        self._stopping = False
        self.stats = {"proposed": 0, "forwarded": 0, "reads": 0, "applied": 0,
                      "proposals_failed": 0, "leader_changes": 0, "reads_leader": 0,
                      "reads_follower": 0, "reads_stale": 0}
        self.ticks = 0  # the ticker's count (/livez waits for the next one)
        self._tick_event: trio.Event | None = None
        self.metrics = NodeMetrics(self, enabled=bool(settings.metrics_addr))
        # Snapshots: the term and configuration at ``applied`` (a snapshot's meta), the
        # snapshot being received, RAFT SNAPSHOT callers, and transfers already logged.
        self._applied_term = 0
        self._applied_config = ClusterConfig()
        self._snap_writer: SnapshotWriter | None = None
        self._snapshot_waiters: list[Pending] = []
        self._snapshotting = False
        # Automatic snapshots start only once the node serves (one that needs space it
        # lacks must not stand between a restart and serving), and after one could not
        # be written (disk full, no descriptor) the next waits a growing delay.
        self._serving = False
        self._snapshot_backoff = Backoff(1.0, 60.0, self.rng)
        self._snapshot_not_before = 0.0
        self._storage_lock = trio.Lock()
        self._snap_logged: set[tuple[int, int, bool]] = set()
        self.membership = Membership(self)
        self.backups = BackupSource(self)  # RAFT BACKUP sessions
        self.memory = MemoryGuard(settings.maxmemory)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from raftkv.server.client_port import serve_clients

        s = self.settings
        bootstrap = ClusterConfig(  # empty with --join: learnt from the leader
            tuple(Member(i, addr) for i, addr in sorted(s.cluster.items()) if not s.join)
        )
        cluster_id, source = await resolve_cluster_id(
            s.data_dir, s.cluster_id, s.join, s.cluster,
            lambda addr: info_raft(addr, 2.0), Backoff(0.2, 2.0, self.rng))
        event(log, logging.INFO, "cluster id", cluster_id=cluster_id, source=source)
        # From here on settings.cluster_id is the cluster's id, whatever decided it.
        s = self.settings = attrs.evolve(s, cluster_id=cluster_id)
        self.storage = await trio.to_thread.run_sync(
            lambda: open_storage(s.data_dir, cluster_id, s.node_id, bootstrap, fsync=s.fsync)
        )
        for note in self.storage.recovery_notes:  # e.g. a torn WAL tail truncated
            event(log, logging.WARNING, "storage recovered", note=note)
        if s.fsync != "always":
            log.warning("fsync=%s: acknowledged writes can be lost on a crash (benchmarks only)",
                        s.fsync)
        meta = self.storage.snapshot_meta()
        if meta.index > 0:
            self.kv.restore(self.storage.snapshot_data())
            self.clock.observe(self.kv.now)
        self.applied = meta.index
        self._applied_term, self._applied_config = meta.term, meta.config
        config = RaftConfig(election_ticks=s.election_ticks, heartbeat_ticks=s.heartbeat_ticks)
        self.core = RaftNode(self.id, self.storage, config, self.rng)
        members = {m.id: m.peer_addr for m in self.core.known_members.values()}
        joining = bool(s.join) and not members
        if s.join and members:
            event(log, logging.WARNING, "the data directory has cluster state: ignoring "
                  "--join", members=describe_members(self.core.cluster_config))
        elif not s.join and not getattr(self.storage, "created", True) and members != s.cluster:
            log.warning("existing data directory: using its membership, not --cluster",
                        extra={"fields": {"members": members}})
        event(log, logging.INFO, "node starting", id=self.id, term=self.core.term,
              applied=self.applied, last_index=self.core.last_index)
        self.started_at = trio.current_time()

        inbound_send, inbound_recv = trio.open_memory_channel[Any](4096)
        host, port = parse_addr(s.peer_addr, listen=True)
        self.transport = PeerTransport(
            node_id=self.id,
            cluster_id=cluster_id,
            listen=(host, port),
            advertise_peer_addr=s.peer_advertised,
            client_addr=s.client_advertised,
            peers={i: a for i, a in members.items() if i != self.id},
            inbound=inbound_send,
            rng=self.rng,
            limits=transport_limits(s),
            message_types=PEER_MESSAGES,
            validate=check_peer_message,
            secret=load_secret(s.peer_secret_file) if s.peer_secret_file else None,
            tls=peer_tls(s.peer_tls_cert, s.peer_tls_key, s.peer_tls_ca)
            if s.peer_tls_cert else None,
        )
        try:
            async with SyncThread() as self._sync_thread, trio.open_nursery() as nursery:
                self._nursery = nursery
                self.peer_port = await start_listener(
                    nursery, "--peer-addr", s.peer_addr, self.transport.run)
                nursery.start_soon(self._inbound_loop, inbound_recv)
                nursery.start_soon(self._ready_loop)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._sweeper)
                nursery.start_soon(active_expiry, self)
                self.client_port = await start_listener(
                    nursery, "--client-addr", s.client_addr, serve_clients, self)
                if joining:
                    nursery.start_soon(self.membership.join, list(s.join))
                self._serving = True
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.storage.close)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def applied_term(self) -> int:
        """The term of the entry at ``applied`` (a snapshot's term)."""
        return self._applied_term

    def start_background(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` as a task of the node (ends with it)."""
        self._nursery.start_soon(fn, *args)

    async def stop(self, transfer_timeout: float = 1.0) -> None:
        """Graceful stop: a leader hands leadership to the most caught-up voter first."""
        self._stopping = True
        if self.core.role is Role.LEADER:
            target = self._best_transfer_target()
            if target:
                event(log, logging.INFO, "transferring leadership before stop", to=target)
                try:
                    self.core.transfer_leadership(target)
                    self.wake()
                    with trio.move_on_after(transfer_timeout):
                        while self.core.role is Role.LEADER:
                            await self._role_changed.wait()
                except NotLeader:
                    pass
        self._fail_all(SHUTTING_DOWN)
        self._nursery.cancel_scope.cancel()

    def _best_transfer_target(self) -> int:
        voters = [m.id for m in self.core.cluster_config.members
                  if not m.learner and m.id != self.id]
        def match(peer: int) -> int:
            progress = self.core.progress(peer)
            return progress.match if progress is not None else 0

        return max(voters, key=match, default=0)

    # -- the loops ------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def _ticker(self) -> None:
        # Ticks are spaced by a sleep, not caught up after a stall: a busy node slows its
        # clocks instead of bursting into a spurious election.
        interval = self.settings.tick_ms / 1000
        while True:
            await trio.sleep(interval)
            self.core.tick()
            self.ticks += 1
            if self._tick_event is not None:
                self._tick_event.set()
                self._tick_event = None
            self.wake()

    async def next_tick(self) -> int:
        """Wait for the ticker's next tick (liveness: the loop and the ticker turn)."""
        if self._tick_event is None:
            self._tick_event = trio.Event()
        await self._tick_event.wait()
        return self.ticks

    async def _inbound_loop(self, inbound: trio.MemoryReceiveChannel[Any]) -> None:
        async for msg in inbound:
            self._on_peer_message(msg)
            while True:  # drain what else arrived, then wake the ready loop once
                try:
                    msg = inbound.receive_nowait()
                except trio.WouldBlock:
                    break
                self._on_peer_message(msg)
            self.wake()
            await trio.lowlevel.checkpoint()

    def _on_peer_message(self, msg: Any) -> None:
        if isinstance(msg, ForwardRequest):
            self._on_forward_request(msg)
        elif isinstance(msg, ForwardResponse):
            entry = self._forwards.pop(msg.req_id, None)
            if entry is not None:
                entry[0].set(decode_reply(msg.reply))
        else:
            self.core.step(msg)

    async def _ready_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self.core.has_ready():
                self.membership.observe()
                await self._handle_ready()
            await self._maybe_snapshot()
            self._observe_leadership()
            self.membership.observe()

    async def _handle_ready(self) -> None:
        async with self._storage_lock:
            await self._handle_ready_locked()

    async def _handle_ready_locked(self) -> None:
        rd = self.core.ready()
        storage = self.storage
        if rd.snapshot_chunks or rd.snapshot_discard:
            await self._receive_snapshot(rd)  # first: this Ready's entries follow it
        persist(storage, rd)
        send = self.transport.send
        if rd.send_before_sync:  # the core's call (Ready.send_before_sync)
            for msg in rd.messages:
                send(msg)
        if rd.must_sync:
            # DESIGN.md ordering: the hard state (vote, term) and appended entries are
            # durable before any other message of this Ready (a vote, an append ack) leaves.
            written = storage.buffered_bytes
            started = trio.current_time()
            await self._sync_thread.run(storage.sync)
            self.metrics.wal_fsync.observe(trio.current_time() - started)
            self.metrics.wal_bytes.inc(written)
        if not rd.send_before_sync:
            for msg in rd.messages:
                send(msg)
        self._log_snapshot_sends(rd.messages)
        if rd.committed_entries:
            self._apply(rd.committed_entries)
        for rs in rd.read_states:
            self._on_read_state(rs.ctx, rs.index)
        for ctx in rd.failed_reads:
            entry = self._reads.pop(ctx, None)
            if entry is not None:
                entry[0].set(READ_FAILED)
        self.core.advance(rd)

    def _apply(self, entries: list[Any]) -> None:
        kv, writes = self.kv, self._writes
        for entry in entries:
            result = self._apply_one(entry)
            waiting = writes.pop(entry.index, None)
            if waiting is not None:
                term, pending, _ = waiting
                if term == entry.term and entry.kind != NOOP:
                    pending.set(result)
                else:
                    self._fail_write(pending, LOST)
            self.applied = entry.index
        self.stats["applied"] += len(entries)
        if entries:
            self._applied_term = entries[-1].term
        self.clock.observe(kv.now)
        wait = self._read_wait
        while wait and wait[0][0] <= self.applied:
            _, _, pending, args, _ = heapq.heappop(wait)
            pending.set(kv.read_deferred(args, self.clock.now()))
        if kv.retired:
            self._free_retired()

    def _free_retired(self) -> None:
        """Free the maps FLUSHALL (or a snapshot install) dropped, a slice at a time: freeing
        a million keys in one go would hold the loop for an election timeout."""
        for old in self.kv.retired:
            self._nursery.start_soon(_free_in_slices, old)
        self.kv.retired.clear()

    def _apply_one(self, entry: Any) -> Any:
        """One committed entry's reply. Total: whatever the log holds, nothing raises here
        (a raise would stop the node, and every restart would replay the same entry), but
        MemoryError: a replica that cannot allocate must stop rather than skip the entry."""
        if entry.kind == NORMAL:
            try:
                return self.kv.apply(entry.data)
            except MemoryError:
                raise  # fail-stop, never diverge: see KVStateMachine.apply
            except Exception as exc:  # a state-machine bug must not become a crash loop
                event(log, logging.ERROR, "applying an entry failed", index=entry.index,
                      error=repr(exc))
                return ErrorReply(f"ERR applying the command failed: {type(exc).__name__}")
        if entry.kind == CONFIG:
            try:
                self._applied_config = decode_config(entry.data)
            except Exception as exc:  # the core already acted on it; keep what we had
                event(log, logging.ERROR, "undecodable CONFIG entry ignored",
                      index=entry.index, error=repr(exc))
                return ErrorReply("ERR undecodable membership change")
            return OK  # a membership change (RAFT ADDNODE/...) is done once committed
        return None

    # -- snapshots ------------------------------------------------------------------------

    def request_snapshot(self) -> Pending:
        """RAFT SNAPSHOT: snapshot what is applied now; the Pending gets the snapshot index."""
        pending = Pending()
        self._snapshot_waiters.append(pending)
        self.wake()
        return pending

    async def _maybe_snapshot(self) -> None:
        """Between Readys: start a snapshot if asked to, or if enough was applied since the
        last one. It runs as its own task, so Readys (heartbeats!) keep flowing meanwhile."""
        if self._snapshotting:
            return
        if not self._snapshot_waiters:
            every = self.settings.snapshot_entries
            if not every or self.applied - self.storage.snapshot_meta().index < every:
                return
            if not self._serving or trio.current_time() < self._snapshot_not_before:
                return
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        if self.applied <= self.storage.snapshot_meta().index:
            for pending in waiters:
                pending.set(self.storage.snapshot_meta().index)
            return
        self._snapshotting = True
        meta = SnapshotMeta(self.applied, self._applied_term, self._applied_config)
        self._nursery.start_soon(self._take_snapshot, meta, self.kv.snapshot_state(), waiters)

    async def _take_snapshot(
        self, meta: SnapshotMeta, state: KVState, waiters: list[Pending]
    ) -> None:
        started = trio.current_time()
        storage = self.storage
        try:
            data = await trio.to_thread.run_sync(encode_snapshot, state)
            # The file in a worker thread beside the ready loop's log writes: the snapshot
            # covers only applied entries, which are already durable, so no log sync first.
            try:
                # (The file is read back and checked there too, not on the loop.)
                snap = await trio.to_thread.run_sync(storage.prepare_compact, meta, data, False)
            except (ValueError, StorageError) as exc:
                # A leader's snapshot replaced our log meanwhile: this one is moot.
                event(log, logging.INFO, "snapshot skipped", index=meta.index, reason=exc)
                snap = None
            except SnapshotNotWritten as exc:
                # Nothing changed on disk and the log goes on: not a reason to stop. Try
                # again later (growing delays), so a full disk does not crash-loop us.
                self._snapshot_backoff.failed()
                delay = self._snapshot_backoff.delay()
                self._snapshot_not_before = trio.current_time() + delay
                event(log, logging.WARNING, "snapshot not written", index=meta.index,
                      reason=exc, retry_in_s=round(delay, 1))
                for pending in waiters:
                    pending.set(ErrorReply(f"ERR snapshot not written: {exc}"))
                return
            if snap is not None:
                async with self._storage_lock:  # the switch drops segments: not mid-sync
                    storage.finish_compact(meta, snap)
                took = trio.current_time() - started
                self.metrics.snapshot_duration.labels("take").observe(took)
                self._snapshot_backoff.reset()
                event(log, logging.INFO, "snapshot taken", index=meta.index, term=meta.term,
                      bytes=len(data), keys=len(state.data), ms=round(took * 1000, 1))
        finally:
            self._snapshotting = False
        index = storage.snapshot_meta().index
        for pending in waiters:
            pending.set(index)
        self.wake()

    async def _receive_snapshot(self, rd: Any) -> None:
        """Write received chunks durably as they come (memory stays bounded); install at
        the last one. The core reads no storage until this Ready's advance, so the install
        may replace the log from a worker thread."""
        if rd.snapshot_discard and self._snap_writer is not None:
            writer, self._snap_writer = self._snap_writer, None
            await trio.to_thread.run_sync(writer.abort)
        for chunk in rd.snapshot_chunks:
            writer = self._snap_writer
            if writer is None or chunk.offset == 0 or writer.meta != chunk.meta:
                if writer is not None:
                    await trio.to_thread.run_sync(writer.abort)
                self._snap_writer = None
                writer = await trio.to_thread.run_sync(self.storage.snapshot_writer, chunk.meta)
                self._snap_writer = writer
                event(log, logging.INFO, "snapshot receiving", leader=chunk.src,
                      index=chunk.meta.index, term=chunk.meta.term)
            await trio.to_thread.run_sync(writer.write, chunk.offset, chunk.data)
            if chunk.done:
                self._snap_writer = None
                await self._install_snapshot(writer)

    async def _install_snapshot(self, writer: SnapshotWriter) -> None:
        started = trio.current_time()
        meta = writer.meta
        await trio.to_thread.run_sync(writer.finish)
        data = await trio.to_thread.run_sync(self.storage.snapshot_data)
        self.kv.replace(await trio.to_thread.run_sync(decode_snapshot, data))
        self.clock.observe(self.kv.now)
        self.applied = meta.index
        self._applied_term, self._applied_config = meta.term, meta.config
        for index in [i for i in self._writes if i <= meta.index]:
            # Our own proposals from an old term, covered by the snapshot: whether they
            # made it is unknowable from here.
            self._fail_write(self._writes.pop(index)[1], UNKNOWN_TIMEOUT)
        self._apply([])  # serve the reads that waited for this index
        self.metrics.snapshot_duration.labels("install").observe(trio.current_time() - started)
        event(log, logging.INFO, "snapshot installed", index=meta.index, term=meta.term,
              bytes=len(data), keys=len(self.kv),
              ms=round((trio.current_time() - started) * 1000, 1))

    def _log_snapshot_sends(self, messages: list[Any]) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # the scan below only feeds these log lines
        for msg in messages:
            if type(msg) is InstallSnapshot and (msg.offset == 0 or msg.done):
                key = (msg.dst, msg.meta.index, msg.done)
                if key in self._snap_logged:
                    continue
                self._snap_logged.add(key)
                if msg.offset == 0:
                    event(log, logging.INFO, "snapshot sending", to=msg.dst,
                          index=msg.meta.index, term=msg.meta.term)
                if msg.done:
                    event(log, logging.INFO, "snapshot sent", to=msg.dst, index=msg.meta.index,
                          bytes=msg.offset + len(msg.data))

    def _observe_leadership(self) -> None:
        core = self.core
        leader, term, role = core.leader_id, core.term, core.role
        if term != self._last_term:
            event(log, logging.INFO, "term changed", term=term, leader=leader or "-")
        if role is not self._last_role:
            event(log, logging.INFO, "role changed", role=role.name.lower(), term=term)
            self._role_changed.set()
            self._role_changed = trio.Event()
        if leader != self._last_leader and leader:
            event(log, logging.INFO, "leader elected", leader=leader, term=term)
            self.stats["leader_changes"] += 1
            self._fail_forwards_to_old_leaders(leader)
        if self._parked and leader and (leader != self._last_leader or role is not self._last_role):
            self._unpark()
        self._last_leader, self._last_term, self._last_role = leader, term, role

    def _fail_forwards_to_old_leaders(self, leader: int) -> None:
        """A new leader was elected: commands forwarded to an earlier one will get no reply
        (that leader is gone or deposed), so answer them now instead of at the timeout."""
        for req_id, (pending, _, target) in list(self._forwards.items()):
            if target != leader:
                del self._forwards[req_id]
                pending.set(UNKNOWN_FORWARD)

    async def _sweeper(self) -> None:
        """Fail requests whose deadline passed; a reply is owed to every client."""
        while True:
            await trio.sleep(0.05)
            self._sweep(trio.current_time())

    def _sweep(self, now: float) -> None:
        """Answer every request whose deadline is ``now`` or earlier."""
        for index, (_, pending, deadline) in list(self._writes.items()):
            if deadline <= now:
                del self._writes[index]
                self._fail_write(pending, UNKNOWN_TIMEOUT)
        for ctx, (pending, _, deadline) in list(self._reads.items()):
            if deadline <= now:
                del self._reads[ctx]
                pending.set(READ_FAILED)
        for req_id, (pending, deadline, _) in list(self._forwards.items()):
            if deadline <= now:
                del self._forwards[req_id]
                pending.set(UNKNOWN_FORWARD)
        if any(item[4] <= now for item in self._read_wait):
            late = [item for item in self._read_wait if item[4] <= now]
            self._read_wait = [item for item in self._read_wait if item[4] > now]
            heapq.heapify(self._read_wait)
            for item in late:
                item[2].set(APPLY_TIMEOUT)
        parked = self._parked
        while parked and parked[0][3] <= now:
            parked.popleft()[2].set(NO_LEADER)

    def _fail_write(self, pending: Pending, reply: ErrorReply) -> None:
        if not pending.done:
            self.stats["proposals_failed"] += 1
        pending.set(reply)

    def _fail_all(self, reply: ErrorReply) -> None:
        for _, pending, _ in self._writes.values():
            self._fail_write(pending, UNKNOWN_TIMEOUT)
        for pending, _, _ in self._reads.values():
            pending.set(reply)
        for _, _, pending, _, _ in self._read_wait:
            pending.set(reply)
        for pending, _, _ in self._forwards.values():
            pending.set(UNKNOWN_FORWARD)
        for _, _, pending, _ in self._parked:
            pending.set(reply)
        self._writes.clear()
        self._reads.clear()
        self._read_wait.clear()
        self._forwards.clear()
        self._parked.clear()

    # -- client requests ------------------------------------------------------------------

    def submit(self, args: list[bytes]) -> Pending:
        """Run a state-machine command: writes through the log, reads through ReadIndex."""
        error = validate(args) or self._check_size(args)
        if error is None:
            error = self.memory.refuse(args)
        if error is not None:
            return Pending.of(error)
        if self._stopping:
            return Pending.of(SHUTTING_DOWN)
        spec = lookup(args[0])
        assert spec is not None  # validate() rejects unknown commands
        pending = Pending()
        self._dispatch(args, spec.is_write, pending,
                       trio.current_time() + self.settings.leader_wait)
        return pending

    def _check_size(self, args: list[bytes]) -> ErrorReply | None:
        """A request larger than --max-request-bytes never becomes a log entry: every
        peer-side size (frames, batches) is derived from that bound (raftkv.node.sizes)."""
        limit = self.settings.max_request_bytes
        size = request_size(args)
        if size > limit:
            return ErrorReply(f"ERR request of {size} bytes exceeds max-request-bytes {limit}")
        return None

    def _dispatch(
        self, args: list[bytes], write: bool, pending: Pending, park_until: float
    ) -> None:
        core = self.core
        deadline = trio.current_time() + self.settings.request_timeout
        if write:
            if core.role is Role.LEADER:
                try:
                    # The leader's time goes into the entry: see raftkv/node/clock.py.
                    index, term = core.propose(encode_command(args, self.clock.stamp()))
                except NotLeader:
                    self._parked.append((args, write, pending, park_until))
                    return
                self._track_write(index, term, pending, deadline)
                self.stats["proposed"] += 1
                self.wake()
            elif core.leader_id:
                self._forward(args, pending, deadline)
            else:
                self._parked.append((args, write, pending, park_until))
        elif self.settings.unsafe_stale_reads and core.role is not Role.LEADER:
            # deliberately unsafe: see NodeSettings
            pending.set(self.kv.read_deferred(args, self.clock.now()))
            self.stats["reads_stale"] += 1
        else:
            ctx = next(self._ids).to_bytes(8, "big")
            try:
                core.read_index(ctx)
            except NotLeader:
                self._parked.append((args, write, pending, park_until))
                return
            self._reads[ctx] = (pending, args, deadline)
            self.stats["reads"] += 1
            self.stats["reads_leader" if core.role is Role.LEADER else "reads_follower"] += 1
            self.wake()

    def _unpark(self) -> None:
        parked, self._parked = self._parked, deque()
        for args, write, pending, park_until in parked:
            if not pending.done:
                self._dispatch(args, write, pending, park_until)

    def _on_read_state(self, ctx: bytes, index: int) -> None:
        entry = self._reads.pop(ctx, None)
        if entry is None:
            return
        pending, args, deadline = entry
        if index <= self.applied:
            pending.set(self.kv.read_deferred(args, self.clock.now()))
        else:
            heapq.heappush(self._read_wait, (index, next(self._ids), pending, args, deadline))

    def _forward(self, args: list[bytes], pending: Pending, deadline: float) -> None:
        req_id = next(self._ids)
        msg = ForwardRequest(
            term=self.core.term, src=self.id, dst=self.core.leader_id, req_id=req_id,
            args=tuple(args),
        )
        if not self.transport.send(msg):
            pending.set(NO_LEADER)  # never left this node: definitely not applied
            return
        self._forwards[req_id] = (pending, deadline, msg.dst)
        self.stats["forwarded"] += 1

    def _on_forward_request(self, msg: ForwardRequest) -> None:
        """Run a follower's command as leader and send the reply back; never re-forward."""
        args = list(msg.args)
        error = (validate(args) or self._check_size(args)) if args else ErrorReply(
            "ERR empty command")
        if args and args[0].lower() == b"raft":  # a membership change (RAFT ADDNODE ...)
            reply = self.membership.command(args, forwarded=True)
        elif error is not None or (error := self.memory.refuse(args)) is not None:
            reply = Pending.of(error)  # (maxmemory checked again here, on the leader)
        elif self.core.role is not Role.LEADER:
            reply = Pending.of(NO_LEADER)
        else:
            reply = Pending()
            self._dispatch(args, True, reply, trio.current_time())
        reply.add_callback(self._forward_replier(msg))

    def _forward_replier(self, msg: ForwardRequest) -> Callable[[Any], None]:
        limit = max_reply_bytes(self.settings)

        def send_back(value: Any) -> None:
            reply = encode_reply(value, 3)
            if len(reply) > limit:  # would not fit in a frame: the follower's client
                reply = encode_reply(ErrorReply(  # would wait for nothing
                    f"ERR the reply ({len(reply)} bytes) is too large to return through "
                    f"this node; the command was applied; read the result from the leader"
                ), 3)
            self.transport.send(ForwardResponse(
                term=self.core.term, src=self.id, dst=msg.src, req_id=msg.req_id,
                reply=reply,
            ))
        return send_back

    # -- membership entry points (raftkv.node.membership) ---------------------------------

    def forward_command(self, args: list[bytes], pending: Pending) -> None:
        """Send a command to the leader as a ForwardRequest; ``pending`` gets its reply."""
        self._forward(args, pending, trio.current_time() + self.settings.request_timeout)

    def await_commit(self, index: int, term: int, pending: Pending) -> None:
        """``pending`` gets OK once the entry proposed at (index, term) is applied, LOST if
        another term's entry is, UNKNOWN at the request timeout."""
        self._track_write(index, term, pending,
                          trio.current_time() + self.settings.request_timeout)
        self.wake()

    def _track_write(self, index: int, term: int, pending: Pending, deadline: float) -> None:
        old = self._writes.get(index)
        if old is not None and not old[1].done:
            # An entry of an older term we proposed at this index is gone from our log, now
            # that we lead and reuse the index: it never committed (Leader Completeness).
            self._fail_write(old[1], LOST)
        self._writes[index] = (term, pending, deadline)

    # -- introspection (INFO, RAFT STATUS) -------------------------------------------------

    def leader_client_addr(self) -> str:
        leader = self.core.leader_id
        if leader == self.id:
            return self.settings.client_advertised
        if leader:
            return self.transport.peer_client_addr(leader) or ""
        return ""

    def raft_info(self) -> dict[str, Any]:
        core = self.core
        meta = self.storage.snapshot_meta()
        members = describe_members(core.cluster_config)
        role = self.membership.role()
        return {
            "node_id": self.id,
            "role": role,
            "term": core.term,
            "leader_id": core.leader_id,
            "leader_client_addr": self.leader_client_addr(),
            "commit_index": core.commit_index,
            "last_applied": self.applied,
            "last_log_index": core.last_index,
            "snapshot_index": meta.index,
            "members": members,
            "client_addr": self.settings.client_advertised,
            "peer_addr": self.settings.peer_advertised,
            "fsync": self.settings.fsync,
            "cluster_id": self.transport.cluster_id,
        }
