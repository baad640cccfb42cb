"""One node's runtime: it builds its one-job parts once the storage is open, runs them in
one nursery, and is the face the client port (raftkv.server) sees.

The parts, each in its own module: opening (cluster id, storage, transport), the core
driver (the ready loop, ticker and inbound messages), the request tracker (every answer
owed, with its deadline), the applier, the snapshotter, forwarding and membership. The
node itself only decides where a client's command goes (``submit``): a write is proposed
on the leader or forwarded to it, a read goes through ReadIndex, and a command that finds
no leader waits, parked, until one is known or its deadline passes. Client requests never
get a task each: a request is a ``Pending`` that a part fills.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio

from raftkv.kv import (
    COMMANDS,
    CommandSpec,
    KVStateMachine,
    check_call,
    check_once,
    encode_entry,
    entry_cost,
    exec_of,
    key_cap,
    lookup,
    unbuilt_error,
    validate,
)
from raftkv.kv.commands import SPECS, Decoded
from raftkv.kv.features import (
    BUDGET_LEVEL,
    FEATURE_LEVEL,
    MAY_RUN_SCRIPTS,
    REAP_LEVEL,
    WATCH_LEVEL,
    is_exec,
    runs_scripts,
    wrap,
)
from raftkv.kv.feed import ChangeFeed
from raftkv.log import event
from raftkv.metrics import NodeMetrics
from raftkv.node.apply import Applier
from raftkv.node.backup_source import BackupSource
from raftkv.node.clock import LeaderClock
from raftkv.node.driver import CoreDriver
from raftkv.node.expiry import active_expiry
from raftkv.node.features import LevelLearner, answer_features, gate_level
from raftkv.node.forwarding import Forwarder
from raftkv.node.gathered import Gathered, entry_args, joined, run_bytes, share
from raftkv.node.heap import freeze_startup_heap
from raftkv.node.listen import start_listener
from raftkv.node.membership import Membership
from raftkv.node.memory import MemoryGuard
from raftkv.node.opening import build_transport, known_members, load_snapshot_state, open_data
from raftkv.node.pending import Pending
from raftkv.node.publish import (
    answer_probe,
    must_probe,
    publish_members,
    wait_until_unpublished,
)
from raftkv.node.requests import NOT_LEADER_NOW, SHUTTING_DOWN, RequestTracker
from raftkv.node.settings import NodeSettings
from raftkv.node.sizes import request_size
from raftkv.node.snapshots import Snapshotter
from raftkv.node.sync_thread import SyncThread
from raftkv.node.ticker import Ticker
from raftkv.node.transport import PeerTransport
from raftkv.raft import NotLeader, RaftConfig, RaftCore, Role
from raftkv.storage import DiskStorage
from wire.raft import NORMAL, ForwardRequest
from wire.reply import ErrorReply

log = logging.getLogger("raftkv.node")
# Definitely not applied (TRYAGAIN's meaning): the client should ask a member.
REMOVED = ErrorReply("TRYAGAIN this node was removed from the cluster; send commands to a "
                     "member")
# The read ``Node.barrier`` waits for: through ReadIndex like any read, O(1) on any state.
BARRIER_READ = (b"EXISTS", b"")


@attrs.frozen
class Checks:
    """Which of ``Node._checked``'s checks can refuse a call of one command, and whether
    its entry may run scripts: decided once per command (``CHECKS``), so a plain write
    (SET) skips what cannot refuse it (each skipped check lowercased the name again: a
    pipelined SET's share on a saturated leader, p16) and every check stays in one place.
    A check added to ``_checked`` runs for every command unless one of these says not."""

    write: bool  # through the log: --maxmemory may refuse it (a read never grows memory)
    # An internal form (``unbuilt_error``; ``once``, ``exec``: also what they carry) or a
    # SETRANGE (``growth_error``): the checks of what the entry builds or holds.
    entry: bool
    scripts: bool  # it may run scripts (``runs_scripts`` is asked; else False)


def checks_of(spec: CommandSpec) -> Checks:
    return Checks(write=spec.is_write, entry=spec.internal or spec.name == "setrange",
                  scripts=spec.is_write and spec.name in MAY_RUN_SCRIPTS)


CHECKS = {name: checks_of(spec) for name, spec in COMMANDS.items()}
UNKNOWN = Checks(write=True, entry=True, scripts=True)  # (``validate`` refuses it anyway)
ONCE = COMMANDS["once"]
_UNDECODED: Decoded = ErrorReply("(not decoded yet)")  # ``_checked``'s default: decode here

# A command the leader runs for a follower (RAFT ADDNODE ...): raftkv.server.admin's.
Admin = Callable[[list[bytes]], Pending]


class Node:
    """One RaftKV node: core + storage + state machine + peer transport."""

    def __init__(self, settings: NodeSettings, *, admin: Admin,
                 rng: random.Random | None = None, level: int = FEATURE_LEVEL) -> None:
        self.settings = settings
        self.id = settings.node_id
        # The feature level this node reports to a leader's RAFT FEATURES (tests stand in
        # for an earlier release with 0; it does not change what this node applies).
        self.level = level
        self.rng = rng or random.Random()
        self.admin = admin  # runs a forwarded RAFT membership change on the leader
        self.kv = KVStateMachine(feed=ChangeFeed(settings.watch_retention_entries,
                                                 settings.watch_retention_bytes))
        self.kv.read_budget = settings.script_budget
        self.clock = LeaderClock()  # stamps our proposals as leader; the time reads use
        self.started_at = 0.0
        # trio's clock, read per command: ``run`` binds its clock's own method (one call,
        # where ``trio.current_time`` is three).
        self._now: Callable[[], float] = trio.current_time
        self.client_port = 0  # actual bound ports (tests bind port 0)
        self.peer_port = 0
        self.stopping = False
        # Client write runs for the ready loop's next look (raftkv.node.gathered).
        self._gathered = Gathered(settings.max_keys_per_command,
                                  run_bytes(settings.max_request_bytes))
        # (a forwarded command passed ``_check_forwarded``: whether it runs scripts)
        self._forwarded: tuple[list[bytes] | None, bool] = (None, False)
        self.stats = {"proposed": 0, "forwarded": 0, "reads": 0, "applied": 0,
                      "proposals_failed": 0, "leader_changes": 0, "reads_leader": 0,
                      "reads_follower": 0, "reads_stale": 0, "wal_syncs": 0,
                      "forward_replies_dropped": 0}
        self.metrics = NodeMetrics(self, enabled=bool(settings.metrics_addr))
        self.requests = RequestTracker(self.stats, self._leads, self._gathered)
        self.applier = Applier(self.kv, self.clock, self.requests, self.stats,
                               self.start_background)
        self.backups = BackupSource(self)  # RAFT BACKUP sessions
        self.memory = MemoryGuard(settings.maxmemory)
        self.ticker = Ticker()  # from the start: /livez may wait for a tick while we open
        # Built by run() once the storage is open.
        self.storage: DiskStorage
        self.core: RaftCore
        self.transport: PeerTransport
        self.forwarder: Forwarder
        self.membership: Membership
        self.snapshots: Snapshotter
        self.driver: CoreDriver
        self._nursery: trio.Nursery
        self.levels: LevelLearner

    @property
    def applied(self) -> int:
        return self.applier.applied

    @property
    def applied_term(self) -> int:
        """The term of the entry at ``applied`` (a snapshot's term)."""
        return self.applier.applied_term

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, serve_clients: Callable[..., Awaitable[None]], *,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Open storage, build the parts, start the loops, then ``serve_clients`` (the
        client port, built by raftkv.serve: started here so connections end with the node)."""
        s, self.storage = await open_data(self.settings, self.rng)
        self.settings = s
        meta = self.storage.snapshot_meta()
        load_snapshot_state(self.storage, self.kv)
        self.applier.restored(meta)
        config = RaftConfig(election_ticks=s.election_ticks, heartbeat_ticks=s.heartbeat_ticks,
                            lazy_commit=True)
        self.core = RaftCore(self.id, self.storage, config, self.rng)
        members, joining = known_members(s, self.storage, self.core)
        event(log, logging.INFO, "node starting", id=self.id, term=self.core.term,
              applied=self.applied, last_index=self.core.last_index,
              gc_frozen=freeze_startup_heap())
        self._now = trio.lowlevel.current_clock().current_time
        self.started_at = self._now()
        self.transport = build_transport(s, members, lambda msg: self.driver.deliver(msg),
                                         self.rng,
                                         lambda: self.core.term,
                                         on_activity=self.core.leader_activity,
                                         on_peer_gone=self._peer_gone)
        self.forwarder = Forwarder(self.id, s, self.core, self.transport, self.requests,
                                   self.stats)
        self.membership = Membership(self.id, s, self.core, self.transport, self.requests,
                                     self.rng, self.wake)
        storage_lock = trio.Lock()
        self.snapshots = Snapshotter(self.storage, storage_lock, self.applier, self.metrics,
                                     s.snapshot_entries, self.rng, self.start_background,
                                     self.wake, self.core.step, self.ticker.next_tick,
                                     self.id, lambda: self.core.role is Role.LEADER,
                                     s.snapshot_fork, s.snapshot_stagger,
                                     s.snapshot_leader_defer, self._memory_high,
                                     self._slowest_match)
        sync_thread = SyncThread()  # the WAL fsync worker, alive while run() is
        self.driver = CoreDriver(
            self.core, self.storage, storage_lock, sync_thread, self.transport, self.applier,
            self.requests, self.snapshots, self.forwarder, self.membership, self.metrics,
            self.stats, self.on_forward_request, self._unpark, ask_reads=self._before_look)
        try:
            async with sync_thread, trio.open_nursery() as nursery:
                self._nursery = nursery
                founders = [m.id for m in self.core.cluster_config.members if not m.learner]
                if must_probe(founders, self.id, self._fresh()):
                    # Held before the peer port listens: a vote request may come at once.
                    self.driver.hold = self.ticker.hold = True
                    nursery.start_soon(self._founder_check, founders)
                self.peer_port = await start_listener(
                    nursery, "--peer-addr", s.peer_addr, self.transport.run)
                nursery.start_soon(self.driver.run)
                nursery.start_soon(self.ticker.run, self.core, s.tick_ms, self.wake)
                nursery.start_soon(publish_members, self.id, self.core, self.kv, self.submit)
                self.levels = LevelLearner(self.id, self.level, self.core, self.kv,
                                           self.transport, self.requests, self.propose_own,
                                           self._applied_ids)
                nursery.start_soon(self.levels.run)
                nursery.start_soon(self.requests.run_sweeper)
                nursery.start_soon(active_expiry, self.core, self.kv, self.clock, self.submit,
                                  s.max_request_bytes)
                self.client_port = await start_listener(
                    nursery, "--client-addr", s.client_addr, serve_clients)
                if joining:
                    nursery.start_soon(self.membership.join, list(s.join))
                self.snapshots.start_serving()
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.storage.close)

    def _memory_high(self) -> bool:
        """Used memory past half of --maxmemory: a leader stops deferring its snapshot
        (its log, held in memory until then, is what a snapshot frees)."""
        limit = self.settings.maxmemory
        return bool(limit) and self.memory.used() > limit // 2

    def _slowest_match(self) -> int | None:
        """The lowest log index a leader knows each other member holds (None: no other
        member, or not leading)."""
        matches = [p.match for m in self.core.cluster_config.members if m.id != self.id
                   if (p := self.core.progress(m.id)) is not None]
        return min(matches, default=None)

    def _fresh(self) -> bool:
        """Storage that holds nothing but a bootstrap: term 0 (it never voted nor heard a
        leader), no entry, nothing applied; its founders (``must_probe``) are the members
        the bootstrap listed (none for a --join node, which learns them from a leader, at
        term 1 or more). Whatever made the directory and whatever this start's flags
        (attack9: a founder that refused, or was killed while it asked, had made its
        directory; started again by a supervisor, or with --join, which a directory with a
        configuration ignores, it skipped the check, voted with its empty log, and v1 was
        lost on every node)."""
        return self.core.term == 0 and self.core.last_index == 0 and self.applied == 0

    async def _founder_check(self, founders: list[int]) -> None:
        """Hold the core (no votes, no campaign, no acks) until a founder says this node
        never served; exit (LostItsData) if one says it did (raftkv.node.publish)."""
        await wait_until_unpublished(self.id, founders, self.transport, self.requests,
                                     lambda: self.core.term, self.rng)
        self.driver.hold = self.ticker.hold = False
        self.wake()

    def _peer_gone(self, peer: int) -> None:
        """The transport's evidence that ``peer``'s process is gone: if it is our leader,
        the core campaigns soon instead of at the end of its election timeout."""
        if peer and peer == self.core.leader_id and self.core.role is Role.FOLLOWER:
            event(log, logging.INFO, "leader unreachable: its peer port refuses", leader=peer)
            self.core.leader_unreachable(peer)
            self.wake()

    def start_background(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` as a task of the node (ends with it)."""
        self._nursery.start_soon(fn, *args)

    def wake(self) -> None:
        self.driver.wake()

    async def next_tick(self) -> int:
        return await self.ticker.next_tick()

    def ticked_within(self, seconds: float) -> int | None:
        return self.ticker.ticked_within(seconds)

    async def stop(self, transfer_timeout: float = 1.0) -> None:
        """Graceful stop: a leader hands leadership to the most caught-up voter first."""
        self.stopping = True
        if self.core.role is Role.LEADER:
            target = self._best_transfer_target()
            if target:
                event(log, logging.INFO, "transferring leadership before stop", to=target)
                try:
                    self.core.transfer_leadership(target)
                    self.wake()
                    with trio.move_on_after(transfer_timeout):
                        while self.core.role is Role.LEADER:
                            await self.driver.role_changed.wait()
                except NotLeader:
                    pass
        self._gathered.fail(SHUTTING_DOWN)
        self.requests.fail_all(SHUTTING_DOWN)
        self._nursery.cancel_scope.cancel()

    def _best_transfer_target(self) -> int:
        voters = [m.id for m in self.core.cluster_config.members
                  if not m.learner and m.id != self.id]
        def match(peer: int) -> int:
            progress = self.core.progress(peer)
            return progress.match if progress is not None else 0

        return max(voters, key=match, default=0)

    # -- client requests ------------------------------------------------------------------

    def submit(self, args: list[bytes]) -> Pending:
        """Run a state-machine command: writes through the log, reads through ReadIndex."""
        spec = SPECS.get(args[0].lower())  # (``lookup`` of bytes, without its call)
        checked = self._checked(spec, args)
        if type(checked) is not bool:
            return Pending.of(checked)
        return self._admit(args, spec.is_write, checked)  # type: ignore[union-attr]

    def _admit(self, args: list[bytes], write: bool, scripted: bool = False) -> Pending:
        """A checked command on its way (``_dispatch``), unless this node is stopping or
        was removed from the cluster. ``scripted``: a write that runs scripts."""
        if self.stopping:
            return Pending.of(SHUTTING_DOWN)
        if self.membership.removed():  # (``removed``, without the property's call)
            return Pending.of(REMOVED)
        pending = Pending()
        now = self._now()  # (read once: the park and the request deadlines)
        self._dispatch(args, write, pending, now + self.settings.leader_wait, now, scripted)
        return pending

    def submit_run(self, commands: list[list[bytes]], size: int) -> Pending:
        """Plain one-key writes of one connection (raftkv.server.write_runs), each of
        which passed ``checked`` (no scripts), ``size`` bytes of arguments together:
        answered with the reply of a lone command, the array of a run's replies. A
        leader gathers them with other connections' runs into one entry at the ready
        loop's next look (raftkv.node.gathered); else each goes alone the way of any
        write (parked, forwarded: never as an EXEC a leader would check as a client's).
        Not checked again as an EXEC: each command was, and an entry holds at most
        ``max_keys_per_command`` of them, each naming one key, and ``run_bytes`` of
        arguments."""
        gathered = self._gathered
        # (``core``: served clients come after ``run`` opened it; ``_leads``, uncalled.)
        if (self.stopping or self.settings.write_run == 1 or self.requests.parked
                or self.core.role is not Role.LEADER or self.membership.removed()
                or len(commands) > gathered.max_commands or size > gathered.max_bytes):
            if len(commands) == 1:
                return self._admit(commands[0], True)
            return joined([self._admit(command, True) for command in commands])
        if gathered.items and not gathered.fits(len(commands), size):
            self._propose_gathered()
        pending = Pending()
        now = self._now()
        gathered.add((commands, pending, now + self.settings.leader_wait,
                      now + self.settings.request_timeout), size)
        if len(gathered.items) == 1:
            self.driver.proposed()  # (the ready loop's next look proposes them)
        return pending

    def _propose_gathered(self, wake: bool = True) -> None:
        """Propose the runs gathered (``submit_run``) as one entry; parked, each its
        own, if this node no longer leads (or is handing leadership over). ``wake``: as
        ``_propose``'s."""
        items = self._gathered.take()
        if not items:
            return
        if len(items) == 1:
            commands, whole, _, deadline = items[0]
        else:
            commands = [command for item in items for command in item[0]]
            whole = Pending()
            whole.add_callback(partial(share, items))
            deadline = min(item[3] for item in items)
        if not self._propose(entry_args(commands), whole, deadline, False, wake):
            park = self.requests.park
            for commands, pending, park_until, _ in items:  # each command alone, in order
                if len(commands) == 1:
                    park(commands[0], True, pending, park_until)
                    continue
                parts = [Pending() for _ in commands]
                for command, part in zip(commands, parts, strict=True):
                    park(command, True, part, park_until)
                joined(parts, pending)

    @property
    def leads(self) -> bool:
        """Whether this node leads now."""
        return self._leads()

    def submit_once(self, entry: list[bytes], spec: CommandSpec | None) -> Pending:
        """``submit`` of ``once id seq command...``, a session's write (the client port's
        RAFT ONCE), ``spec`` being the wrapped command's, which the caller looked up: the
        same checks as ``check`` of the entry, each made once (``validate`` of the entry
        looked the command up again, through three more calls), still before proposing."""
        decoded = exec_of(entry)  # (an EXEC's payload: decoded once for every check)
        numbers = check_once(entry[1], entry[2], spec, entry[3:], decoded)
        if type(numbers) is not tuple:
            return Pending.of(numbers)
        checked = self._checked(ONCE, entry, validated=True, decoded=decoded)
        if type(checked) is not bool:
            return Pending.of(checked)
        return self._admit(entry, True, checked)

    def propose_own(self, args: list[bytes]) -> Pending:
        """An entry this node builds as leader (``member_level``, which ``check`` refuses
        from anyone else): validated, then on its way like a client's write."""
        error = validate(args)
        return (Pending.of(error) if error is not None
                else self._admit(args, True, runs_scripts(args)))

    def barrier(self) -> Pending:
        """A linearizable point: answered (None's place taken by the read's value, or an
        ErrorReply) once this node has applied everything committed when it was asked. The
        read is ``EXISTS ""``, which costs the same on any state; ``DBSIZE``, used before,
        walked every key with a deadline (16 ms on 1M of them, harden11)."""
        return self.submit(list(BARRIER_READ))

    @property
    def removed(self) -> bool:
        """This node is not in its own configuration: its old leader refuses its link, so a
        command forwarded there only timed out as -UNKNOWN, though never applied (attack5)."""
        return self.membership.removed()

    def check(self, args: list[bytes], validated: bool = False) -> ErrorReply | None:
        """A client's command before it goes anywhere: a known command with the right
        arguments, naming at most --max-keys-per-command keys (raftkv.kv.key_cap), an EXEC
        within what it may copy and walk when it applies (raftkv.kv.entry_cost), within
        --max-request-bytes (every peer-side size is derived from that bound:
        raftkv.node.sizes) and, for one that grows memory, under --maxmemory.
        ``validated``: the caller ran ``validate``'s checks already (``submit_once``).
        Entries no node builds (``unbuilt_error``: a forwarded ``once`` of an internal
        command, internal commands inside an EXEC) are refused here too."""
        checked = self._checked(lookup(args[0]) if args else None, args, validated)
        return checked if type(checked) is not bool else None

    def _checked(self, spec: CommandSpec | None, args: list[bytes], validated: bool = False,
                 decoded: Decoded | None = _UNDECODED) -> ErrorReply | bool:
        """``check``'s error for ``args``, a call of ``spec`` (None: unknown) or, if it
        passed, whether it runs scripts when it applies (``runs_scripts``): decided here,
        once, and carried with the command to ``entry_data`` (each proposal asked it
        again). Every check of every command is here, in one order; ``CHECKS`` says which
        cannot refuse a call of ``spec`` (a read, a plain write). An EXEC's payload
        (``exec_of``) is decoded once and handed to each check that reads it; ``decoded``:
        that, if the caller has it. ``validated``: the caller ran ``validate``'s checks."""
        checks = UNKNOWN if spec is None else CHECKS[spec.name]
        entry = checks.entry
        if not entry:
            decoded = None
        elif decoded is _UNDECODED:
            decoded = exec_of(args)
        if not validated:
            error = validate(args) if spec is None else check_call(spec, args, decoded)
            if error is not None:
                return error
        if entry:  # a form no node builds from a client's command
            error = unbuilt_error(args, decoded)
            if error is not None:
                return error
        # (Each check below answers the common case from its own cheap bound; the two
        # that a plain write's arguments pass are asked without their calls, ~0.15 us.)
        limit = self.settings.max_keys_per_command
        if len(args) > limit + 1 or entry:  # (else it names at most ``limit`` keys)
            error = key_cap.refusal(args, limit, decoded)
            if error is not None:
                return error
        error = self._size_error(args)
        if error is not None:
            return error
        if entry:  # nor may SETRANGE reach past it (APPEND is decided at apply)
            error = self.kv.growth_error(args, self.settings.max_request_bytes, decoded)
            if error is not None:
                return error
        if decoded is not None:  # an EXEC (or ONCE of one): copies, walks
            error = self._cost_error(args, decoded)
            if error is not None:
                return error
        if checks.write and self.memory.limit:  # (no --maxmemory: nothing to refuse)
            error = self.memory.refuse(args)
            if error is not None:
                return error
        return checks.scripts and runs_scripts(args, decoded)

    # ``submit``'s checks, for the client port's write runs (``submit_run``): the error,
    # or whether the command runs scripts. (The method itself: a wrapper was a call more.)
    checked = _checked

    def _cost_error(self, args: list[bytes], decoded: Decoded | None = None
                    ) -> ErrorReply | None:
        """An EXEC's copies and walks when it applies after this node's log (entry_cost)."""
        return entry_cost.refusal(self.kv, args,
                                  copy_limit=2 * self.settings.max_request_bytes,
                                  walk_limit=self.settings.max_keys_per_command,
                                  unapplied=self._unapplied_data, decoded=decoded)

    def _unapplied_data(self) -> list[bytes] | None:
        """The data of the commands in this node's log past its applied index (None while
        a snapshot is being installed): what applies before anything proposed now."""
        core = getattr(self, "core", None)
        if core is None:
            return []  # (not opened yet: no log, nothing in flight)
        if core.last_index - self.applied > entry_cost.INFLIGHT_COMMANDS:
            return None  # (too many to replay: not fetched)
        entries = core.entries_after(self.applied)
        return None if entries is None else [e.data for e in entries if e.kind == NORMAL]

    def _size_error(self, args: list[bytes]) -> ErrorReply | None:
        """The error for a command larger than --max-request-bytes, as sent, or None."""
        limit = self.settings.max_request_bytes
        # RESP frames an argument in at most 25 bytes more than its own (a length of up to
        # 20 digits), the whole in at most 24 more: under that bound no exact count.
        if sum(map(len, args)) + 25 * len(args) + 24 <= limit:
            return None
        size = request_size(args)
        if size <= limit:
            return None
        return ErrorReply(f"ERR request of {size} bytes exceeds max-request-bytes {limit}")

    def _dispatch(self, args: list[bytes], write: bool, pending: Pending,
                  park_until: float, now: float | None = None, scripted: bool = False,
                  forwarded: bool = False) -> None:
        """Propose, forward, park or read ``args``. ``forwarded``: a write a follower sent
        this node as leader, proposed here (at once, or once a transfer ends) or refused
        for good, never sent on: the follower may already have sent the connection's next
        write to a newer leader, which would then run it first (attack18)."""
        core, requests = self.core, self.requests
        deadline = (self._now() if now is None else now) + self.settings.request_timeout
        if write:
            if self._gathered.items:  # a connection's earlier runs reach the log first
                self._propose_gathered()
            if requests.parked:
                # Behind the commands waiting for a leader, which the driver runs first
                # once it looks: a connection's pipelined writes reach the log in its order
                # even when a leader became known between the two (attack16's window).
                requests.park(args, write, pending, park_until, scripted, forwarded)
                self.wake()
            elif core.role is Role.LEADER:
                if not self._propose(args, pending, deadline, scripted):
                    requests.park(args, write, pending, park_until, scripted, forwarded)
            elif forwarded:
                pending.set(NOT_LEADER_NOW)
            elif core.leader_id:
                self.forwarder.forward(args, pending, deadline)
            else:
                requests.park(args, write, pending, park_until, scripted)
        elif self.settings.unsafe_stale_reads and core.role is not Role.LEADER:
            # deliberately unsafe: see NodeSettings
            pending.set(self.applier.serve_read(args))
            self.stats["reads_stale"] += 1
        elif requests.add_read(args, pending, deadline, park_until):
            self.wake()  # (a later read of the batch: the loop has not asked it yet)

    def _propose(self, args: list[bytes], pending: Pending, deadline: float,
                 scripted: bool, wake: bool = True) -> bool:
        """Propose a write as leader, tracked until it applies; False if the core refuses
        (a leadership transfer, or no longer leader). ``wake``: the ready loop must look
        (not when it proposes itself, about to look: a woken loop turned once more for
        nothing, ~12 us of a c1 SET)."""
        try:
            index, term = self.core.propose(self.entry_data(args, scripted))
        except NotLeader:
            return False
        self.requests.track_write(index, term, pending, deadline)
        self.stats["proposed"] += 1
        if wake:
            self.driver.proposed()
        return True

    def _before_look(self) -> None:
        """The ready loop's, before it looks at the core: propose the write runs gathered
        since its last pass as one entry; ask the reads taken since as one ReadIndex
        (raftkv.node.requests.ReadBatch)."""
        if self._gathered.items:
            self._propose_gathered(wake=False)
        requests = self.requests
        batch = requests.take_read_batch()
        if batch is None:
            return
        core = self.core
        ctx = requests.next_id().to_bytes(8, "big")
        try:
            core.read_index(ctx)
        except NotLeader:
            for args, pending, park_until in batch.reads:
                requests.park(args, False, pending, park_until)
            return
        requests.track_read(ctx, batch)
        n = len(batch.reads)
        self.stats["reads"] += n
        self.stats["reads_leader" if core.role is Role.LEADER else "reads_follower"] += n

    def entry_data(self, args: list[bytes], scripted: bool | None = None) -> bytes:
        """The log entry the leader proposes for ``args``: stamped with its time (see
        raftkv/node/clock.py) and, if it runs scripts and every member reads the form,
        holding this node's --script-budget (raftkv.kv.features); an EXEC, at WATCH_LEVEL
        once every member reads it (its WATCH sees an expired key's writes), at REAP_LEVEL
        once every member reads that (a member downgraded past it stops). ``scripted``:
        whether it runs scripts, as its check found (``_checked``; None: asked here)."""
        stamp = self.clock.stamp()
        if scripted is None:
            scripted = runs_scripts(args)
        exec_ = is_exec(args)
        if not scripted and not exec_:
            return encode_entry(args, stamp)
        gate = self.gate_level()
        level = min(gate, REAP_LEVEL) if exec_ and gate >= WATCH_LEVEL else 0
        if scripted and gate >= BUDGET_LEVEL:
            return encode_entry(wrap(args, self.settings.script_budget), stamp,
                                max(level, BUDGET_LEVEL))
        return encode_entry(args, stamp, level)

    def gate_level(self) -> int:
        """The level every member reads: the lowest recorded over the applied and the
        latest configuration (raftkv.node.features)."""
        return gate_level(self.kv.member_levels, self._applied_ids(),
                          (m.id for m in self.core.cluster_config.members))

    def _applied_ids(self) -> list[int]:
        return [m.id for m in self.applier.applied_config.members]

    def _unpark(self) -> None:
        for waiter in self.requests.unpark():
            if waiter.write and len(waiter.args) in (2, 5):
                # An EXEC parked behind writes was checked before they were in any log;
                # they are proposed (or forwarded) just before it now (attack12).
                error = self._cost_error(waiter.args)
                if error is not None:
                    waiter.pending.set(error)
                    continue
            self._dispatch(waiter.args, waiter.write, waiter.pending, waiter.deadline,
                           scripted=waiter.scripted, forwarded=waiter.forwarded)

    def _leads(self) -> bool:
        """Whether this node leads now (before ``run`` opened the core: no)."""
        core = getattr(self, "core", None)
        return core is not None and core.role is Role.LEADER

    def on_forward_request(self, msg: ForwardRequest) -> None:
        """A follower's command, run as leader (raftkv.node.forwarding); or a founder's
        question whether it served, answered by any node (raftkv.node.publish)."""
        level = answer_features(msg.args, self.level)
        if level is not None:
            self.forwarder.reply(msg, level)
            return
        probe = answer_probe(self.kv, msg.args, lambda: self.core.entries_after(self.applied))
        if probe is not None:
            self.forwarder.reply(msg, probe)
            return
        self.forwarder.on_request(msg, self._check_forwarded, self._run_forwarded, self.admin)

    def _check_forwarded(self, args: list[bytes]) -> ErrorReply | None:
        """``check`` of a forwarded command, keeping whether it runs scripts for
        ``_run_forwarded``, which the forwarder calls next with the same list."""
        checked = self._checked(lookup(args[0]) if args else None, args)
        if type(checked) is not bool:
            return checked
        self._forwarded = (args, checked)
        return None

    def _run_forwarded(self, args: list[bytes]) -> Pending:
        checked, scripted = self._forwarded
        self._forwarded = (None, False)
        if checked is not args:  # (another list: its own answer, never this one's)
            scripted = runs_scripts(args)
        # Refused at once unless leader; as leader, parked while a transfer runs (behind
        # the follower's earlier writes, in order: a transfer that ends without a leader
        # change proposes them all; attack19) and refused if it hands over. Their park
        # deadline does not count while this node leads: the transfer decides them all,
        # in order, within an election timeout (raftkv.node.requests; attack20).
        if self.core.role is not Role.LEADER:
            return Pending.of(NOT_LEADER_NOW)
        reply = Pending()
        now = self._now()
        self._dispatch(args, True, reply, now + self.settings.leader_wait, now, scripted,
                       forwarded=True)
        return reply

    def leader_client_addr(self) -> str:
        leader = self.core.leader_id
        if leader == self.id:
            return self.settings.client_advertised
        if leader:
            return self.transport.peer_client_addr(leader) or ""
        return ""
