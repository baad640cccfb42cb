"""attack17: an ``EXEC`` answered ``-TRYAGAIN`` is sent again, alone, on a new connection.

``-TRYAGAIN`` is a definite failure, so the retry loop sends every command that got it
again. But ``EXEC`` is bound to the connection's ``MULTI``: the server discarded the
transaction when it answered (proposal lost in a leader change, no leader within the
wait), and the retry goes out on a *new* connection, which holds no ``MULTI``. The caller
gets ``ResponseError('ERR EXEC without MULTI')``, the command's "own error", for a
transaction that was simply not applied and should be started again: a program that
retries on ``TryAgain``/``TransactionLost`` (as the errors' docs say) gives up instead,
and the client sent a command it knew could not work."""

from __future__ import annotations

import pytest
import trio
from fake_node import FakeNode

from client import ResponseError, TransactionLost, TryAgain, connect


async def test_an_exec_answered_tryagain_is_not_resent_without_its_multi(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", b"+QUEUED\r\n",
                     b"-TRYAGAIN proposal lost in a leader change; retry\r\n",
                     b"-ERR EXEC without MULTI\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        await kv.execute("MULTI")
        await kv.execute("SET", "k", "v")
        with pytest.raises((TryAgain, TransactionLost)) as raised:
            await kv.execute("EXEC")
        assert not (isinstance(raised.value, ResponseError)
                    and "without MULTI" in raised.value.text), raised.value
    assert len(node.commands(b"EXEC")) == 1, [c[0] for c in node.seen]
