"""One edge-triggered epoll for the readability of many client sockets (issue 15).

Why: trio's ``wait_readable`` registers its fd with ``EPOLLONESHOT``, so every wait costs
an ``epoll_ctl(MOD)`` re-arm plus trio's registration bookkeeping, and every wake its
``process_events`` entry; on a leader serving GETs at c50 that was 18-20% of the GIL
samples (the per-command share of a one-command round trip). Here each client socket is
registered once for its life (``EPOLLIN | EPOLLET``), and the parked readers are woken
from a poll of this epoll in the same pass of trio's loop as trio's own would have woken
them: an instrument's ``after_io_wait`` hook (run after trio's IO wait, before the pass's
batch of tasks is taken). A system task waits on this epoll's fd with trio's
``wait_readable``, so that trio's IO wait returns when a client socket becomes readable,
and polls it too (should the hook be gone). A reader woken by the task instead of the hook
ran a pass later, and a pass later missed its proposal batch: SET c50 cost x1.07 CPU.

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
        self.hook = _AfterIOWait(self)
        self.task: trio.lowlevel.Task | None = None  # run()'s
        self.polls = 0

    @classmethod
    def current(cls) -> ReadPoller | None:
        """This run's poller, its task started on first use; None once it has stopped (a
        bug stopped it: new connections wait with trio's own ``wait_readable``, as its
        parked readers do, rather than register with a closed epoll; attack17)."""
        try:
            poller = _current.get()
            return None if poller.closed else poller
        except LookupError:
            poller = cls()
            _current.set(poller)
            trio.lowlevel.spawn_system_task(poller.run, name="raftkv.read_poller")
            trio.lowlevel.add_instrument(poller.hook)
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

    def wake(self) -> None:
        """Reschedule the readers whose sockets became readable; remember the others."""
        parked, ready = self._parked, self._ready
        self.polls += 1
        for fd, _flags in self._epoll.poll(0, MAX_EVENTS):
            task = parked.pop(fd, None)
            if task is None:
                ready.add(fd)
            else:
                trio.lowlevel.reschedule(task)

    async def run(self) -> None:
        """Wake trio's IO wait when a registered socket becomes readable (and wake its
        reader, if the hook has not already)."""
        self.task = task = trio.lowlevel.current_task()
        try:
            while True:
                # trio resets this to None when it wakes the task: the hook polls then only
                task.custom_sleep_data = self
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                self.wake()
        except Exception:  # (a bug here must not take the node down: trio's waits remain)
            log.exception("read poller failed; client reads fall back to trio's waits")
        finally:
            # Parked readers try their recv again, then wait with trio's own wait_readable.
            self.closed = True
            with contextlib.suppress(KeyError, RuntimeError):
                trio.lowlevel.remove_instrument(self.hook)
            for fd, task in list(self._parked.items()):
                del self._parked[fd]
                trio.lowlevel.reschedule(task)
            self._epoll.close()


class _AfterIOWait(trio.abc.Instrument):
    """Wakes the poller's readers right after trio's IO wait, in the same pass (trio drops
    an instrument that raises, with a log line: the poller's task then wakes them)."""

    def __init__(self, poller: ReadPoller) -> None:
        self.poller = poller

    def after_io_wait(self, timeout: float) -> None:
        # Only in a pass whose IO wait reported the epoll readable (it woke the task): no
        # syscall in the passes that have nothing for it.
        task = self.poller.task
        if task is None or task.custom_sleep_data is None:
            self.poller.wake()
