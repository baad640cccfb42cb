"""Attacker round 14: WATCH and MULTI are the connection's state, and the client reconnects.

After ``WATCH k`` or ``MULTI`` the client's connection broke (its node was killed) and the
next call went out on a new connection to another node, which had seen neither:
- after ``WATCH``: ``MULTI; SET k 6; EXEC`` ran unconditionally, and overwrote another
  client's ``SET k 10`` acknowledged in between (live, 3 nodes: ``k`` ended at 6). redis-py
  raises ``WatchError`` on a connection error while watching.
- after ``MULTI``: the queued ``SET tb 1`` ran at once (``+OK``, not ``+QUEUED``) and the
  ``EXEC`` failed (``ERR EXEC without MULTI``): half of the transaction applied.

Now every command of a transaction whose connection is gone raises ``TransactionLost``
without being sent, until the command that ends it (which raises it too); then the
client is usable again.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from fake_node import CLOSE, FakeNode, Then

from client import Client, ResponseError, TransactionLost, connect, connect_sync
from wire.reply import SimpleString


def _client(addr: str) -> Client:
    return connect([addr], timeout=5.0, backoff_base=0.001, backoff_cap=0.002,
                   sessions=False)


async def test_a_watch_lost_with_its_connection_does_not_let_exec_run(
        nursery: trio.Nursery) -> None:
    # The node answers WATCH and then goes away; a fresh connection knows no WATCH, so
    # it would queue the SET and run the EXEC, as a real node does.
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"])
    async with _client(await node.serve(nursery)) as kv:
        await kv.execute("WATCH", "k")
        for args in (("MULTI",), ("SET", "k", "6"), ("EXEC",)):
            with pytest.raises(TransactionLost):
                await kv.execute(*args)
        assert await kv.execute("SET", "k", "7") is not None  # EXEC ended it: usable again
    assert node.commands(b"EXEC") == [] and node.commands(b"MULTI") == []
    assert node.commands(b"SET") == [[b"SET", b"k", b"7"]]


async def test_a_command_queued_after_a_lost_multi_is_not_run_on_its_own(
        nursery: trio.Nursery) -> None:
    # The node answers MULTI and then goes away; a fresh connection would run a SET at once.
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b"+OK\r\n", b"-ERR EXEC without MULTI\r\n"])
    async with _client(await node.serve(nursery)) as kv:
        await kv.execute("MULTI")
        with pytest.raises(TransactionLost):
            await kv.execute("SET", "tb", "1")
        with pytest.raises(TransactionLost):
            await kv.execute("DISCARD")
    assert node.commands(b"SET") == [], "a queued SET went out on a connection without MULTI"
    assert node.commands(b"DISCARD") == []


async def test_a_transaction_on_a_live_connection_runs_as_sent(nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"])
    async with _client(await node.serve(nursery)) as kv:
        await kv.execute("WATCH", "k")
        await kv.execute("MULTI")
        await kv.execute("SET", "k", "6")
        assert await kv.execute("EXEC") == [SimpleString("OK")]
    assert [c[0] for c in node.seen] == [b"WATCH", b"MULTI", b"SET", b"EXEC"]
    assert node.connections == 1


async def test_a_refused_multi_leaves_later_writes_in_the_session(
        nursery: trio.Nursery) -> None:
    """attack14: a MULTI that failed left the client's "in MULTI" flag set, so every later
    write went without its session (no exactly-once retry) until an EXEC or DISCARD."""
    node = FakeNode([b"-ERR MULTI calls can not be nested\r\n", b":7\r\n", b":1\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=True) as kv:
        with pytest.raises(ResponseError):
            await kv.execute("MULTI")
        assert await kv.incr("n") == 1
    incr = [c for c in node.seen if b"INCR" in (w.upper() for w in c)]
    assert incr and incr[0][:2] == [b"RAFT", b"ONCE"], node.seen


async def test_a_sync_client_keeps_its_own_multi_across_calls(nursery: trio.Nursery) -> None:
    """Each SyncClient call is a new task in the client's trio thread: the MULTI's holder
    is the calling thread, so its next calls are not kept waiting for the connection."""
    node = FakeNode([b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n:1\r\n"])
    addr = await node.serve(nursery)

    def transaction() -> object:
        with connect_sync([addr], timeout=5.0, sessions=False) as kv:
            kv.execute("MULTI")
            kv.execute("INCR", "n")
            return kv.execute("EXEC")

    assert await trio.to_thread.run_sync(transaction) == [1]


async def test_after_a_lost_watch_only_a_new_watch_starts_again(nursery: trio.Nursery) -> None:
    """The WATCH's connection is seen closed before the next call (the stale check), so
    MULTI is not sent: run on a new connection, its EXEC would be unwatched (a MULTI after
    a lost MULTI alone starts again: test_attack16_start_again). A new WATCH starts again."""
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b"+OK\r\n", b"+OK\r\n"])
    async with _client(await node.serve(nursery)) as kv:
        await kv.execute("WATCH", "k")
        await node.closed.wait()
        await trio.testing.wait_all_tasks_blocked()  # (the FIN is in the client's socket)
        with pytest.raises(TransactionLost):
            await kv.execute("MULTI")
        assert await kv.execute("WATCH", "k") == SimpleString("OK")
        assert await kv.execute("MULTI") == SimpleString("OK")
    assert [c[0] for c in node.seen] == [b"WATCH", b"WATCH", b"MULTI"]
