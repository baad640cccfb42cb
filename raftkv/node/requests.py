"""Every client request the node owes an answer: one waiter type with a deadline, one sweep,
one fail-all.

A request is a ``Pending`` (raftkv.node.pending) plus a ``Waiter`` in one of six tables,
each keyed by what will answer it:

- ``writes`` by log index: our proposals, answered when their entry applies (LOST if
  another term's entry does);
- ``reads`` by ReadIndex context: batches of reads (``ReadBatch``) waiting for a quorum to
  confirm leadership; the batch being filled (``read_batch``) is not asked yet;
- ``read_wait``, a heap by read index: confirmed batches waiting for apply to catch up;
- ``forwards`` by request id: commands forwarded to the leader, answered by its reply;
- ``unsent``, in arrival order: commands waiting for room in the forwarding window
  (raftkv.node.forwarding), never sent to any leader;
- ``parked``, in arrival order: commands waiting for a leader to be known (or, at a
  leader handing over, for the transfer to end).

Whatever answers a waiter first wins (a Pending takes one value). The sweeper answers every
waiter whose deadline passed with the waiter's own ``late`` reply, so no client waits
forever; ``fail_all`` answers everything at shutdown. A write or a forward that times out
may still have been applied: its answer says UNKNOWN, never "not applied"; a command that
times out in ``unsent`` never left this node, and its answer says so (TRYAGAIN).

Parked commands are the exception to "each its own deadline" while this node leads: a
leader parks writes only while it hands over, and the transfer decides them all, in order
(proposed if it ends with this node leading, else refused or sent on by the driver); it
ends within one election timeout, which bounds their wait. Had each kept its own deadline
(``leader_wait``, then a fixed 2 s under an election timeout of up to 50 s), the sweep refused a
follower's forwarded ``W1`` while the transfer ran, and its ``W2``, parked later, was then
proposed: the log held ``W2`` without ``W1`` (attack20). Once this node no longer leads,
the forwarded writes parked while it led are refused together, at the next sweep, whatever
their deadlines: all or none of them, never a later one without an earlier one.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import trio

from raftkv.node.gathered import Gathered
from raftkv.node.pending import Pending
from wire.raft import NOOP, Entry
from wire.reply import ErrorReply

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
NOT_PROPOSED = ErrorReply(
    "TRYAGAIN the write waited too long to be proposed (the leader's loop was held up); it "
    "was not applied, retry"
)
NOT_SENT = ErrorReply(
    "TRYAGAIN the command waited too long to be forwarded to the leader; it was not sent "
    "and not applied, retry"
)

NOT_LEADER_NOW = ErrorReply(
    "TRYAGAIN the leader this write was forwarded to is no longer taking writes; it was not "
    "applied, retry"
)

SWEEP_INTERVAL = 0.05  # seconds between sweeps: how late a deadline may be answered


class ReadBatch(Pending):
    """The reads a node takes between two passes of its ready loop, asked of the core as one
    ReadIndex (one context, one ``Waiter``, one confirmation): each read began before the
    batch was asked, so the index confirmed for the batch is a linearizable point for each,
    as it is for every read of one core round. Per read that leaves a tuple in a list, where
    a read alone cost a context, a waiter, two core records and two table entries (GET c50
    on a leader: ~26 reads a round). ``set`` answers every read (an error: timed out, not
    confirmed, the node stops); ``serve`` answers each with its own value."""

    __slots__ = ("deadline", "reads")

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline  # the first read's: the batch's Waiter's deadline
        # (args, pending, park_until): park_until is the read's, if no leader is known
        self.reads: list[tuple[list[bytes], Pending, float]] = []

    def set(self, value: Any) -> None:
        if not self.done:
            super().set(value)
            for _, pending, _ in self.reads:
                pending.set(value)

    def serve(self, serve: Callable[[list[bytes], float], Any], now: float) -> None:
        """Answer each read with ``serve(args, now)`` (confirmed and applied up to)."""
        if not self.done:
            self.done = True
            for args, pending, _ in self.reads:
                pending.set(serve(args, now))


@attrs.define(eq=False)
class Waiter:
    """One request waiting for its answer, with its deadline and the reply it gets then."""

    pending: Pending
    deadline: float
    late: ErrorReply  # the answer once ``deadline`` passes
    args: list[bytes] = attrs.Factory(list)  # a read or a parked command: what to run
    term: int = 0  # a write: the term it was proposed in
    leader: int = 0  # a forward: the leader it went to
    write: bool = False  # a parked command: a write (else a read)
    proposal: bool = False  # our own proposal: counted in proposals_failed when it fails
    size: int = 0  # a forward or an unsent command: its arguments' bytes
    scripted: bool = False  # a parked write that runs scripts (its check found: Node)
    forwarded: bool = False  # a parked write a follower forwarded: never sent on (Node)

    @property
    def maybe_applied(self) -> bool:
        """A write or forward: at shutdown it gets its UNKNOWN answer, not a TRYAGAIN."""
        return self.late is UNKNOWN_TIMEOUT or self.late is UNKNOWN_FORWARD


class RequestTracker:
    """The six tables of waiters (module docstring); all of it runs in the trio thread."""

    def __init__(self, stats: dict[str, int],
                 leading: Callable[[], bool] = lambda: False,
                 gathered: Gathered | None = None) -> None:
        self.stats = stats  # the node's counters (proposals_failed)
        self.leading = leading  # whether this node leads now (the parked sweep's rule)
        # The write runs a leader gathered for its ready loop's next look (gathered.py):
        # swept too, since a loop held up (a stalled fsync) looks no more.
        self.gathered = gathered
        self.writes: dict[int, Waiter] = {}
        self.reads: dict[bytes, Waiter] = {}
        self.read_batch: ReadBatch | None = None  # the reads not yet asked of the core
        self.read_wait: list[tuple[int, int, Waiter]] = []
        self.forwards: dict[int, Waiter] = {}
        self.parked: deque[Waiter] = deque()
        self.unsent: deque[Waiter] = deque()
        self.forward_bytes = 0  # arguments' bytes of the waiters in ``forwards``
        self.unsent_bytes = 0  # and in ``unsent``
        # Called whenever ``forwards`` shrank or the leader changed: the forwarder may send
        # more of ``unsent`` (raftkv.node.forwarding.Forwarder.pump).
        self.on_forwards_changed: Callable[[], None] | None = None
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        """A fresh id for a ReadIndex context or a forwarded request."""
        return next(self._ids)

    # -- writes ---------------------------------------------------------------------------

    def track_write(self, index: int, term: int, pending: Pending, deadline: float) -> None:
        old = self.writes.get(index)
        if old is not None and not old.pending.done:
            # An entry of an older term we proposed at this index is gone from our log, now
            # that we lead and reuse the index: it never committed (Leader Completeness).
            self.fail_write(old, LOST)
        # Positionally (args, term, leader, write, proposal): attrs' __init__ given keywords
        # took ~0.2 us more, a leader's every proposal (p16).
        self.writes[index] = Waiter(pending, deadline, UNKNOWN_TIMEOUT, [], term, 0, False,
                                    True)

    def applied(self, entry: Entry, result: Any) -> None:
        """``entry`` was applied with ``result``: answer the write proposed at its index."""
        waiter = self.writes.pop(entry.index, None)
        if waiter is not None:
            if waiter.term == entry.term and entry.kind != NOOP:
                waiter.pending.set(result)
            else:
                self.fail_write(waiter, LOST)

    def covered_by_snapshot(self, index: int) -> None:
        """A leader's snapshot up to ``index`` replaced our log: whether our proposals from
        an old term at or below it made it is unknowable from here."""
        for i in [i for i in self.writes if i <= index]:
            self.fail_write(self.writes.pop(i), UNKNOWN_TIMEOUT)

    def fail_write(self, waiter: Waiter, reply: ErrorReply) -> None:
        if waiter.proposal and not waiter.pending.done:
            self.stats["proposals_failed"] += 1
        waiter.pending.set(reply)

    # -- reads ----------------------------------------------------------------------------

    def add_read(self, args: list[bytes], pending: Pending, deadline: float,
                 park_until: float) -> bool:
        """A read joins the batch being filled; True if it opened the batch (the ready
        loop must be woken to ask it)."""
        batch = self.read_batch
        opened = batch is None
        if batch is None:
            batch = self.read_batch = ReadBatch(deadline)
        batch.reads.append((args, pending, park_until))
        return opened

    def take_read_batch(self) -> ReadBatch | None:
        """The batch filled since the last call (to be asked of the core), or None."""
        batch, self.read_batch = self.read_batch, None
        return batch

    def track_read(self, ctx: bytes, batch: ReadBatch) -> None:
        self.reads[ctx] = Waiter(batch, batch.deadline, READ_FAILED)

    def read_confirmed(self, ctx: bytes, index: int, applied: int) -> Waiter | None:
        """A quorum confirmed the reads ``ctx`` at ``index``: the waiter if they may be served
        now (``applied`` reached ``index``), else None (it waits in ``read_wait``)."""
        waiter = self.reads.pop(ctx, None)
        if waiter is None or index <= applied:
            return waiter
        waiter.late = APPLY_TIMEOUT
        heapq.heappush(self.read_wait, (index, self.next_id(), waiter))
        return None

    def reads_applied(self, applied: int) -> Iterator[Waiter]:
        """The confirmed batches that may be served now that ``applied`` is reached."""
        wait = self.read_wait
        while wait and wait[0][0] <= applied:
            yield heapq.heappop(wait)[2]

    def read_failed(self, ctx: bytes) -> None:
        waiter = self.reads.pop(ctx, None)
        if waiter is not None:
            waiter.pending.set(READ_FAILED)

    # -- forwards -------------------------------------------------------------------------

    def track_forward(self, req_id: int, pending: Pending, deadline: float,
                      leader: int, size: int = 0) -> None:
        self.forwards[req_id] = Waiter(pending, deadline, UNKNOWN_FORWARD, leader=leader,
                                       size=size)
        self.forward_bytes += size

    def _forward_done(self, req_id: int) -> Waiter | None:
        waiter = self.forwards.pop(req_id, None)
        if waiter is not None:
            self.forward_bytes -= waiter.size
        return waiter

    def forward_answered(self, req_id: int) -> Pending | None:
        waiter = self._forward_done(req_id)
        if waiter is None:
            return None
        self._forwards_changed()
        return waiter.pending

    def forward_leaders(self) -> set[int]:
        """The nodes that owe us the reply to a forward."""
        return {waiter.leader for waiter in self.forwards.values()}

    def leader_changed(self, leader: int) -> None:
        """A new leader was elected: commands forwarded to an earlier one will get no reply
        (that leader is gone or deposed), so answer them now instead of at the timeout.
        Unsent commands were never sent anywhere: they may go to the new leader."""
        for req_id, waiter in list(self.forwards.items()):
            if waiter.leader != leader:
                self._forward_done(req_id)
                waiter.pending.set(UNKNOWN_FORWARD)
        self._forwards_changed()

    def _forwards_changed(self) -> None:
        if self.on_forwards_changed is not None:
            self.on_forwards_changed()

    # -- commands waiting for room in the forwarding window ---------------------------------

    def queue_unsent(self, args: list[bytes], pending: Pending, deadline: float,
                     size: int) -> None:
        self.unsent.append(Waiter(pending, deadline, NOT_SENT, args, size=size))
        self.unsent_bytes += size

    def next_unsent(self) -> Waiter | None:
        """The oldest unsent command still unanswered (taken out), or None."""
        while self.unsent:
            waiter = self.unsent.popleft()
            self.unsent_bytes -= waiter.size
            if not waiter.pending.done:
                return waiter
        return None

    def fail_unsent(self, reply: ErrorReply) -> None:
        """Answer every unsent command with ``reply`` (a definite "not applied")."""
        unsent, self.unsent, self.unsent_bytes = self.unsent, deque(), 0
        for waiter in unsent:
            waiter.pending.set(reply)

    # -- commands waiting for a leader ----------------------------------------------------

    def park(self, args: list[bytes], write: bool, pending: Pending, until: float,
             scripted: bool = False, forwarded: bool = False) -> None:
        self.parked.append(Waiter(pending, until, NO_LEADER, args, write=write,
                                  scripted=scripted, forwarded=forwarded))

    def unpark(self) -> list[Waiter]:
        """Take every parked command still unanswered (a leader is known: run them)."""
        parked, self.parked = self.parked, deque()
        return [w for w in parked if not w.pending.done]

    # -- deadlines ------------------------------------------------------------------------

    async def run_sweeper(self) -> None:
        """Fail requests whose deadline passed; a reply is owed to every client."""
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            self.sweep(trio.current_time())

    def sweep(self, now: float) -> None:
        """Answer every request whose deadline is ``now`` or earlier."""
        forwards = len(self.forwards)
        batch = self.read_batch
        if batch is not None and batch.deadline <= now:  # (the ready loop is held up)
            self.read_batch = None
            batch.set(READ_FAILED)
        gathered = self.gathered
        if gathered is not None and gathered.items and gathered.items[0][3] <= now:
            gathered.fail(NOT_PROPOSED)  # (held up too: all of them wait behind that loop)
        for table in (self.writes, self.reads, self.forwards):
            for key, waiter in list(table.items()):
                if waiter.deadline <= now:
                    del table[key]
                    if table is self.forwards:
                        self.forward_bytes -= waiter.size
                    self.fail_write(waiter, waiter.late)
        if any(w.deadline <= now for w in self.unsent):
            late = [w for w in self.unsent if w.deadline <= now]
            self.unsent = deque(w for w in self.unsent if w.deadline > now)
            self.unsent_bytes = sum(w.size for w in self.unsent)
            for waiter in late:
                waiter.pending.set(NOT_SENT)
        if any(item[2].deadline <= now for item in self.read_wait):
            late = [item[2] for item in self.read_wait if item[2].deadline <= now]
            self.read_wait = [item for item in self.read_wait if item[2].deadline > now]
            heapq.heapify(self.read_wait)
            for waiter in late:
                waiter.pending.set(APPLY_TIMEOUT)
        self._sweep_parked(now)
        if len(self.forwards) < forwards:
            self._forwards_changed()  # room in the window: the next unsent may go

    def _sweep_parked(self, now: float) -> None:
        """Parked commands: none while this node leads (a transfer decides them, module
        docstring); else every forwarded write, refused, and the rest by their deadlines."""
        parked = self.parked
        if not parked or self.leading():
            return
        if any(w.forwarded for w in parked):
            self.parked = deque(w for w in parked if not w.forwarded)
            for waiter in parked:
                if waiter.forwarded:
                    waiter.pending.set(NOT_LEADER_NOW)
            parked = self.parked
        while parked and parked[0].deadline <= now:
            parked.popleft().pending.set(NO_LEADER)

    def fail_all(self, reply: ErrorReply) -> None:
        """Answer everything (the node stops): ``reply``, or UNKNOWN where a write or a
        forward may have been applied."""
        waiters = [*self.writes.values(), *self.reads.values(),
                   *(item[2] for item in self.read_wait), *self.forwards.values(),
                   *self.parked, *self.unsent]
        if self.read_batch is not None:
            waiters.append(Waiter(self.read_batch, 0.0, READ_FAILED))
            self.read_batch = None
        for waiter in waiters:
            self.fail_write(waiter, waiter.late if waiter.maybe_applied else reply)
        self.writes.clear()
        self.reads.clear()
        self.read_wait.clear()
        self.forwards.clear()
        self.parked.clear()
        self.unsent.clear()
        self.forward_bytes = self.unsent_bytes = 0
