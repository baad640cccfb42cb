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
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

_STOP = object()


class SyncThread:
    """``await run(fn, *args)`` runs ``fn`` in this object's one worker thread."""

    def __init__(self, name: str = "raftkv-sync") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

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
        # Not abortable: the call runs to its end, like to_thread.run_sync's default. The
        # worker reschedules this task with the call's outcome, which the wait unwraps.
        return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

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
