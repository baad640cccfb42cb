"""Attacker round 14: a retry whose first reply the server did not keep is an applied write.

Sessions' recorded replies share 64 MiB; past it a reply is kept only as "applied", and
a duplicate answers ``-ERR sequence number N of session S already applied; its reply was
not kept``. Any writer fills those 64 MiB for everyone (live: 1,224 sessions of 64
``GETSET`` replies of 1 KiB, 23 s, kept a week), and from then on every client's retry
after ``-UNKNOWN`` gets that answer: the trio client raised it as a plain
``ResponseError``, the type of "the command itself is wrong", for an INCR that applied.
"""

from __future__ import annotations

import pytest
import trio
from fake_node import FakeNode

from client import ReplyNotKept, connect

UNKNOWN = b"-UNKNOWN timed out waiting for a quorum; may or may not have been applied\r\n"
NOT_KEPT = (b"-ERR sequence number 1 of session 7 already applied; its reply was not kept "
            b"(over 1024 bytes, or the sessions' replies were over their total bound)\r\n")


async def test_a_duplicate_whose_reply_was_not_kept_is_not_a_command_error(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b":7\r\n", UNKNOWN, NOT_KEPT])
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=True) as kv:
        with pytest.raises(ReplyNotKept):  # applied, once; not "the command is wrong"
            await kv.incr("n")
    once = [c for c in node.commands(b"RAFT") if c[1] == b"ONCE"]
    assert len(once) == 2  # the INCR, sent twice as RAFT ONCE
