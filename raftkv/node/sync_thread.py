"""One long-lived worker thread for the WAL fsync, owned by an ``async with`` scope.

Every write waits for an fsync on the leader and on a follower, so the hand-off to the
thread that runs it and back is in every write's critical path twice. ``trio.to_thread``
pays for a capacity limiter, a context copy and a thread-cache lookup per call; here the
request goes through a ``queue.SimpleQueue`` to a thread that is already waiting on it, and
the result comes back with one ``run_sync_soon``. Measured on the 2-core dev machine under
load (tests/bench/bench_vs_etcd.py --baseline, README "Performance"), before keeping it.

Semantics match ``trio.to_thread.run_sync`` with the default ``abandon_on_cancel=False``:
calls run one at a time in submission order, an exception is re-raised in the caller, and
a cancelled caller still waits for its call to finish (an fsync is never abandoned
half-way, so what the ready loop believes durable is). The thread lives exactly as long as
the ``async with`` block: leaving it stops and joins the thread (DESIGN.md: no bare
background threads).

``sync`` is for the WAL group itself: on a disk whose fsync is short it runs the call on the
event loop instead, where the hand-off would cost more than the wait. A follower's fsync is
in every write's critical path, and a loop that waits 175 us for the disk is cheaper than
two thread switches and a trip through trio's wake-up socket (measured: README
"Performance"). Only small groups (``INLINE_MAX_BYTES``) go inline, and only while every
one of the last ``WINDOW`` fsyncs took under ``INLINE_MAX_SECONDS``: one slow fsync sends
the next ones back to the thread, so a disk that stalls holds the loop at most once per
stall, and a large entry's write never does (issue 12: heartbeats and their replies keep
going while it is written).

Where the kernel offers it, a small group's fsync goes to neither: ``sync`` writes the group
on the loop and hands the fsync to the kernel's AIO (raftkv.storage.aio), then waits for its
eventfd like for any socket. The loop neither blocks on the disk nor pays a thread's
hand-off (about 50 us of CPU per fsync, ``bench_sync_handoff.py``). The thread stays for
large groups (their ``pwrite`` too is long), for a group that starts a new segment (its
creation and the directory's fsync), and for kernels without AIO fsync.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

import outcome
import trio

from raftkv.storage.aio import UNSUPPORTED, AioFsync

T = TypeVar("T")

_STOP = object()

INLINE_MAX_BYTES = 64 * 1024  # a larger group is always written in the thread
INLINE_MAX_SECONDS = 0.001  # inline only while every recent fsync was this quick
WINDOW = 16  # how many recent fsync durations decide
MIN_SAMPLES = 4  # measured in the thread first


class SplitSync(Protocol):
    """A WAL whose group write and fsync can be run apart (``DiskStorage.sync_write``)."""

    @property
    def rolls_next(self) -> bool: ...
    def sync_write(self) -> tuple[int, bool] | None: ...
    def sync_fd(self, fd: int, datasync: bool) -> None: ...
    def synced(self, error: OSError | None) -> None: ...


class SyncThread:
    """``await run(fn, *args)`` runs ``fn`` in this object's one worker thread."""

    def __init__(self, name: str = "raftkv-sync",
                 clock: Callable[[], float] = time.perf_counter,
                 aio: Callable[[], AioFsync | None] | None = AioFsync.open) -> None:
        self._clock = clock  # times the syncs (tests pass a fake one)
        self._open_aio = aio  # the kernel's AIO fsync, if it has one (module docstring)
        self._aio: AioFsync | None = None  # open while the thread lives, if the kernel has it
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._in_flight = 0  # calls handed to the thread and not returned yet
        self._recent: deque[float] = deque(maxlen=WINDOW)  # seconds of the last syncs
        self.inline = 0  # syncs run on the loop (INFO / tests)
        self.aio = 0  # fsyncs the kernel ran for us (tests)

    async def __aenter__(self) -> SyncThread:
        if self._open_aio is not None:
            self._aio = self._open_aio()
        self._thread.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._jobs.put(_STOP)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join)
        if self._aio is not None:
            self._aio.close()
            self._aio = None

    @property
    def uses_aio(self) -> bool:
        return self._aio is not None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._thread.is_alive():
            raise RuntimeError("SyncThread.run outside its async with block")
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        self._jobs.put((fn, args, task, token))
        self._in_flight += 1
        try:
            # Not abortable: the call runs to its end, like to_thread.run_sync's default.
            # The worker reschedules this task with the call's outcome, which the wait
            # unwraps.
            return await trio.lowlevel.wait_task_rescheduled(
                lambda _: trio.lowlevel.Abort.FAILED)
        finally:
            self._in_flight -= 1

    def may_inline(self, nbytes: int, split: bool = False) -> bool:
        """Would ``sync`` of a group of ``nbytes`` hold the loop for the disk now? With
        ``split`` (a ``SplitSync`` given), not where AIO takes it: the loop then waits for
        the fsync as for a socket."""
        if nbytes > INLINE_MAX_BYTES or self._in_flight or (split and self._aio is not None):
            return False
        recent = self._recent
        return len(recent) >= MIN_SAMPLES and max(recent) <= INLINE_MAX_SECONDS

    async def sync(self, fn: Callable[[], None], nbytes: int,
                   split: SplitSync | None = None) -> None:
        """Run ``fn``, a WAL group's write and fsync of ``nbytes``, on the loop if that is
        cheaper (``may_inline``: the module docstring), else in the thread as ``run``;
        or, given ``split`` (the same WAL: ``fn`` is its ``sync``) and the kernel's AIO,
        write the group here and let the kernel fsync it. Either way it has returned (or
        raised) when this returns, in submission order."""
        if (split is not None and self._aio is not None and nbytes <= INLINE_MAX_BYTES
                and not self._in_flight):
            if not split.rolls_next:
                await self._sync_aio(split)
                return
            # (A group that starts a new segment: in the thread, below.)
        elif self.may_inline(nbytes):
            self.inline += 1
            self._recent.append(self._timed(fn))
            return
        self._recent.append(await self.run(self._timed, fn))

    async def _sync_aio(self, split: SplitSync) -> None:
        """The group written on the loop (at most INLINE_MAX_BYTES), its fsync run by the
        kernel. Never abandoned half-way: a cancelled caller still waits for the fsync
        (as for the thread's), and only then is anything believed durable."""
        pending = split.sync_write()
        if pending is None:
            return
        aio = self._aio
        assert aio is not None
        try:
            aio.submit(*pending)
        except OSError as exc:  # nothing was submitted: fsync the usual way
            if exc.errno in UNSUPPORTED:  # and from now on (this kernel or file system)
                self._aio = None
                aio.close()
            await self.run(split.sync_fd, *pending)
            return
        self.aio += 1
        try:
            error = await _reaped(aio)
        except trio.Cancelled:
            # The caller was cancelled: it still waits for the fsync, as under a shield,
            # and returns as if shielded; trio raises the (level-triggered) cancellation
            # again at its next checkpoint. A shield on every fsync instead cost ~5 us of
            # the loop's CPU an fsync (a CancelScope's enter and exit; perf-follow).
            with trio.CancelScope(shield=True):
                error = await _reaped(aio)
        split.synced(error)  # (raises StorageFailure for an error: the disk failed)

    def _timed(self, fn: Callable[[], None]) -> float:
        """Seconds ``fn()`` took, where it ran (a thread's hand-off is not the disk's time)."""
        started = self._clock()
        fn()
        return self._clock() - started

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args, task, token = job
            result = outcome.capture(fn, *args)
            try:
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)
            except trio.RunFinishedError:  # the loop is gone; nobody waits any more
                return


async def _reaped(aio: AioFsync) -> OSError | None:
    """Wait until the submitted fsync is done: None, or the OSError it failed with."""
    while True:
        await trio.lowlevel.wait_readable(aio.fileno())
        try:
            if aio.reap():
                return None
        except OSError as exc:
            return exc
