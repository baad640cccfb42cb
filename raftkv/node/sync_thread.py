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
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

_STOP = object()

INLINE_MAX_BYTES = 64 * 1024  # a larger group is always written in the thread
INLINE_MAX_SECONDS = 0.001  # inline only while every recent fsync was this quick
WINDOW = 16  # how many recent fsync durations decide
MIN_SAMPLES = 4  # measured in the thread first


class SyncThread:
    """``await run(fn, *args)`` runs ``fn`` in this object's one worker thread."""

    def __init__(self, name: str = "raftkv-sync",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock  # times the syncs (tests pass a fake one)
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._in_flight = 0  # calls handed to the thread and not returned yet
        self._recent: deque[float] = deque(maxlen=WINDOW)  # seconds of the last syncs
        self.inline = 0  # syncs run on the loop (INFO / tests)

    async def __aenter__(self) -> SyncThread:
        self._thread.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._jobs.put(_STOP)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join)

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

    def may_inline(self, nbytes: int) -> bool:
        """Would ``sync`` of a group of ``nbytes`` run on the loop now?"""
        recent = self._recent
        return (nbytes <= INLINE_MAX_BYTES and not self._in_flight
                and len(recent) >= MIN_SAMPLES and max(recent) <= INLINE_MAX_SECONDS)

    async def sync(self, fn: Callable[[], None], nbytes: int) -> None:
        """Run ``fn``, a WAL group's write and fsync of ``nbytes``, on the loop if that is
        cheaper (``may_inline``: the module docstring), else in the thread as ``run``.
        Either way it has returned (or raised) when this returns, in submission order."""
        if self.may_inline(nbytes):
            self.inline += 1
            self._recent.append(self._timed(fn))
            return
        self._recent.append(await self.run(self._timed, fn))

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
