"""fix18c: a ``-TRYAGAIN`` inside an open WATCH/MULTI is the caller's, on its connection.

The retry loop dropped the connection before retrying a ``-TRYAGAIN``; while the server
holds this client's WATCH or MULTI there, that discarded the transaction (attack17). Now
the caller gets ``TryAgain`` and the connection, with its WATCH, stays: the caller's
retry of the command goes out on it."""

from __future__ import annotations

import pytest
import trio
from fake_node import CLOSE, FakeNode

from client import OutcomeUnknown, TransactionLost, TryAgain, connect
from wire.reply import SimpleString


async def test_a_second_watch_s_tryagain_is_raised_and_the_first_watch_kept(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", b"-TRYAGAIN no leader known; retry\r\n", b"+OK\r\n",
                     b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        await kv.execute("WATCH", "a")
        with pytest.raises(TryAgain):
            await kv.execute("WATCH", "b")
        await kv.execute("WATCH", "b")  # the caller's retry, on the same connection
        await kv.execute("MULTI")
        await kv.execute("SET", "a", "6")
        assert await kv.execute("EXEC") == [SimpleString("OK")]
    assert node.connections == 1
    assert [c[0] for c in node.seen] == [b"WATCH", b"WATCH", b"WATCH", b"MULTI", b"SET",
                                         b"EXEC"]


async def test_a_pipelined_exec_answered_tryagain_is_not_resent_alone(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", b"+QUEUED\r\n", b"-TRYAGAIN proposal lost; retry\r\n",
                     b"-ERR EXEC without MULTI\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        pipe = kv.pipeline()
        pipe.execute_command("MULTI").execute_command("SET", "k", "v")
        pipe.execute_command("EXEC")
        with pytest.raises(TryAgain):
            await pipe.execute()
    assert [c[0] for c in node.seen] == [b"MULTI", b"SET", b"EXEC"]


async def test_typed_commands_queued_in_a_multi_are_not_told_applied(
        nursery: trio.Nursery) -> None:
    queued = b"+QUEUED\r\n"
    node = FakeNode([b"+OK\r\n", queued, queued, queued, queued, b"+OK\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, sessions=False) as kv:
        await kv.execute("MULTI")
        assert await kv.set("a", "1") is False  # (was True: any status read as success)
        assert await kv.mset({"b": "2"}) is False
        assert await kv.cas("a", "1", "3") is False
        assert await kv.scan() == SimpleString("QUEUED")  # (was a TypeError in the convert)
        await kv.execute("DISCARD")


async def test_a_write_run_after_watch_and_lost_is_unknown_not_transaction_lost(
        nursery: trio.Nursery) -> None:
    """An INCR after WATCH runs at once: sent with its session and unanswered, it may have
    applied. TransactionLost ("nothing applied") would have the caller send it again."""
    node = FakeNode([b"+OK\r\n", b":5\r\n", CLOSE])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002) as kv:
        await kv.execute("WATCH", "a")
        with pytest.raises(OutcomeUnknown):
            await kv.execute("INCR", "n")
        with pytest.raises(TransactionLost):  # the rest of the transaction, as before
            await kv.execute("MULTI")
    assert [c[0] for c in node.seen] == [b"WATCH", b"RAFT", b"RAFT"]


async def test_a_session_open_answered_tryagain_keeps_the_watch_connection(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", b"-TRYAGAIN no leader known; retry\r\n", b":5\r\n",
                     b":1\r\n"])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002) as kv:
        await kv.execute("WATCH", "a")
        assert await kv.execute("INCR", "n") == 1  # its session opened on the second try
    assert node.connections == 1
