"""One edge-triggered epoll for the readability of many client sockets (issue 15).

Why: trio's ``wait_readable`` registers its fd with ``EPOLLONESHOT``, so every wait costs
an ``epoll_ctl(MOD)`` re-arm plus trio's registration bookkeeping, and every wake its
``process_events`` entry; on a leader serving GETs at c50 that was 18-20% of the GIL
samples (the per-command share of a one-command round trip). Here each client socket is
registered once for its life (``EPOLLIN | EPOLLET``), one system task waits on this
epoll's own fd with trio's ``wait_readable`` (one re-arm per pass of the loop, for all the
sockets that became readable in it) and wakes the parked readers.

Edge-triggered, so a socket its reader is not waiting on (busy answering, stopped at its
output-buffer or pipeline bound) is reported once and then left alone, never polled in a
loop: the event is remembered (``_ready``) and the next ``wait_readable`` on it returns at
once. The reader always tries ``recv`` before it parks (or parks only after EAGAIN or on a
remembered edge), and parks without yielding after that, so data that arrives in between
is an event the next poll delivers: nothing is lost.

One poller per ``trio.run`` (``ReadPoller.current``), started lazily as a system task, so
it lives as long as any connection using it and ends with the run. Closing a socket:
``forget`` first (unregister, and a parked reader gets ``ClosedResourceError``), so a
reused fd number never wakes the wrong task.
"""

from __future__ import annotations

import contextlib
import logging
import select

import outcome
import trio

log = logging.getLogger("raftkv.server")

MAX_EVENTS = 1024  # per poll; more ready sockets wait for the next pass of the loop
_FLAGS = select.EPOLLIN | select.EPOLLET

_current: trio.lowlevel.RunVar[ReadPoller] = trio.lowlevel.RunVar("raftkv_read_poller")


class ReadPoller:
    """Readiness of registered fds: ``register``, ``wait_readable``, ``forget``."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._registered: set[int] = set()
        self._parked: dict[int, trio.lowlevel.Task] = {}
        self._ready: set[int] = set()  # an edge reported while no reader was parked
        self.closed = False

    @classmethod
    def current(cls) -> ReadPoller:
        """This run's poller, its task started on first use."""
        try:
            return _current.get()
        except LookupError:
            poller = cls()
            _current.set(poller)
            trio.lowlevel.spawn_system_task(poller.run, name="raftkv.read_poller")
            return poller

    @property
    def registered(self) -> frozenset[int]:
        return frozenset(self._registered)

    def register(self, fd: int) -> None:
        """Watch ``fd`` until ``forget``. A stale entry for the same number (a socket closed
        without ``forget``: the kernel dropped it from the epoll) is replaced."""
        if fd in self._registered:
            self.forget(fd)
        try:
            self._epoll.register(fd, _FLAGS)
        except FileExistsError:
            self._epoll.modify(fd, _FLAGS)
        self._registered.add(fd)

    def forget(self, fd: int) -> None:
        """Before ``fd`` is closed: stop watching it; a reader parked on it gets
        ``ClosedResourceError`` (as trio's ``notify_closing``)."""
        if fd not in self._registered:
            return
        self._registered.discard(fd)
        self._ready.discard(fd)
        with contextlib.suppress(OSError, ValueError):  # (closed already; epoll closed)
            self._epoll.unregister(fd)
        task = self._parked.pop(fd, None)
        if task is not None:
            trio.lowlevel.reschedule(
                task, outcome.Error(trio.ClosedResourceError("the stream is closed")))

    def take_ready(self, fd: int) -> bool:
        """Whether an edge was reported for ``fd`` while nobody waited (then forgotten)."""
        if fd in self._ready:
            self._ready.discard(fd)
            return True
        return False

    async def wait_readable(self, fd: int) -> None:
        """Park until the poller sees ``fd`` readable (or it is forgotten: Closed...).
        Cancellable. Call it only after ``recv`` failed with EAGAIN or after
        ``take_ready`` said no, with no yield in between (edge-triggered)."""
        if self.closed or fd not in self._registered:  # (not ours: trio's own wait)
            await trio.lowlevel.wait_readable(fd)
            return
        if fd in self._parked:
            raise trio.BusyResourceError("another task is already reading this fd")
        if fd in self._ready:  # (an edge came meanwhile)
            self._ready.discard(fd)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._parked[fd] = trio.lowlevel.current_task()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._parked.pop(fd, None)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def run(self) -> None:
        """Wake the readers whose sockets became readable, once per pass of trio's loop."""
        epoll, parked, ready = self._epoll, self._parked, self._ready
        reschedule = trio.lowlevel.reschedule
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                for fd, _flags in epoll.poll(0, MAX_EVENTS):
                    task = parked.pop(fd, None)
                    if task is None:
                        ready.add(fd)
                    else:
                        reschedule(task)
        except Exception:  # (a bug here must not take the node down: trio's waits remain)
            log.exception("read poller failed; client reads fall back to trio's waits")
        finally:
            # Parked readers try their recv again, then wait with trio's own wait_readable.
            self.closed = True
            for fd, task in list(parked.items()):
                del parked[fd]
                reschedule(task)
            epoll.close()
