"""A call waiting for the connection behind another task's open MULTI learns at once that
the task ended (trio's ``task_exited`` hook: client.api._HolderEnds), not at the next of
polls every 0.1 s: with the clock stopped (MockClock) it wakes, drops the connection (the
server then discards that MULTI) and takes it. A thread holder is still polled (Python has
no hook for a thread's end)."""

from __future__ import annotations

import trio
import trio.testing

from client.api import Client


async def test_a_call_behind_an_ended_tasks_multi_wakes_when_the_task_ends(
        mock_clock: trio.testing.MockClock) -> None:
    kv = Client(["127.0.0.1:1"])
    dropped: list[bool] = []

    async def drop() -> None:
        dropped.append(True)

    kv._drop = drop  # type: ignore[method-assign]
    end = trio.Event()
    got: list[bool] = []

    async def holds_multi_then_ends() -> None:  # (an exception between MULTI and EXEC)
        kv._holder, kv._txn_conn = trio.lowlevel.current_task(), object()  # type: ignore
        await end.wait()

    async def waits() -> None:
        got.append(await kv._hold("caller", trio.current_time() + 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holds_multi_then_ends)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waits)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # behind a live task's MULTI
        end.set()
        await trio.testing.wait_all_tasks_blocked()
        assert got == [True] and dropped == [True], "still polling (the clock is stopped)"
        assert kv._holder == "caller" and kv._txn_conn is None
        assert not kv._holder_ends.waiters  # the hook is gone with its last waiter
