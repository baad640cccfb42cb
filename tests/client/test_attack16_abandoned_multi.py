"""attack16: a caller that leaves its MULTI open (fix15: the caller whose WATCH/MULTI the
server holds keeps the connection until it ends them).

- SyncClient: the caller is ``("thread", threading.get_ident())``, and Python recycles
  thread idents as soon as a thread exits (glibc: at once, the next thread gets the same
  one). A thread that sent MULTI and ended (an exception between MULTI and EXEC) hands
  its open transaction to the next new thread: that thread's SET is queued in it, is told
  ``True``, and is never applied (the attack15 bug again, across threads).
- Async: a task that ends with MULTI open keeps the connection for ever. Every other
  task's call waits its whole deadline and gets a bare ``DeadlineExceeded('deadline of
  2.0s passed')`` that says nothing of the open transaction; ``connect_once`` (which
  waits for the connection with no deadline at all) never returns.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
import trio
import trio.testing

from chaos.cluster import LocalCluster
from client import RaftKVError, SyncClient, connect

pytestmark = pytest.mark.timeout(60)


def test_a_new_thread_does_not_inherit_an_ended_threads_multi(cluster: LocalCluster) -> None:
    eps = [n.client_addr for n in cluster.nodes.values()]
    with SyncClient(eps, timeout=2.0) as kv, SyncClient(eps) as other:
        kv.delete("a16:thread")
        ended: list[int] = []

        def sends_multi_and_dies() -> None:
            ended.append(threading.get_ident())
            kv.execute("MULTI")  # ... and the thread ends (an exception, a bug) before EXEC

        thread = threading.Thread(target=sends_multi_and_dies)
        thread.start()
        thread.join()
        result: dict[str, object] = {}

        def writes() -> None:
            result["reused"] = threading.get_ident() == ended[0]
            if result["reused"]:
                result["set"] = kv.set("a16:thread", "v")

        for _ in range(50):  # a new thread with the ended thread's ident (glibc: the first)
            thread = threading.Thread(target=writes)
            thread.start()
            thread.join()
            if result["reused"]:
                break
        if result.get("set") is True:
            assert other.get("a16:thread") == b"v", "a SET told True was never applied"


async def test_a_task_that_ends_with_multi_open_does_not_hang_the_clients_other_calls(
        cluster: LocalCluster) -> None:
    eps = [n.client_addr for n in cluster.nodes.values()]
    async with connect(eps, timeout=2.0) as kv:
        async def sends_multi_and_ends() -> None:
            await kv.execute("MULTI")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sends_multi_and_ends)
        # connect_once waits for the connection with no deadline: it must end (an error
        # is fine), not wait for a task that no longer exists. (Bound: a hang, not a time.)
        with trio.move_on_after(10) as scope, contextlib.suppress(RaftKVError):
            await kv.connect_once()  # (any clear failure ends the call)
        assert not scope.cancelled_caught, "connect_once still waiting after 10 s"


async def test_an_ended_tasks_multi_is_dropped_and_a_live_ones_wait_says_why(
        cluster: LocalCluster) -> None:
    """A task that ended with MULTI open loses it (the connection is dropped, so the server
    discards it): the next call runs as a plain command. A call kept out by a live task's
    open MULTI fails at its deadline saying so (it was a bare DeadlineExceeded)."""
    eps = [n.client_addr for n in cluster.nodes.values()]
    async with connect(eps, timeout=2.0) as kv:
        await kv.set("a16:task", "v")

        async def sends_multi_and_ends() -> None:
            await kv.execute("MULTI")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sends_multi_and_ends)
        assert await kv.get("a16:task") == b"v"  # not +QUEUED: the old MULTI is gone

        release = trio.Event()

        async def holds_multi() -> None:
            await kv.execute("MULTI")
            await release.wait()
            await kv.execute("DISCARD")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(holds_multi)
            await trio.testing.wait_all_tasks_blocked()
            kv.timeout = 0.5
            with pytest.raises(RaftKVError) as failed:
                await kv.get("a16:task")
            kv.timeout = 2.0
            release.set()
        assert "MULTI" in str(failed.value), repr(failed.value)
        assert await kv.get("a16:task") == b"v"  # the DISCARD let the connection go
