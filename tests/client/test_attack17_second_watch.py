"""attack17: a second ``WATCH`` after a silently lost one is taken for "starting again".

``WATCH`` adds keys to the watched set (Redis: ``WATCH a`` then ``WATCH b`` watches both).
The connection holding ``WATCH a`` closes between two calls; the client sees it stale
before the next one, which is ``WATCH b``. The caller was never told ``TransactionLost``,
yet the client takes that WATCH as the start of a new transaction (fix16/fix17's rule:
"only a new WATCH starts again"): it drops the lost ``WATCH a`` and sends ``WATCH b``,
``MULTI``, ``SET a ...`` and ``EXEC`` on a new connection, so the EXEC runs without its
watch on ``a``: attack14's lost update, through the one door fix17 left open. Starting
again is right only after the caller has been told its transaction was lost."""

from __future__ import annotations

import trio
import trio.testing
from fake_node import CLOSE, FakeNode, Then

from client import TransactionLost, connect


async def test_a_watch_added_after_a_silent_loss_does_not_let_exec_run_unwatched(
        nursery: trio.Nursery) -> None:
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b"+OK\r\n", b"+OK\r\n", b"+QUEUED\r\n",
                     b"*1\r\n+OK\r\n"])
    lost: list[bytes] = []
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        await kv.execute("WATCH", "a")
        await node.closed.wait()
        await trio.testing.wait_all_tasks_blocked()  # (the FIN is in the client's socket)
        for args in (("WATCH", "b"), ("MULTI",), ("SET", "a", "6"), ("EXEC",)):
            try:
                await kv.execute(*args)
            except TransactionLost:
                lost.append(args[0].encode())
    execs = node.commands(b"EXEC")
    assert execs == [], (f"EXEC sent on a new connection without WATCH a "
                         f"(sent: {[c[0] for c in node.seen]}, TransactionLost: {lost})")
