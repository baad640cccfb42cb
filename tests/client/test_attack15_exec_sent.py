"""attack15: a pipeline ``MULTI; INCR n; EXEC`` whose connection dies after ``+OK`` for
MULTI, with INCR and EXEC sent and unanswered. The server may have queued INCR and run
the EXEC (the replies lost on the way), so INCR's outcome is as unknown as EXEC's. The
client reports EXEC as ``OutcomeUnknown`` but INCR as ``TransactionLost`` ("nothing of
it was applied: start it again"), and a pipeline's ``execute()`` raises that first error:
a caller who starts the transaction again applies the INCR twice."""

from __future__ import annotations

import pytest
import trio
from fake_node import CLOSE, FakeNode

from client import OutcomeUnknown, TransactionLost, connect


async def test_a_queued_command_whose_exec_was_sent_is_not_reported_unapplied(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", CLOSE])  # MULTI answered; the connection dies on INCR
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        pipe = kv.pipeline()
        pipe.execute_command("MULTI")
        pipe.execute_command("INCR", "n")
        pipe.execute_command("EXEC")
        results = await pipe.execute(raise_on_error=False)
    assert isinstance(results[2], OutcomeUnknown), results  # EXEC: sent, unanswered
    assert not isinstance(results[1], TransactionLost), results


async def test_after_an_exec_of_unknown_outcome_the_client_sends_again(
        nursery: trio.Nursery) -> None:
    # EXEC sent, its connection lost before the reply: OutcomeUnknown, rightly. The
    # transaction is over either way (the server ran EXEC or discarded the MULTI with the
    # connection), but the client still holds it open: the next, unrelated SET raises
    # TransactionLost without being sent, and so does every command until the caller
    # sends a DISCARD it has no reason to send.
    node = FakeNode([b"+OK\r\n", b"+QUEUED\r\n", CLOSE, b"+OK\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        await kv.execute("MULTI")
        await kv.execute("INCR", "n")
        with pytest.raises(OutcomeUnknown):
            await kv.execute("EXEC")
        assert await kv.execute("SET", "other", "1") is not None
    assert node.commands(b"SET") == [[b"SET", b"other", b"1"]]
