"""Attacker round 14: a full session table is not a server without sessions.

Any ``@write`` user fills the table (16,384 sessions, each up to a week) in under a second
with pipelined ``RAFT SESSION OPEN 604800``. The client took the refusal (``ERR too many
client sessions``) for an old server's and set ``sessions = False`` for good: from then on
every write went plain, so after ``-UNKNOWN`` it raised ``OutcomeUnknown`` where it had
promised an exactly-once retry, and it never asked for a session again, even once the
table had room.
"""

from __future__ import annotations

import contextlib

import trio
from fake_node import FakeNode

from client import connect

FULL = b"-ERR too many client sessions (at most 16384)\r\n"


async def test_a_full_session_table_does_not_turn_sessions_off_for_good(
        nursery: trio.Nursery) -> None:
    node = FakeNode([FULL, b":1\r\n", b":7\r\n", b":2\r\n"])
    async with connect([await node.serve(nursery)], timeout=10.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=True) as kv:
        with contextlib.suppress(Exception):  # (plain send or error: the fix's choice)
            await kv.incr("n")
        await kv.incr("n")  # the table has room now
    opens = [c for c in node.commands(b"RAFT") if c[1:3] == [b"SESSION", b"OPEN"]]
    assert len(opens) >= 2, node.commands(b"RAFT")  # asked once, then plain sends for good
