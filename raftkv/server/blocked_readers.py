"""XREAD ... BLOCK readers waiting for the change feed: bounded, served by one task.

A blocked reader is a ``Pending`` owed to its connection and a ``retry`` closure: read the
feed again from the reader's ids (a read done in slices, raftkv.kv.sliced), or None when
the feed cannot hold anything new for it. Nothing is matched in the apply path: the
applier's ``changes_applied`` only marks the readers dirty and wakes the readers' task, in
O(1) (it used to run every reader's filters against every applied change inside apply:
1,000 readers x 32 globs x a 1,000-key MSET was 32 million glob matches with the loop
held). The task then reads for each reader in turn, in slices, and checks in with the
loop whenever it has worked ``ROUND_SECONDS``: however many readers and whatever their
globs, the loop (heartbeats, other clients) never waits behind feed delivery for longer
than that. A reader whose read finds nothing keeps waiting, its ids moved past what it
looked at (the stream module does that), so the next wake-up reads only newer changes.
The readers asking the same question after a batch share one encoded reply (streams.py's
``ReplyCache``): serving a hundred watchers of the whole feed costs one read and a
hundred socket writes.

Wake-ups are coalesced: two passes start at least a window apart, and a blocked XREAD
reads the feed up to its last id as of the latest pass (streams.py's
``ReplyCache.visible``), also when it comes back right after a reply (it then blocks at
once, nothing read). So a watcher makes at most one round trip a window, however many
batches the node applies, and gets the window's changes in one reply; a change reaches
it at most a window after the pass that would have carried it. A pass right after a
quiet spell starts at once. The window is ``PER_READER_WINDOW`` (10 ms) for each reader
waiting when the last pass began, at least ``WAKE_WINDOW`` (5 ms), at most
``MAX_WINDOW`` (1 s), and nothing else: a node makes at most ~100 watcher round trips a
second however many watchers it has (up to 100; beyond, one a second each), and each
reply carries more changes instead. A watcher's round trip (its reply sent, its next
XREAD read, parsed and blocked: three task switches and four system calls in the client
port) costs the node 100-300 us of CPU whatever it carries, and with fsync always a node
applies a batch every 10-20 ms: a fixed 5 ms window coalesced nothing (100 watchers cost
60% of the c50 SET rate), 2 ms a reader and a load rule (below) 17%. One watcher waits
up to 10 ms for a change, 34 on a node up to 340 ms.

The window depends on the readers waiting only, not on what delivery costs. An earlier
rule also lengthened it while the node's measured delivery work was large against its
other work; but that work grew with the replies (a watcher back for the rest after
``COUNT`` has them read at once, in its XREAD: up to a thousand changes encoded and
charged), so a long window could make the next one longer: with it, one watcher of c50
SET was seen at 454 ms windows and 256 ms p50 for a change (watch4, quiet machine). What
a reply costs per change is the same however changes are batched; only the number of
round trips depends on the window.
A pass also starts before its window is over once enough changes were applied to fill
every waiting reader's reply (its ``COUNT``, for readers of the whole feed): waiting longer
would save no round trip, as a watcher back for the rest after ``COUNT`` is read for at
once. With c50 SET at 6,000 changes a second and ``COUNT 1000``, 34 watchers on a node get
a reply every ~170 ms, not every 340. XREAD without BLOCK, or with a BLOCK shorter than
``WAKE_WINDOW``, is not coalesced (streams.py).

A reader holds no per-event memory (it reads the retained tail when served). Its
connection ending (its input closed, or the connection torn down) ends its wait at once,
so a vanished client frees its slot. At most ``limit`` readers block at once on a node
(``--watch-max-blocked``); one more gets ``TOO_MANY``. A reader whose deadline passes gets
a null reply, as in Redis.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import trio

from raftkv.kv.changes import Change
from raftkv.kv.sliced import SlicedRead
from raftkv.node.pending import Pending
from wire.reply import ErrorReply

Spawn = Callable[..., None]  # starts ``fn(*args)`` as a task of the node
Retry = Callable[[], SlicedRead | None]

# The readers' task yields to the loop after this much work in a row (a read's slice
# itself is a few ms at most: raftkv.server.streams.BUDGET).
ROUND_SECONDS = 0.002
# Passes over the readers start at least this far apart (seconds): the changes applied
# in between reach a watcher in one reply (README "Watching changes").
WAKE_WINDOW = 0.005
# ... and at least this much per reader waiting when the last pass began, up to
# ``MAX_WINDOW`` (module docstring): the node makes at most 1 / PER_READER_WINDOW
# watcher round trips a second (100) for up to MAX_WINDOW / PER_READER_WINDOW watchers;
# more watchers each wait longer for a change instead.
PER_READER_WINDOW = 0.01
MAX_WINDOW = 1.0
# A pass starts before its window is over only once at least this many changes were
# applied since the last one, whatever the readers' COUNT: with COUNT 1 (or an id past the
# feed's top, which nothing fills) every applied batch started a pass, and 900 such
# readers made a follower's CPU per SET 2.2x (attack13). Past it, a pass starts at most
# once per EARLY_PASS_CHANGES changes (~10 a second at 10,000 SET/s).
EARLY_PASS_CHANGES = 1000
# How often an idle serving task asks ``gone`` whether the node can serve the feed at all
# (a node removed from the cluster applies nothing more: its readers would wait for good).
GONE_RECHECK = 1.0


def too_many(limit: int) -> ErrorReply:
    return ErrorReply(f"ERR max blocked readers reached ({limit}, --watch-max-blocked); "
                      "retry later, or XREAD without BLOCK")


class _Reader:
    __slots__ = ("applied", "done", "full", "hang_up", "job", "on_end", "pending", "retry")

    def __init__(self, pending: Pending, retry: Retry, job: SlicedRead | None,
                 on_end: list[Callable[[], None]]) -> None:
        self.pending = pending
        self.retry = retry  # a read of what is new, or None: nothing can be
        self.job = job  # the read in progress
        self.done = False  # answered, timed out, or its connection ended
        self.on_end = on_end  # its connection's end callbacks (``hang_up`` is there)
        self.hang_up: Callable[[], None] = _nothing
        self.applied = 0  # the batches applied when it blocked (``BlockedReaders.applied``)
        self.full = math.inf  # the changes that fill its reply (``BlockedReaders.block``)


def _nothing() -> None:
    return None


class BlockedReaders:
    """The node's blocked XREADs (module docstring). One task serves them all, their
    deadlines included (a heap): a blocked XREAD costs no task of its own."""

    def __init__(self, limit: int, window: float = WAKE_WINDOW,
                 per_reader: float = PER_READER_WINDOW, max_window: float = MAX_WINDOW,
                 gone: Callable[[], ErrorReply | None] | None = None) -> None:
        self.limit = limit
        # The error every reader gets once the node cannot serve the feed any more (a
        # removed member: attack7), else None; asked at least every GONE_RECHECK.
        self.gone = gone
        self.window = window  # the least time between two passes' starts
        self.per_reader = per_reader  # ... and per reader waiting (module docstring)
        self.max_window = max(window, max_window)
        self.span = window  # the least time from the last pass's start to the next one's
        self.passes = 0  # passes begun (streams.ReplyCache.visible: the horizon's age)
        self._last_pass = -math.inf
        self._readers: dict[_Reader, None] = {}  # (insertion order: served in turn)
        # (deadline, order, reader); an answered reader stays until its deadline comes
        # up or the heap is rebuilt (at most about twice the readers waiting).
        self._deadlines: list[tuple[float, int, _Reader]] = []
        self._order = itertools.count()
        self._sleep_until = -math.inf  # when the idle serving task wakes by itself
        self._dirty = False  # something was applied (or a reader came) since the last pass
        self.applied = 0  # batches applied (a first read may have missed the later ones)
        self._wake = trio.Event()
        # Readers whose first read is still going (they are behind the horizon: there is
        # something to read now), finished at once rather than at the next pass
        # (``_catch_up``), and the event that cuts the wait for the window short for them.
        self._behind: list[_Reader] = []
        self._hurry = trio.Event()
        # Changes applied since the last pass began, and how many fill the reply of every
        # reader waiting for the next one (``block``'s ``full``): then the pass starts at
        # once, the window notwithstanding.
        self._since = 0
        self._full = 0.0  # (the largest ``full`` of the readers waiting; 0: none)
        self._serving = False
        self.stats = {"blocked_readers_refused": 0, "blocked_readers_served": 0,
                      "blocked_readers_timed_out": 0}

    def __len__(self) -> int:
        return len(self._readers)

    def info(self) -> dict[str, float | int]:
        """INFO's stats: readers refused, served and timed out, and the window now (ms; 0
        with no reader blocked)."""
        span = self.span if self._readers else 0.0
        return {**self.stats, "blocked_readers_window_ms": round(span * 1000, 1)}

    def reset_stats(self) -> None:
        self.stats = dict.fromkeys(self.stats, 0)

    def _next_span(self) -> float:
        """The least time from the pass starting now to the next one: per reader waiting,
        whatever the replies cost (module docstring)."""
        return min(max(self.window, len(self._readers) * self.per_reader), self.max_window)

    def changes_applied(self, changes: list[Change]) -> None:
        """The applier's listener (once per applied batch with changes): O(1), no matching
        here (module docstring)."""
        self.applied += 1
        if self._readers:
            self._since += len(changes)
            self._dirty = True
            self._wake.set()
            if self._since >= self._full:
                self._hurry.set()

    def block(self, spawn: Spawn, timeout_ms: int, retry: Retry,
              on_end: list[Callable[[], None]], first: SlicedRead | None = None,
              wake: bool = False, full: float = math.inf) -> Pending:
        """A Pending answered by the first non-None result of a read ``retry()`` gives
        (after each applied batch), or None after ``timeout_ms`` (0: no deadline).
        ``first``: a read still to finish before waiting. ``wake``: there is something
        to read already (applied after the last pass began): read at the next pass.
        ``on_end``: the connection's list of callbacks run when it ends (the reader
        registers there, and unregisters once answered). ``full``: how many changes
        applied after the last pass fill its reply (its COUNT, for a reader of the whole
        feed; inf: any number may not), at least EARLY_PASS_CHANGES: once that many are
        applied for every reader waiting, the next pass starts at once (module docstring)."""
        if len(self._readers) >= self.limit:
            self.stats["blocked_readers_refused"] += 1
            return Pending.of(too_many(self.limit))
        pending = Pending()
        reader = _Reader(pending, retry, first, on_end)
        reader.applied = self.applied
        reader.full = full = max(full, EARLY_PASS_CHANGES)
        self._full = max(self._full, full)
        self._readers[reader] = None

        def hang_up() -> None:  # (the connection empties its list itself)
            self._end(reader, None, unregister=False)

        reader.hang_up = hang_up
        on_end.append(hang_up)
        if timeout_ms:
            deadline = trio.current_time() + timeout_ms / 1000
            heapq.heappush(self._deadlines, (deadline, next(self._order), reader))
            if deadline < self._sleep_until:
                self._wake.set()  # (the idle task sleeps past it)
            if len(self._deadlines) > 2 * len(self._readers) + 64:
                self._deadlines = [item for item in self._deadlines if not item[2].done]
                heapq.heapify(self._deadlines)
        if first is not None:
            self._behind.append(reader)
            self._hurry.set()
            self._wake.set()
        elif wake:
            self._dirty = True
            self._wake.set()
        if not self._serving:
            self._serving = True
            spawn(self._serve)
        return pending

    def _end(self, reader: _Reader, reply: Any, unregister: bool = True) -> None:
        """Answer ``reader`` with ``reply`` (None: null) and forget it."""
        if reader.done:
            return
        reader.done = True
        del self._readers[reader]
        if unregister and reader.hang_up in reader.on_end:
            reader.on_end.remove(reader.hang_up)
        reader.pending.set(reply)
        if not self._readers:
            self._wake.set()  # (the serving task ends)

    def _expire(self) -> None:
        """Answer null the readers whose deadline has come."""
        now, heap = trio.current_time(), self._deadlines
        while heap and heap[0][0] <= now:
            reader = heapq.heappop(heap)[2]
            if not reader.done:
                self.stats["blocked_readers_timed_out"] += 1
                self._end(reader, None)

    def _next_deadline(self) -> float:
        """The earliest deadline of a reader still waiting (inf: none)."""
        heap = self._deadlines
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    async def _idle(self) -> None:
        """Wait for a wake-up (an applied batch, a reader, the last one gone) or the next
        deadline."""
        if not self._wake.is_set():
            self._sleep_until = self._deadlines[0][0] if self._deadlines else math.inf
            if self.gone is not None:
                self._sleep_until = min(self._sleep_until, trio.current_time() + GONE_RECHECK)
            try:
                with trio.move_on_at(self._sleep_until):
                    await self._wake.wait()
            finally:
                self._sleep_until = -math.inf
        if self._wake.is_set():
            self._wake = trio.Event()

    async def _serve(self) -> None:
        """Serve the readers after each applied batch, while there are any (module
        docstring); a new reader starts the task again."""
        try:
            while self._readers:
                error = self.gone() if self.gone is not None else None
                if error is not None:
                    for reader in list(self._readers):
                        self._end(reader, error)
                    break
                self._expire()
                if self._behind:
                    await self._catch_up()
                    continue
                if not self._dirty:
                    await self._idle()
                    continue
                # Let the window's changes gather, but not past a deadline: a reader
                # whose BLOCK ends within the window gets what was applied, not a null
                # (the pass comes before the deadlines are looked at again); a reader
                # behind the horizon is caught up meanwhile.
                due = min(self._last_pass + self.span, self._next_deadline())
                if trio.current_time() < due and self._since < self._full:
                    with trio.move_on_at(due):
                        await self._hurry.wait()
                    if self._behind:
                        continue
                self._dirty = False
                now = trio.current_time()
                self.span = self._next_span()
                self._last_pass = now
                self.passes += 1
                self._since = 0
                self._hurry = trio.Event()  # (nothing is behind: see above)
                await self._pass()
                self._full = max((r.full for r in self._readers), default=0.0)
        finally:
            self._serving = False
            for reader in list(self._readers):  # (the node is stopping: null)
                self._end(reader, None)

    async def _catch_up(self) -> None:
        """Finish the first reads still going (a watcher that got ``COUNT`` changes and
        came back for the rest of the window's, which one slice did not read): there is
        something for them now, so they do not wait for the next pass, a window later
        (with 1 s windows, 300 watchers of c50 SET fell 1-2 s behind)."""
        readers, self._behind = self._behind, []
        self._hurry = trio.Event()
        await self._read_for([r for r in readers if r.job is not None])

    async def _pass(self) -> None:
        """Read for each reader in turn, yielding to the loop every ``ROUND_SECONDS``."""
        await self._read_for(list(self._readers))

    async def _read_for(self, readers: list[_Reader]) -> None:
        """Read for each of ``readers`` in turn (its read still going, else a new one),
        yielding to the loop every ``ROUND_SECONDS``."""
        began = time.perf_counter()
        for reader in readers:
            if reader.done:
                continue
            reply = None
            try:
                # A first read (begun before the reader blocked) that finds nothing is
                # followed by a retry if batches were applied since it blocked: the
                # pass that would have read them may be this one (the window).
                first = reader.job is not None
                job = reader.job or reader.retry()
                while job is not None:
                    reader.job = job
                    while not job.step():
                        await trio.lowlevel.checkpoint()
                        began = time.perf_counter()
                        if reader.done:
                            break
                    reader.job = None
                    reply = job.result
                    if reply is not None or not first or reader.done or (
                            reader.applied == self.applied):
                        break
                    first = False
                    job = reader.retry()
            except Exception as exc:  # a bug here must not stop the node's nursery
                reader.job = None
                reply = ErrorReply(f"ERR internal error reading the change feed: "
                                   f"{type(exc).__name__}")
            if reply is not None and not reader.done:
                self.stats["blocked_readers_served"] += 1
                self._end(reader, reply)  # (its reply is sent from here: the socket's send)
            if time.perf_counter() - began >= ROUND_SECONDS:
                await trio.lowlevel.checkpoint()
                self._expire()
                began = time.perf_counter()
