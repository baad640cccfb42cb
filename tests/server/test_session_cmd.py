"""RAFT SESSION / RAFT ONCE translated into the log's commands (raftkv.server.session_cmd)."""

from __future__ import annotations

import pytest

from raftkv.kv import COMMANDS
from raftkv.server.commands import LOCAL, TRANSACTION, _is_write, is_write
from raftkv.server.session_cmd import session_command
from wire.reply import ErrorReply


def once(*words: bytes) -> list[bytes] | ErrorReply:
    return session_command([b"RAFT", b"ONCE", b"7", b"1", *words], lambda: 42)


@pytest.mark.parametrize("name", [b"WATCH", b"watch"])
def test_watch_cannot_ride_in_a_session(name: bytes) -> None:
    """attack7: ``RAFT ONCE id seq WATCH k`` went to the node as a read of the key's
    version, answering the internal ``[exists, version]`` pair (``1, 27``) instead of OK,
    and watched nothing: a client that then ran MULTI/EXEC believed the key guarded. WATCH
    is the connection's transaction state, like MULTI and EXEC: refused inside ONCE."""
    reply = once(name, b"k")
    assert isinstance(reply, ErrorReply) and reply.text.startswith(
        "ERR RAFT ONCE cannot wrap WATCH: ")


@pytest.mark.parametrize("words", [[b"MULTI"], [b"exec"], [b"Discard"], [b"WATCH", b"k"],
                                   [b"UNWATCH"]])
def test_a_transaction_command_is_refused_saying_why(words: list[bytes]) -> None:
    """Session 11: ``RAFT ONCE id seq MULTI`` answered "unknown command", as if MULTI did
    not exist; it says RAFT ONCE cannot wrap it, and why."""
    reply = once(*words)
    name = words[0].decode().upper()
    assert reply == ErrorReply(
        f"ERR RAFT ONCE cannot wrap {name}: MULTI, EXEC, DISCARD, WATCH and UNWATCH change "
        "this connection's transaction state, they are not one command the log applies, so "
        "there is no reply to record once; send it without RAFT ONCE")


def test_reads_and_writes_still_translate() -> None:
    assert once(b"GET", b"k") == [b"GET", b"k"]
    assert once(b"INCR", b"k") == [b"once", b"7", b"1", b"INCR", b"k"]


def test_raft_once_is_the_kind_of_its_command_by_the_rules() -> None:
    """``is_write`` answers RAFT ONCE from its table (the client port asks for every
    command): the same as the rules (``_is_write``) for every name, RAFT's own included."""
    names = [*LOCAL, *TRANSACTION, *(n.encode() for n in COMMANDS), b"nosuch", b"InCr"]
    for name in names:
        for args in ([b"RAFT", b"ONCE", b"7", b"1", name, b"k"],
                     [b"raft", b"once", b"7", b"1", name]):
            assert is_write(args) is _is_write(args), args
    for args in ([b"RAFT", b"STATUS"], [b"RAFT", b"ONCE", b"7", b"1"],
                 [b"raft", b"session", b"open"],
                 [b"RAFT", b"ONCE", b"7", b"1", b"RAFT", b"ONCE", b"7", b"1", b"INCR", b"k"]):
        assert is_write(args) is _is_write(args) is None, args
