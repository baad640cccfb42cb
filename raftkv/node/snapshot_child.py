"""Encode a snapshot in a forked child process (copy-on-write), as Redis's BGSAVE does.

Why not a worker thread: encoding a 100k-key state takes ~300 ms of CPU, and a thread
shares the GIL with the event loop. Long C calls (sorting the keys, packing) hold it for
their whole duration, and on a loaded machine the OS preempts the thread while it holds
it: in one process with 78k keys and a 100k-change feed the loop stalled 86-208 ms per
encode at load 12, and a leader whose loop stalls longer than an election timeout loses
its followers (issue 15's stability run). A forked child has its own GIL and may run on
the other core: the loop pays only ``fork`` (copying the page tables) and the page faults
of copy-on-write while the child lives.

What makes the fork safe beside trio and the node's threads: the child closes every
descriptor but its pipe, runs only the encoder on memory frozen at the fork, writes the
bytes to the pipe (a parent gone, the write ends it with SIGPIPE) and leaves by
``os._exit`` whatever happens (no atexit, no trio, no flushing of inherited buffers). It
disables the garbage collector first (a collection could run finalizers of inherited
objects: a buffered file flushing twice, a socket closing) and restores the default
handlers of the signals the node catches (a Ctrl-C to the process group then ends the
child, and the parent retries later). Nothing the other threads may hold at the fork
(locks of the WAL's sync thread, of logging) is touched in the child. The parent writes
the bytes to the snapshot file as they come, and the file becomes the snapshot only if the
child exited with status 0 after writing them all; it kills and reaps a child it no longer
waits for.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import outcome
import trio

READ_BYTES = 1 << 20
T = TypeVar("T")
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)


class ChildFailed(Exception):
    """The child did not write a whole snapshot (it raised, or was killed)."""


def _child(encode: Callable[[], bytes], w: int) -> None:
    """In the child: never returns."""
    code = 70  # EX_SOFTWARE
    try:
        gc.disable()
        # Only the pipe stays open: a child still encoding when its parent was killed must
        # not hold the node's ports (its restart could not listen), files or peer links.
        os.closerange(0, w)
        os.closerange(w + 1, os.sysconf("SC_OPEN_MAX"))
        with contextlib.suppress(ValueError):  # (only the main thread may; a loop run in
            signal.set_wakeup_fd(-1)           # another thread set no handlers anyway)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
        view = memoryview(encode())
        while view:
            view = view[os.write(w, view[:READ_BYTES]):]
        code = 0
    finally:
        os._exit(code)


class SnapshotChild:
    """A forked encoder; ``stream_to`` hands its bytes to a consumer in a worker thread as
    they come, without blocking the loop."""

    def __init__(self, encode: Callable[[], bytes]) -> None:
        r, w = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12 warns about forking a threaded process; the child above
                # touches nothing another thread could hold.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except BaseException:
            os.close(r)
            os.close(w)
            raise
        if pid == 0:  # pragma: no cover (the child; its work shows in the parent's result)
            os.close(r)
            _child(encode, w)
        os.close(w)
        self.pid = pid
        self.size = 0  # bytes read so far
        self._r = r  # blocking: read only by the worker thread in ``stream_to``
        self._reap = threading.Lock()  # the thread reaps at the end, ``kill`` on the loop

    async def stream_to(self, consume: Callable[[Iterator[bytes]], T]) -> T:
        """``consume(pieces)`` in a worker thread, where ``pieces`` yields the child's bytes
        as they are read (at most ``READ_BYTES`` each) and, at their end, raises
        ``ChildFailed`` unless the child exited cleanly after writing them all: a consumer
        that writes them to a file drops it then. The node holds one piece at a time, not
        the whole encoding (the snapshot's bytes of 100k keys and their feed were ~7 MB
        more RSS until written: tests/bench/bench_memory.py). Cancelled, it kills the child
        (its pipe ends, so does ``consume``); either way the child is reaped before this
        returns."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._kill_when_cancelled)
                # (Captured: raised in the nursery, it would come out in an ExceptionGroup.)
                got = await outcome.acapture(trio.to_thread.run_sync, consume, self._pieces())
                nursery.cancel_scope.cancel()
        finally:
            self.kill()
            os.close(self._r)
        return got.unwrap()

    async def result(self) -> list[bytes]:
        """The child's bytes, in the pieces read (``stream_to`` keeping them all)."""
        return await self.stream_to(list)

    async def _kill_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.kill()  # (also when ``stream_to`` is done: then the child was reaped)

    def _pieces(self) -> Iterator[bytes]:
        """In the worker thread: the pipe's bytes, then the child's exit checked."""
        try:
            while block := os.read(self._r, READ_BYTES):
                self.size += len(block)
                yield block
        except OSError as exc:  # (a pipe: nothing of the node's storage failed)
            raise ChildFailed(f"reading the snapshot encoder's pipe: {exc}") from exc
        # The pipe closes as the child exits: the wait below is short.
        with self._reap:
            pid, self.pid = self.pid, 0
            status = -1
            if pid:
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(pid, 0)
        if status == -1 or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise ChildFailed(f"snapshot encoder exited with status {status:#x}")

    def kill(self) -> None:
        """Kill and reap the child if it was not reaped (idempotent, from any thread)."""
        with self._reap:
            if self.pid:
                pid, self.pid = self.pid, 0
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)  # a killed process is gone at once
