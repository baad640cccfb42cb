"""Attacker round 14: WATCH and MULTI are the connection's state, and the client reconnects.

After ``WATCH k`` or ``MULTI`` the client's connection broke (its node was killed) and the
next call went out on a new connection to another node, which had seen neither:
- after ``WATCH``: ``MULTI; SET k 6; EXEC`` ran unconditionally, and overwrote another
  client's ``SET k 10`` acknowledged in between (live, 3 nodes: ``k`` ended at 6). redis-py
  raises ``WatchError`` on a connection error while watching.
- after ``MULTI``: the queued ``SET tb 1`` ran at once (``+OK``, not ``+QUEUED``) and the
  ``EXEC`` failed (``ERR EXEC without MULTI``): half of the transaction applied.
"""

from __future__ import annotations

import contextlib

import trio
from fake_node import CLOSE, FakeNode, Then

from client import Client, connect


def _client(addr: str) -> Client:
    return connect([addr], timeout=5.0, backoff_base=0.001, backoff_cap=0.002,
                   sessions=False)


async def test_a_watch_lost_with_its_connection_does_not_let_exec_run(
        nursery: trio.Nursery) -> None:
    # The node answers WATCH and then goes away; a fresh connection knows no WATCH, so
    # it queues the SET and runs the EXEC, as a real node does.
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"])
    async with _client(await node.serve(nursery)) as kv:
        for args in (("WATCH", "k"), ("MULTI",), ("SET", "k", "6"), ("EXEC",)):
            try:
                reply = await kv.execute(*args)
            except Exception:  # (the client refusing to go on is a fix)
                return
        assert reply is None, f"EXEC ran on a connection without the WATCH: {reply!r}"


async def test_a_command_queued_after_a_lost_multi_is_not_run_on_its_own(
        nursery: trio.Nursery) -> None:
    # The node answers MULTI and then goes away; a fresh connection runs a SET at once.
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b"+OK\r\n", b"-ERR EXEC without MULTI\r\n"])
    async with _client(await node.serve(nursery)) as kv:
        await kv.execute("MULTI")
        with contextlib.suppress(Exception):  # (refused: the transaction is lost, not half-run)
            await kv.execute("SET", "tb", "1")
    assert node.commands(b"SET") == [], "a queued SET went out on a connection without MULTI"
