"""RAFT SESSION / RAFT ONCE translated into the log's commands (raftkv.server.session_cmd)."""

from __future__ import annotations

import pytest

from raftkv.server.session_cmd import session_command
from wire.reply import ErrorReply


def once(*words: bytes) -> list[bytes] | ErrorReply:
    return session_command([b"RAFT", b"ONCE", b"7", b"1", *words], lambda: 42)


@pytest.mark.parametrize("name", [b"WATCH", b"watch"])
def test_watch_cannot_ride_in_a_session(name: bytes) -> None:
    """attack7: ``RAFT ONCE id seq WATCH k`` went to the node as a read of the key's
    version, answering the internal ``[exists, version]`` pair (``1, 27``) instead of OK,
    and watched nothing: a client that then ran MULTI/EXEC believed the key guarded. WATCH
    is the connection's transaction state, like MULTI and EXEC: unknown inside ONCE."""
    reply = once(name, b"k")
    assert isinstance(reply, ErrorReply) and reply.text.startswith("ERR unknown command")


def test_reads_and_writes_still_translate() -> None:
    assert once(b"GET", b"k") == [b"GET", b"k"]
    assert once(b"INCR", b"k") == [b"once", b"7", b"1", b"INCR", b"k"]
