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
import ctypes
import errno
import gc
import os
import signal
import struct
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import outcome
import trio

READ_BYTES = 1 << 20
# A child that writes nothing for this long is killed (stopped, wedged): the node's
# snapshots must not wait on it for good. Its first bytes come once the keys are sorted and
# the first piece packed, well under this for millions of keys.
STALL_SECONDS = 60.0
PR_SET_PDEATHSIG = 1  # (linux/prctl.h)
# Each piece goes down the pipe behind its length; a zero length marks the end. A child
# that stops short (killed, or leaving with status 0 early) never writes the mark, so its
# bytes are never taken for a whole snapshot, whatever its exit status says.
_HEADER = struct.Struct(">I")
T = TypeVar("T")
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)


class ChildFailed(Exception):
    """The child did not write a whole snapshot (it raised, or was killed)."""


def _set_parent_death_signal() -> Callable[[], None]:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``, looked up before any fork (the child calls it
    at once and loads nothing); a no-op where there is no ``prctl``."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong)
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) and None


_die_with_parent = _set_parent_death_signal()


def _write_all(w: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(w, view[:READ_BYTES]):]


def _child(encode: Callable[[], bytes | Iterable[bytes]], w: int, parent: int) -> None:
    """In the child: never returns."""
    code = 70  # EX_SOFTWARE
    try:
        # A node killed (kill -9) while its child is stopped or wedged must not leave the
        # child behind for good, holding a copy of its memory: the kernel kills it with its
        # parent (a node runs in a session of its own, so no SIGHUP would reach it).
        _die_with_parent()
        if os.getppid() != parent:  # (the parent died before the line above)
            os._exit(code)
        gc.disable()
        # Only the pipe stays open: a child still encoding when its parent was killed must
        # not hold the node's ports (its restart could not listen), files or peer links.
        os.closerange(0, w)
        os.closerange(w + 1, os.sysconf("SC_OPEN_MAX"))
        with contextlib.suppress(ValueError):  # (only the main thread may; a loop run in
            signal.set_wakeup_fd(-1)           # another thread set no handlers anyway)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
        out = encode()
        for piece in (out,) if isinstance(out, bytes) else out:
            if piece:  # (an empty frame is the end mark)
                _write_all(w, _HEADER.pack(len(piece)))
                _write_all(w, piece)
        _write_all(w, _HEADER.pack(0))
        code = 0
    finally:
        os._exit(code)


class SnapshotChild:
    """A forked encoder; ``stream_to`` hands its bytes to a consumer in a worker thread as
    they come, without blocking the loop."""

    def __init__(self, encode: Callable[[], bytes | Iterable[bytes]]) -> None:
        if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
            # The kernel would reap the child itself: its status lost, and its pid free for
            # another process while we might still signal it. (``serve`` resets an ignored
            # SIGCHLD inherited from a supervisor; the caller encodes in a thread instead.)
            raise OSError(errno.ECHILD, "SIGCHLD is ignored: no child can be waited for")
        parent = os.getpid()
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
            _child(encode, w, parent)
        os.close(w)
        self.pid = pid
        self.size = 0  # bytes of pieces read so far
        self._reads = 0  # reads of the pipe that returned something (the stall watch)
        self._stalled = False
        self._r = r  # blocking: read only by the worker thread in ``stream_to``
        self._reap = threading.Lock()  # the thread reaps at the end, ``kill`` on the loop

    async def stream_to(self, consume: Callable[[Iterator[bytes]], T]) -> T:
        """``consume(pieces)`` in a worker thread, where ``pieces`` yields the child's
        pieces as they are read and, at their end, raises ``ChildFailed`` unless the child
        wrote its end mark and exited cleanly: a consumer that writes them to a file drops
        it then. The node holds one piece at a time, not the whole encoding (the snapshot's
        bytes of 100k keys and their feed were ~7 MB more RSS until written:
        tests/bench/bench_memory.py). A child silent for ``STALL_SECONDS`` is killed, and so
        is the child of a cancelled call (its pipe ends, so does ``consume``); either way
        the child is reaped before this returns."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch)
                # (Captured: raised in the nursery, it would come out in an ExceptionGroup.)
                got = await outcome.acapture(trio.to_thread.run_sync, consume, self._pieces())
                nursery.cancel_scope.cancel()
        finally:
            self.kill()
            os.close(self._r)
        return got.unwrap()

    async def _watch(self) -> None:
        """Kill the child once it has been silent for ``STALL_SECONDS``, or when
        ``stream_to`` is cancelled (or done: the child was reaped by then)."""
        try:
            seen = -1
            while seen != self._reads:
                seen = self._reads
                await trio.sleep(STALL_SECONDS)
            self._stalled = True
        finally:
            self.kill()

    def _read(self, n: int) -> bytes:
        """Exactly ``n`` bytes of the pipe, fewer only at its end."""
        parts = []
        while n:
            block = os.read(self._r, min(n, READ_BYTES))
            if not block:
                break
            self._reads += 1
            parts.append(block)
            n -= len(block)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _pieces(self) -> Iterator[bytes]:
        """In the worker thread: the pipe's pieces up to the end mark, then the child's
        exit checked."""
        complete = False
        try:
            while True:
                header = self._read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                (size,) = _HEADER.unpack(header)
                if not size:
                    complete = self._read(1) == b""  # (nothing may follow the mark)
                    break
                piece = self._read(size)
                if len(piece) < size:
                    break
                self.size += size
                yield piece
        except OSError as exc:  # (a pipe: nothing of the node's storage failed)
            raise ChildFailed(f"reading the snapshot encoder's pipe: {exc}") from exc
        # The pipe ends as the child exits: the wait below is short.
        with self._reap:
            pid, self.pid = self.pid, 0
            status = -1
            if pid:
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(pid, 0)
        if self._stalled:
            raise ChildFailed(f"snapshot encoder wrote nothing for {STALL_SECONDS:.0f} s: "
                              "killed")
        if status == -1 or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise ChildFailed(f"snapshot encoder exited with status {status:#x}")
        if not complete:
            raise ChildFailed("snapshot encoder exited without writing all of it")

    def kill(self) -> None:
        """Kill and reap the child if it was not reaped (idempotent, from any thread)."""
        with self._reap:
            if self.pid:
                pid, self.pid = self.pid, 0
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)  # a killed process is gone at once
