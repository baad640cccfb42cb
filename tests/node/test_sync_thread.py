"""SyncThread: the WAL fsync worker keeps to_thread.run_sync's contract.

Waits are on threading/trio events with deadlines (``trio.fail_after``), never sleeps.
"""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from raftkv.node.sync_thread import (
    INLINE_MAX_BYTES,
    INLINE_MAX_SECONDS,
    MIN_SAMPLES,
    WINDOW,
    SyncThread,
)


async def test_runs_in_one_other_thread_and_returns_the_result() -> None:
    seen: list[int] = []

    def job(n: int) -> int:
        seen.append(threading.get_ident())
        return n * 2

    with trio.fail_after(10):
        async with SyncThread() as worker:
            results = [await worker.run(job, n) for n in range(50)]
    assert results == [n * 2 for n in range(50)]
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident()


async def test_exception_is_raised_in_the_caller_and_the_thread_survives() -> None:
    def boom() -> None:
        raise OSError(5, "EIO on fsync")

    with trio.fail_after(10):
        async with SyncThread() as worker:
            with pytest.raises(OSError, match="EIO"):
                await worker.run(boom)
            assert await worker.run(lambda: "still here") == "still here"


async def test_calls_from_several_tasks_run_one_at_a_time() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.001)  # give a second thread a chance to overlap
        with lock:
            running -= 1

    with trio.fail_after(10):
        async with SyncThread() as worker, trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(worker.run, job)
    assert most == 1


async def test_a_cancelled_caller_waits_for_the_call_to_finish() -> None:
    """An fsync is never abandoned: cancelling its caller takes effect once it returned."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_sync() -> str:
        started.set()
        release.wait(10)
        finished.set()
        return "synced"

    scope = trio.CancelScope()
    returned_at: list[bool] = []

    async def caller(worker: SyncThread) -> None:
        with scope:
            await worker.run(slow_sync)
        returned_at.append(finished.is_set())

    with trio.fail_after(10):
        async with SyncThread() as worker, trio.open_nursery() as nursery:
            nursery.start_soon(caller, worker)
            await trio.to_thread.run_sync(started.wait, 10)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert returned_at == []  # still waiting for the sync despite the cancel
            release.set()
    assert returned_at == [True]  # it came back only after the call had finished


async def test_leaving_the_block_stops_the_thread() -> None:
    with trio.fail_after(10):
        async with SyncThread() as worker:
            await worker.run(lambda: None)
            thread = worker._thread
        assert not thread.is_alive()
        with pytest.raises(RuntimeError, match="outside"):
            await worker.run(lambda: None)


class FakeDisk:
    """A sync whose duration a fake clock reports (no timing in the test), and which notes
    the thread it ran in."""

    def __init__(self) -> None:
        self.now = 0.0
        self.takes = 0.0002  # seconds the next syncs "take"
        self.threads: list[int] = []

    def clock(self) -> float:
        return self.now

    def sync(self) -> None:
        self.threads.append(threading.get_ident())
        self.now += self.takes


async def test_sync_runs_on_the_loop_once_the_disk_proved_quick() -> None:
    disk = FakeDisk()
    loop = threading.get_ident()
    with trio.fail_after(10):
        async with SyncThread(clock=disk.clock) as worker:
            for _ in range(MIN_SAMPLES + 3):
                await worker.sync(disk.sync, 100)
    first, rest = disk.threads[:MIN_SAMPLES], disk.threads[MIN_SAMPLES:]
    assert loop not in first  # measured in the thread first
    assert rest == [loop] * 3 and worker.inline == 3


async def test_one_slow_sync_sends_the_next_ones_to_the_thread() -> None:
    disk = FakeDisk()
    loop = threading.get_ident()
    with trio.fail_after(10):
        async with SyncThread(clock=disk.clock) as worker:
            for _ in range(MIN_SAMPLES):
                await worker.sync(disk.sync, 100)
            disk.takes = 2 * INLINE_MAX_SECONDS
            await worker.sync(disk.sync, 100)  # inline, and slow
            disk.takes = 0.0002
            assert not worker.may_inline(100)
            for _ in range(WINDOW):  # in the thread while the slow one is in the window
                await worker.sync(disk.sync, 100)
            assert worker.may_inline(100)  # it left the window: back on the loop
    assert disk.threads[MIN_SAMPLES] == loop
    assert loop not in disk.threads[MIN_SAMPLES + 1:]


async def test_a_large_group_is_always_written_in_the_thread() -> None:
    disk = FakeDisk()
    with trio.fail_after(10):
        async with SyncThread(clock=disk.clock) as worker:
            for _ in range(MIN_SAMPLES):
                await worker.sync(disk.sync, 100)
            assert worker.may_inline(INLINE_MAX_BYTES)
            await worker.sync(disk.sync, INLINE_MAX_BYTES + 1)
    assert disk.threads[-1] != threading.get_ident() and worker.inline == 0


async def test_an_inline_sync_raises_in_the_caller() -> None:
    disk = FakeDisk()
    with trio.fail_after(10):
        async with SyncThread(clock=disk.clock) as worker:
            for _ in range(MIN_SAMPLES):
                await worker.sync(disk.sync, 100)

            def eio() -> None:
                raise OSError(5, "EIO on fsync")

            with pytest.raises(OSError, match="EIO"):
                await worker.sync(eio, 100)
            assert worker.inline == 1
