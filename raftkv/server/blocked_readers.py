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

A reader holds no per-event memory (it reads the retained tail when served). Its
connection ending (its input closed, or the connection torn down) ends its wait at once,
so a vanished client frees its slot. At most ``limit`` readers block at once on a node
(``--watch-max-blocked``); one more gets ``TOO_MANY``. A reader whose deadline passes gets
a null reply, as in Redis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

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


def too_many(limit: int) -> ErrorReply:
    return ErrorReply(f"ERR max blocked readers reached ({limit}, --watch-max-blocked); "
                      "retry later, or XREAD without BLOCK")


class _Reader:
    __slots__ = ("done", "gone", "job", "pending", "retry")

    def __init__(self, pending: Pending, retry: Retry, job: SlicedRead | None) -> None:
        self.pending = pending
        self.retry = retry  # a read of what is new, or None: nothing can be
        self.job = job  # the read in progress
        self.done = trio.Event()  # answered, or its connection ended
        self.gone = False  # its connection ended


class BlockedReaders:
    """The node's blocked XREADs (module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._readers: dict[_Reader, None] = {}  # (insertion order: served in turn)
        self._dirty = False  # something was applied (or a reader came) since the last pass
        self._wake = trio.Event()
        self._serving = False
        self.stats = {"blocked_readers_refused": 0, "blocked_readers_served": 0,
                      "blocked_readers_timed_out": 0}

    def __len__(self) -> int:
        return len(self._readers)

    def changes_applied(self, changes: list[Change]) -> None:
        """The applier's listener (once per applied batch with changes): O(1), no matching
        here (module docstring)."""
        if self._readers:
            self._dirty = True
            self._wake.set()

    def block(self, spawn: Spawn, timeout_ms: int, retry: Retry,
              on_end: list[Callable[[], None]], first: SlicedRead | None = None) -> Pending:
        """A Pending answered by the first non-None result of a read ``retry()`` gives
        (after each applied batch), or None after ``timeout_ms`` (0: no deadline).
        ``first``: a read still to finish before waiting. ``on_end``: the connection's
        list of callbacks run when it ends (the reader registers there)."""
        if len(self._readers) >= self.limit:
            self.stats["blocked_readers_refused"] += 1
            return Pending.of(too_many(self.limit))
        pending = Pending()
        reader = _Reader(pending, retry, first)
        self._readers[reader] = None

        def hang_up() -> None:
            reader.gone = True
            reader.done.set()

        on_end.append(hang_up)
        deadline = math.inf if timeout_ms == 0 else trio.current_time() + timeout_ms / 1000
        spawn(self._wait, reader, deadline, on_end, hang_up)
        if first is not None:
            self._dirty = True
            self._wake.set()
        if not self._serving:
            self._serving = True
            spawn(self._serve)
        return pending

    async def _wait(self, reader: _Reader, deadline: float, on_end: list[Callable[[], None]],
                    hang_up: Callable[[], None]) -> None:
        try:
            with trio.move_on_at(deadline):
                await reader.done.wait()
            if not reader.done.is_set():
                self.stats["blocked_readers_timed_out"] += 1
        finally:
            reader.done.set()  # (the serving task skips it from now on)
            del self._readers[reader]
            if hang_up in on_end:
                on_end.remove(hang_up)
            reader.pending.set(None)  # timed out, client gone or node stopping: null
            if not self._readers:
                self._wake.set()  # (the serving task ends)

    async def _serve(self) -> None:
        """Serve the readers after each applied batch, while there are any (module
        docstring); a new reader starts the task again."""
        try:
            while self._readers:
                if not self._dirty:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    continue
                self._dirty = False
                began = time.perf_counter()
                for reader in list(self._readers):
                    if reader.done.is_set():
                        continue
                    reply = None
                    try:
                        job = reader.job or reader.retry()
                        reader.job = job
                        if job is not None:
                            while not job.step():
                                await trio.lowlevel.checkpoint()
                                began = time.perf_counter()
                                if reader.done.is_set():
                                    break
                            reader.job = None
                            reply = job.result
                    except Exception as exc:  # a bug here must not stop the node's nursery
                        reader.job = None
                        reply = ErrorReply(f"ERR internal error reading the change feed: "
                                           f"{type(exc).__name__}")
                    if reply is not None and not reader.done.is_set():
                        self.stats["blocked_readers_served"] += 1
                        reader.pending.set(reply)
                        reader.done.set()
                    if time.perf_counter() - began >= ROUND_SECONDS:
                        await trio.lowlevel.checkpoint()
                        began = time.perf_counter()
        finally:
            self._serving = False

