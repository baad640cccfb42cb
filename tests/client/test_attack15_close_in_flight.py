"""attack15: ``aclose`` while another task's call waits for its reply. aclose skips the
session close (the connection is in use) and drops the connection under the call; the
call's retry loop then opens a new connection on the closed client, gets its answer, and
leaves that connection open: a closed client holding a socket (and, with sessions, a
session) until the process ends or the object is collected."""

from __future__ import annotations

import trio
import trio.testing
from fake_node import HANG, FakeNode

from client import connect


async def test_a_call_in_flight_does_not_reconnect_a_closed_client(
        nursery: trio.Nursery) -> None:
    node = FakeNode([HANG, b"$1\r\nv\r\n"])  # the first GET never answered
    kv = connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                 backoff_cap=0.002, sessions=False)
    await kv.connect_once()
    outcome: list[object] = []

    async def other_task() -> None:
        try:
            outcome.append(await kv.execute("GET", "k"))
        except Exception as exc:  # failing because the client closed is fine
            outcome.append(exc)

    async with trio.open_nursery() as tasks:
        tasks.start_soon(other_task)
        await trio.testing.wait_all_tasks_blocked()  # the GET sent, its reply awaited
        await kv.aclose()
    assert outcome
    assert node.connections == 1, "the closed client opened a new connection"
