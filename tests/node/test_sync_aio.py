"""SyncThread's AIO path: a small WAL group is written on the loop and the kernel runs its
fsync (raftkv.storage.aio), the loop waiting on an eventfd. Durability is unchanged: the
group counts as synced only once the kernel's fsync returned, a cancelled caller still
waits for it, a failed one fails the storage, and a kernel without AIO fsync gets the
thread's. Waits are on events (``trio.fail_after`` bounds), never sleeps."""

from __future__ import annotations

import errno
import os
import socket
import threading

import pytest
import trio
import trio.testing

from raftkv.node.sync_thread import INLINE_MAX_BYTES, SyncThread
from raftkv.storage import DiskStorage, StorageFailure, open_storage
from raftkv.storage.aio import AioFsync
from wire.raft import ClusterConfig, Entry, HardState, Member

CONFIG = ClusterConfig((Member(1, "127.0.0.1:7101"),))


def storage(path: object) -> DiskStorage:
    return open_storage(path, "c", 1, CONFIG, fsync="always")


def fill(s: DiskStorage, lo: int, hi: int) -> None:
    s.append([Entry(1, i, 0, b"v%d" % i) for i in range(lo, hi + 1)])
    s.set_hard_state(HardState(1, 1, lo - 1))


class FakeAio:
    """AioFsync's interface over a socketpair: the test says when the "kernel" is done."""

    def __init__(self, auto: bool = True) -> None:
        self._done, self._signal = socket.socketpair()
        self._done.setblocking(False)
        self.auto = auto  # complete each fsync as soon as it is submitted
        self.submitted: list[tuple[int, bool]] = []
        self.in_flight = trio.Event()
        self.submit_error: OSError | None = None
        self.reap_error: OSError | None = None
        self.closed = False

    def fileno(self) -> int:
        return self._done.fileno()

    def submit(self, fd: int, datasync: bool) -> None:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append((fd, datasync))
        self.in_flight.set()
        if self.auto:
            self.complete()

    def complete(self) -> None:
        self._signal.send(b"x")

    def reap(self) -> bool:
        try:
            self._done.recv(1)
        except BlockingIOError:
            return False
        if self.reap_error is not None:
            raise self.reap_error
        return True

    def close(self) -> None:
        self.closed = True
        self._done.close()
        self._signal.close()


def spy_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(name, thread) of every os.fsync / os.fdatasync from now on."""
    calls: list[tuple[str, int]] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda fd, _n=name, _r=real: (
            calls.append((_n, threading.get_ident())), _r(fd))[1])
    return calls


async def test_the_kernel_fsyncs_a_small_group_and_it_survives_a_reopen(
        tmp_path, monkeypatch) -> None:
    assert AioFsync.open() is not None  # (Linux >= 4.18: the machine the suite runs on)
    s = storage(tmp_path)
    calls = spy_fsyncs(monkeypatch)
    with trio.fail_after(10):
        async with SyncThread() as worker:
            for group in range(3):
                fill(s, group * 4 + 1, group * 4 + 4)
                await worker.sync(s.sync, s.buffered_bytes, s)
            assert worker.aio == 3 and worker.inline == 0
    assert calls == []  # neither on the loop nor in the thread: the kernel's worker
    monkeypatch.undo()
    s.close(sync=False)
    s = storage(tmp_path)
    assert s.last_index() == 12 and s.initial_state()[0] == HardState(1, 1, 8)
    s.close()


async def test_a_cancelled_caller_still_waits_for_the_kernels_fsync(tmp_path) -> None:
    s = storage(tmp_path)
    aio = FakeAio(auto=False)
    synced: list[OSError | None] = []
    real_synced = s.synced
    s.synced = lambda error: (synced.append(error), real_synced(error))[1]  # type: ignore
    returned = False
    with trio.fail_after(10):
        async with SyncThread(aio=lambda: aio) as worker, trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def caller() -> None:
                nonlocal returned
                with scope:
                    fill(s, 1, 3)
                    await worker.sync(s.sync, s.buffered_bytes, s)
                    returned = True

            nursery.start_soon(caller)
            await aio.in_flight.wait()
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert not returned and synced == []  # still waiting for the disk
            aio.complete()
    assert returned and synced == [None]
    assert aio.submitted == [(s._segments[-1].fd, False)]  # (the first group grew the file)
    s.close()


async def test_a_failed_kernel_fsync_fails_the_storage(tmp_path) -> None:
    s = storage(tmp_path)
    aio = FakeAio()
    aio.reap_error = OSError(errno.EIO, "EIO")
    with trio.fail_after(10):
        async with SyncThread(aio=lambda: aio) as worker:
            fill(s, 1, 3)
            with pytest.raises(StorageFailure, match="writing the WAL"):
                await worker.sync(s.sync, s.buffered_bytes, s)
    assert s.failed
    s.close()


async def test_without_aio_fsync_the_thread_fsyncs_and_aio_is_dropped(
        tmp_path, monkeypatch) -> None:
    s = storage(tmp_path)
    aio = FakeAio()
    aio.submit_error = OSError(errno.EINVAL, "io_submit: Invalid argument")
    calls = spy_fsyncs(monkeypatch)
    with trio.fail_after(10):
        async with SyncThread(aio=lambda: aio) as worker:
            fill(s, 1, 3)
            await worker.sync(s.sync, s.buffered_bytes, s)
            assert not worker.uses_aio and aio.closed and worker.aio == 0
            thread = worker._thread.ident
    assert calls == [("fsync", thread)]  # the group's fsync, in the worker thread
    monkeypatch.undo()
    s.close(sync=False)
    s = storage(tmp_path)
    assert s.last_index() == 3
    s.close()


async def test_a_large_group_is_still_written_in_the_thread(tmp_path, monkeypatch) -> None:
    s = storage(tmp_path)
    aio = FakeAio()
    calls = spy_fsyncs(monkeypatch)
    with trio.fail_after(10):
        async with SyncThread(aio=lambda: aio) as worker:
            s.append([Entry(1, 1, 0, b"x" * (INLINE_MAX_BYTES + 1))])
            assert not worker.may_inline(s.buffered_bytes, split=True)
            await worker.sync(s.sync, s.buffered_bytes, s)
            thread = worker._thread.ident
    assert aio.submitted == [] and [t for _, t in calls] == [thread]
    monkeypatch.undo()
    s.close()


async def test_a_group_that_starts_a_segment_is_written_in_the_thread(
        tmp_path, monkeypatch) -> None:
    """A new segment is created, written and fsynced with its directory (a few ms): in the
    thread, not on the loop, whatever the kernel's AIO could do for the group's fsync."""
    s = open_storage(tmp_path, "c", 1, CONFIG, fsync="always", segment_size=512)
    aio = FakeAio()
    with trio.fail_after(10):
        async with SyncThread(aio=lambda: aio) as worker:
            index = 0
            while not s.rolls_next:
                index += 1
                fill(s, index, index)
                await worker.sync(s.sync, s.buffered_bytes, s)
            by_aio = len(aio.submitted)
            calls = spy_fsyncs(monkeypatch)
            fill(s, index + 1, index + 1)
            await worker.sync(s.sync, s.buffered_bytes, s)
            thread = worker._thread.ident
    assert by_aio == index and len(aio.submitted) == by_aio  # (the roll's group: not AIO)
    assert calls and {t for _, t in calls} == {thread}
    monkeypatch.undo()
    s.close(sync=False)
    s = storage(tmp_path)
    assert s.last_index() == index + 1
    s.close()
