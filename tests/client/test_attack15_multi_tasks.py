"""attack15: MULTI is the connection's state, and a client's tasks share one connection.

Task A sends ``MULTI`` (then, in a later call, ``DISCARD`` or ``EXEC``); task B of the same
client sends ``SET``/``INCR`` in between. B's commands go out on A's connection, the server
queues them in A's transaction (``+QUEUED``), and B is told ``True`` for its ``SET``
(``SimpleString('QUEUED')`` for ``INCR``, not an int). A's ``DISCARD`` then drops B's
write: a write reported done that no node applied."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from chaos.cluster import LocalCluster
from client import RaftKVError, connect

pytestmark = pytest.mark.timeout(60)


async def test_another_task_write_is_not_swallowed_by_an_open_multi(
        cluster: LocalCluster) -> None:
    eps = [n.client_addr for n in cluster.nodes.values()]
    outcome: dict[str, object] = {}
    async with connect(eps) as kv:
        await kv.delete("a15:mx", "a15:n")

        async def other_task() -> None:
            try:
                outcome["set"] = await kv.set("a15:mx", "b")
                outcome["incr"] = await kv.incr("a15:n")
            except RaftKVError as exc:  # refusing while another task's MULTI is open is fine
                outcome["error"] = exc

        async with trio.open_nursery() as nursery:
            await kv.execute("MULTI")
            nursery.start_soon(other_task)
            await trio.testing.wait_all_tasks_blocked()  # B sent, or waits for the client
            await kv.execute("DISCARD")
        if "error" not in outcome:
            assert type(outcome["incr"]) is int, outcome
            assert outcome["set"] is True
            assert await kv.get("a15:mx") == b"b", "a SET reported done was not applied"
