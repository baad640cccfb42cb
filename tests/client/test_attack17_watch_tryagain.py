"""attack17: a second ``WATCH`` answered ``-TRYAGAIN`` makes the client drop the connection
holding the first one, and run the transaction on a new connection without it.

``WATCH a`` is answered on connection 1. ``WATCH b`` gets ``-TRYAGAIN`` (the node had no
leader for the read of b's version). A ``-TRYAGAIN`` is retried, and the retry loop drops
the connection first "to find the leader again": connection 1 and the server's WATCH of
``a`` go with it. The retry then sees a lost transaction whose next command is a WATCH,
takes it for "starting again" and sends ``WATCH b`` on connection 2; ``MULTI``, ``SET a``
and ``EXEC`` follow there, and the EXEC runs without its watch on ``a``: a lost update
made by the client itself, with no connection failure at all. (On connection 1 the
server had marked the transaction failed: its EXEC would have answered null.)"""

from __future__ import annotations

import contextlib

import trio
from fake_node import FakeNode

from client import ResponseError, TransactionLost, connect


async def test_a_watch_retried_after_tryagain_keeps_the_earlier_watch(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", b"-TRYAGAIN no leader known; retry\r\n", b"+OK\r\n",
                     b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        await kv.execute("WATCH", "a")
        for args in (("WATCH", "b"), ("MULTI",), ("SET", "a", "6"), ("EXEC",)):
            # (TryAgain, TransactionLost: a caller would start again)
            with contextlib.suppress(TransactionLost, ResponseError):
                await kv.execute(*args)
    assert node.commands(b"EXEC") == [] or node.connections == 1, (
        f"EXEC sent on connection {node.connections}, which never saw WATCH a "
        f"(sent: {[c[0] for c in node.seen]})")
