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
(locks of the WAL's sync thread, of logging) is touched in the child. The parent uses the
bytes only if the child exited with status 0 after writing them all, and kills and reaps
a child it no longer waits for.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import warnings
from collections.abc import Callable

import trio

READ_BYTES = 1 << 20
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
    """A forked encoder; ``result`` waits for its bytes without blocking the loop."""

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
        self._stream = trio.lowlevel.FdStream(r)  # owns r: non-blocking, closed with it

    async def result(self) -> list[bytes]:
        """The child's bytes, in the pieces read (joining them would copy all of it with
        the GIL held); ``ChildFailed`` if it did not exit cleanly. Cancelled, it kills the
        child; either way the child is reaped before this returns."""
        parts: list[bytes] = []
        try:
            async with self._stream:
                while block := await self._stream.receive_some(READ_BYTES):
                    parts.append(block)
            # The pipe closes as the child exits: the wait below is short.
            _, status = await trio.to_thread.run_sync(os.waitpid, self.pid, 0)
            self.pid = 0
        finally:
            self.kill()
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise ChildFailed(f"snapshot encoder exited with status {status:#x}")
        return parts

    def kill(self) -> None:
        """Kill and reap the child if it was not reaped (idempotent)."""
        if self.pid:
            pid, self.pid = self.pid, 0
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # a killed process is gone at once
