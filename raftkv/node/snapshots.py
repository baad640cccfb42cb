"""Snapshots in the runtime: taking our own, receiving and installing a leader's.

Taking: between Readys the ready loop asks ``maybe_start`` to compact the log once
``snapshot_entries`` entries were applied since the last snapshot, or when RAFT SNAPSHOT
asks (``request``); the snapshot file is written in a worker thread as a task of its own
(the ready loop keeps turning, heartbeats keep flowing), and the in-memory switch happens
under the storage lock, never in the middle of a WAL sync. Automatic snapshots start only
once the node serves (one that needs space it lacks must not stand between a restart and
serving), and after one could not be written (disk full, no descriptor) the next waits a
growing delay.

When: at the first log index ``k * every + phase`` at least ``3/4 every`` entries after
the last snapshot, where the leader's phase is 0 and, with --snapshot-stagger, each
follower's is a fixed fraction of ``every`` drawn from its id (``snapshot_phase``), so the
nodes of a cluster do not all compact at once (they did: three snapshots of the same
index together starved a 2-core machine and the leader's heartbeats with it). Off by
default: on a loaded machine, followers that are not busy with a snapshot of their own
time out when the leader stalls on its own (README Performance, branch ``stab``).

The schedule counts commands where entries hold several: it stands at the applied index
or, if more, at the last snapshot's index plus the commands applied since
(``KVStateMachine.commands_applied``: each command of an EXEC counts). So a leader's
entries of gathered write runs (raftkv.node.gathered, up to --max-keys-per-command SETs
each) keep the log between two snapshots, and a restart's replay, about as large as
``every`` plain writes made them; with one command an entry nothing changes.

A leader defers its own automatic snapshots (``leader_defers``): its loop serves every
client and sends every heartbeat, and each snapshot it takes costs that loop CPU and the
GIL while the state is copied and encoded; on a loaded 2-core machine its loop stalled
123-165 ms at its own snapshot, against an election timeout of 150-300 ms. The log just
grows past the point, up to ``--snapshot-leader-defer`` x ``every`` entries after the last
snapshot (disk, memory and restart time stay bounded), or until used memory passes half of
--maxmemory, or while a member is more than ``every`` entries behind; then it snapshots
anyway. The last because catching a member up from the log cost the leader's loop more
than a snapshot does (encoded and sent in worker threads): in loaded stability runs a
follower restarted 20-30k entries behind a deferring leader cost an election both times.
Followers keep their schedule, and a leader that steps down is due at once. RAFT SNAPSHOT
is immediate on every node.

With --snapshot-fork the state is encoded in a forked child (snapshot_child.py), not a
worker thread: a thread holds the loop's GIL through every long C call of the encoder.

Receiving: a follower writes received chunks durably as its Readys hand them out (memory
stays bounded) and installs the last one (raftkv.raft.ready describes the contract).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterator

import trio

from raftkv.backoff import Backoff
from raftkv.kv import KVState, decode_snapshot_stream, snapshot_pieces
from raftkv.log import event
from raftkv.metrics import NodeMetrics
from raftkv.node.apply import Applier
from raftkv.node.pending import Pending
from raftkv.node.snapshot_child import ChildFailed, SnapshotChild
from raftkv.node.snapshot_gate import SnapshotGate
from raftkv.raft import StorageError
from raftkv.raft.ready import Ready
from raftkv.storage import DiskStorage, SnapshotNotWritten, SnapshotWriter
from wire.raft import InstallSnapshot, RaftMessage, SnapshotMeta
from wire.reply import ErrorReply

log = logging.getLogger("raftkv.node")

_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: consecutive ids spread evenly


SNAPSHOT_PIECE = 1 << 20  # bytes per piece of a snapshot's encoding (EncodedPieces)


class EncodedPieces:
    """A node's own snapshot, encoded piece by piece as the file writer takes them, and
    the bytes it came to. One ``bytes`` of it all meant the packer's buffer growing by
    doubling, then a copy of it, held until written: with 100k keys and their feed, the
    nodes' RSS rose 8-16 MiB over the steady state while a snapshot was taken
    (tests/bench/bench_memory.py). Looking at the size after every item costs ~30 ms more
    CPU per 100k keys in the worker thread."""

    def __init__(self, state: KVState) -> None:
        self._pieces = snapshot_pieces(state, SNAPSHOT_PIECE)
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            self.size += len(piece)
            yield piece


def snapshot_phase(node_id: int, every: int, leading: bool) -> int:
    """Where in each run of ``every`` entries this node takes its automatic snapshot: 0
    for the leader (a lagging follower needs its compacted log soonest), and for a
    follower somewhere in the middle half, fixed by its id (ids 1, 2, 3 of ``every`` =
    10,000: 5,590, 3,680, 6,770), so followers keep away from the leader and mostly from
    each other."""
    if leading:
        return 0
    spread = (node_id * _GOLDEN) % 2**64
    return every // 4 + (every // 2) * spread // 2**64


def snapshot_due(applied: int, last: int, every: int, phase: int, runs: int = 1) -> bool:
    """Whether a node that applied up to ``applied`` and last compacted at ``last`` is due:
    at its first point ``k * every + phase`` at least ``runs * every - every / 4`` entries
    after ``last`` (a snapshot lands a few entries past its point: 10,001 for 10,000, and
    the next must still be 20,000). In steady state ``runs * every`` apart; 3/4 to 7/4 of
    ``every`` more after a role change or a RAFT SNAPSHOT, which move ``last`` off the
    node's points."""
    first = last + runs * every - every // 4
    return applied >= first + (phase - first) % every


def leader_defers(applied: int, last: int, every: int, factor: int) -> bool:
    """Whether a leader skips an automatic snapshot that is due: yes until its point
    ``factor`` runs of ``every`` entries after ``last`` (``snapshot_due`` with ``runs``;
    a leader's points are the followers' ``k * every``). ``factor`` 1: never."""
    return not snapshot_due(applied, last, every, 0, factor)


class Snapshotter:
    def __init__(self, storage: DiskStorage, storage_lock: trio.Lock, applier: Applier,
                 metrics: NodeMetrics, every: int, rng: random.Random,
                 background: Callable[..., None], wake: Callable[[], None],
                 core_step: Callable[[RaftMessage], None],
                 next_tick: Callable[[], Awaitable[int]],
                 node_id: int = 0, leading: Callable[[], bool] = lambda: False,
                 fork: bool = False, stagger: bool = False, leader_defer: int = 1,
                 memory_high: Callable[[], bool] = lambda: False,
                 slowest_match: Callable[[], int | None] = lambda: None) -> None:
        self.storage = storage
        self.leader_defer = leader_defer  # a leader compacts at most this x every entries
        self.memory_high = memory_high  # used memory is high: a leader defers no longer
        self.slowest_match = slowest_match  # a leader's least caught-up member (None: none)
        self.deferred = 0  # automatic snapshots a leader put off (INFO)
        # ``kv.commands_applied`` at the last snapshot taken or installed (or at start: the
        # log since the snapshot is replayed, and counted, before serving).
        self._commands_at_last = 0
        self.stagger = stagger  # followers at offsets from the leader's points
        self.fork = fork  # encode in a forked child, else in a worker thread
        self.node_id = node_id
        self.leading = leading
        self.storage_lock = storage_lock  # the ready loop holds it around each Ready
        self.applier = applier
        self.metrics = metrics
        self.every = every  # --snapshot-entries (0: only on request)
        self.background = background
        self.wake = wake
        self._serving = False  # automatic snapshots only once the node serves
        self._waiters: list[Pending] = []  # RAFT SNAPSHOT callers
        self._running = False
        self._deferring = False  # a leader is past a point it did not snapshot at
        self._backoff = Backoff(1.0, 60.0, rng)
        self._not_before = 0.0
        self._writer: SnapshotWriter | None = None  # the snapshot being received
        self._logged: set[tuple[int, int, bool]] = set()  # transfers already logged
        self._core_step = core_step
        # A received snapshot is decoded before its last chunk reaches the core
        # (snapshot_gate.py): the core takes the last chunk as installed.
        self.gate = SnapshotGate(step=self._step_checked, writer=lambda: self._writer,
                                 decode=decode_snapshot_stream, next_tick=next_tick,
                                 spawn=background)

    def _step_checked(self, msg: RaftMessage) -> None:
        """A last chunk the gate let through (later than it came: it may be stale)."""
        self._core_step(msg)
        self.wake()

    # -- taking ---------------------------------------------------------------------------

    def start_serving(self) -> None:
        """The node serves clients: automatic snapshots may start from now on."""
        self._serving = True

    def request(self) -> Pending:
        """RAFT SNAPSHOT: snapshot what is applied now; the Pending gets the snapshot index."""
        pending = Pending()
        self._waiters.append(pending)
        self.wake()
        return pending

    def maybe_start(self) -> None:
        """Between Readys: start a snapshot if asked to, or if enough was applied since the
        last one."""
        if self._running:
            return
        applied = self.applier.applied
        if not self._waiters:
            every = self.every
            last = self.storage.snapshot_meta().index
            leading = self.leading()
            # Where the schedule stands: the applied index, or past it by the commands
            # applied since ``last`` if those are more (entries of several commands).
            at = max(applied, last + self.applier.kv.commands_applied - self._commands_at_last)
            if not every or not snapshot_due(at, last, every,
                                             snapshot_phase(self.node_id, every,
                                                            not self.stagger or leading)):
                return
            if (leading and leader_defers(at, last, every, self.leader_defer)
                    and not self.memory_high() and not self._member_lags(applied)):
                if not self._deferring:
                    self._deferring = True
                    self.deferred += 1
                return
            self._deferring = False
            if not self._serving or trio.current_time() < self._not_before:
                return
        waiters, self._waiters = self._waiters, []
        if applied <= self.storage.snapshot_meta().index:
            for pending in waiters:
                pending.set(self.storage.snapshot_meta().index)
            return
        a = self.applier
        meta = SnapshotMeta(applied, a.applied_term, a.applied_config)
        kv = a.kv
        self._commands_at_last = kv.commands_applied  # (a failed one waits as long again)
        child = None
        if self.fork:
            try:
                # The child sees the state as it is now, at ``applied``: no copy needed.
                # (It writes each piece as it is packed: the stall watch sees it working.)
                child = SnapshotChild(
                    lambda: snapshot_pieces(kv.snapshot_state(copy=False), SNAPSHOT_PIECE))
            except OSError as exc:  # no memory or no process left for a fork: a thread
                event(log, logging.WARNING, "snapshot fork failed", index=meta.index,
                      reason=exc)
        state = kv.snapshot_state() if child is None else None
        self._running = True
        self.background(self._take, meta, child, state, len(kv), waiters)

    def _member_lags(self, applied: int) -> bool:
        """A member more than ``every`` entries behind: it will need a snapshot, not the
        log (see the module docstring)."""
        match = self.slowest_match()
        return match is not None and match < applied - self.every

    async def _take(self, meta: SnapshotMeta, child: SnapshotChild | None,
                    state: KVState | None, keys: int, waiters: list[Pending]) -> None:
        started = trio.current_time()
        storage = self.storage
        try:
            data: SnapshotChild | EncodedPieces
            # The file in a worker thread beside the ready loop's log writes: the snapshot
            # covers only applied entries, which are already durable, so no log sync first.
            # (The file is read back and checked there too, not on the loop.)
            try:
                if child is not None:
                    data = child  # (its bytes written as they come from its pipe)
                    snap = await child.stream_to(
                        lambda pieces: storage.prepare_compact(meta, pieces, False))
                else:
                    data = EncodedPieces(state)  # (encoded in the thread that writes the file)
                    snap = await trio.to_thread.run_sync(storage.prepare_compact, meta, data,
                                                         False)
            except (ValueError, StorageError) as exc:
                # A leader's snapshot replaced our log meanwhile: this one is moot.
                event(log, logging.INFO, "snapshot skipped", index=meta.index, reason=exc)
                snap = None
            except (SnapshotNotWritten, ChildFailed) as exc:
                # Nothing changed on disk and the log goes on: not a reason to stop. Try
                # again later (growing delays), so a full disk or an encoder that keeps
                # failing does not crash-loop us.
                self._backoff.failed()
                delay = self._backoff.delay()
                self._not_before = trio.current_time() + delay
                event(log, logging.WARNING, "snapshot child failed"
                      if isinstance(exc, ChildFailed) else "snapshot not written",
                      index=meta.index, reason=exc, retry_in_s=round(delay, 1))
                for pending in waiters:
                    pending.set(ErrorReply(f"ERR snapshot not written: {exc}"))
                return
            if snap is not None:
                async with self.storage_lock:  # the switch drops segments: not mid-sync
                    storage.finish_compact(meta, snap)
                took = trio.current_time() - started
                self.metrics.snapshot_duration.labels("take").observe(took)
                self._backoff.reset()
                event(log, logging.INFO, "snapshot taken", index=meta.index, term=meta.term,
                      bytes=data.size,
                      keys=keys,
                      ms=round(took * 1000, 1))
        finally:
            self._running = False
        index = storage.snapshot_meta().index
        for pending in waiters:
            pending.set(index)
        self.wake()

    # -- receiving ------------------------------------------------------------------------

    async def receive(self, rd: Ready) -> None:
        """Write received chunks durably as they come; install at the last one. The core
        reads no storage until this Ready's advance, so the install may replace the log
        from a worker thread."""
        if rd.snapshot_discard:
            self.gate.discarded()
        if rd.snapshot_discard and self._writer is not None:
            writer, self._writer = self._writer, None
            await trio.to_thread.run_sync(writer.abort)
        for chunk in rd.snapshot_chunks:
            writer = self._writer
            if writer is None or chunk.offset == 0 or writer.meta != chunk.meta:
                if writer is not None:
                    await trio.to_thread.run_sync(writer.abort)
                self._writer = None
                writer = await trio.to_thread.run_sync(self.storage.snapshot_writer, chunk.meta)
                self._writer = writer
                event(log, logging.INFO, "snapshot receiving", leader=chunk.src,
                      index=chunk.meta.index, term=chunk.meta.term)
            await trio.to_thread.run_sync(writer.write, chunk.offset, chunk.data)
            if chunk.done:
                self._writer = None
                await self._install(writer)

    async def _install(self, writer: SnapshotWriter) -> None:
        started = trio.current_time()
        meta = writer.meta
        await trio.to_thread.run_sync(writer.finish)
        state = self.gate.take(meta)  # decoded before the core took the last chunk
        if state is None:  # read from the file as it decodes (checksum checked)
            state = await trio.to_thread.run_sync(self.storage.decode_snapshot,
                                                  decode_snapshot_stream)
        applier = self.applier
        applier.kv.replace(state)
        applier.restored(meta)
        self._commands_at_last = applier.kv.commands_applied
        applier.requests.covered_by_snapshot(meta.index)
        applier.apply([])  # serve the reads that waited for this index
        self.metrics.snapshot_duration.labels("install").observe(trio.current_time() - started)
        event(log, logging.INFO, "snapshot installed", index=meta.index, term=meta.term,
              bytes=self.storage.snapshot_size(), keys=len(applier.kv),
              ms=round((trio.current_time() - started) * 1000, 1))

    def log_sends(self, messages: list[RaftMessage]) -> None:
        """One INFO line when a snapshot transfer to a follower starts and when it ends."""
        if not log.isEnabledFor(logging.INFO):
            return  # the scan below only feeds these log lines
        for msg in messages:
            if type(msg) is InstallSnapshot and (msg.offset == 0 or msg.done):
                key = (msg.dst, msg.meta.index, msg.done)
                if key in self._logged:
                    continue
                self._logged.add(key)
                if msg.offset == 0:
                    event(log, logging.INFO, "snapshot sending", to=msg.dst,
                          index=msg.meta.index, term=msg.meta.term)
                if msg.done:
                    event(log, logging.INFO, "snapshot sent", to=msg.dst, index=msg.meta.index,
                          bytes=msg.offset + len(msg.data))
