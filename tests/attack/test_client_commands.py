"""Hostile arguments to the client port's local commands, found by the attacker (each
failed before the fix): names and library info that forge CLIENT LIST lines, a protocol
version that only Python's int() reads as a number."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from raftkv.server.client_port import Connection
from raftkv.server.commands import cmd_client, cmd_hello
from wire.reply import ErrorReply

NODE = SimpleNamespace(id=1, core=SimpleNamespace(leader_id=1))


@pytest.mark.parametrize("name", [b"x\nid=999 addr=10.0.0.1:1 name=admin", b"a b", b"\r"])
def test_hello_setname_refuses_what_client_setname_refuses(name: bytes) -> None:
    """CLIENT SETNAME refuses spaces and control characters (Redis's rule), HELLO SETNAME
    takes anything: a name with a newline forges whole lines in every other client's
    CLIENT LIST (here a fake 'admin' client from 10.0.0.1). Redis checks both the same."""
    conn = Connection(1, "127.0.0.1:1")
    reply = cmd_hello(NODE, conn, [b"HELLO", b"2", b"SETNAME", name]).value
    assert isinstance(reply, ErrorReply), reply
    assert conn.name == ""


@pytest.mark.parametrize("value", [b"lib\nid=999 addr=10.0.0.1:1", b"a b"])
def test_client_setinfo_refuses_spaces_and_newlines(value: bytes) -> None:
    """CLIENT SETINFO LIB-NAME/LIB-VER end up in CLIENT LIST lines unchecked (Redis
    refuses spaces, newlines and special characters there too)."""
    conn = Connection(1, "127.0.0.1:1")
    reply = cmd_client(NODE, conn, [b"CLIENT", b"SETINFO", b"LIB-NAME", value]).value
    assert isinstance(reply, ErrorReply), reply


def test_hello_protocol_version_is_a_plain_integer() -> None:
    """``int()`` accepts '0_3' and ' 3 ' (Python literal rules): HELLO 0_3 switches the
    connection to RESP3; Redis answers -NOPROTO / not an integer."""
    conn = Connection(1, "127.0.0.1:1")
    reply = cmd_hello(NODE, conn, [b"HELLO", b"0_3"]).value
    assert isinstance(reply, ErrorReply), reply
    assert conn.proto == 2


BIG = b"n" * (8 * 1024 * 1024 - 200)  # printable: only its length is wrong


@pytest.mark.parametrize("call", [
    [b"CLIENT", b"SETNAME", BIG],
    [b"CLIENT", b"SETINFO", b"LIB-NAME", BIG],
    [b"CLIENT", b"SETINFO", b"LIB-VER", BIG],
    [b"HELLO", b"2", b"SETNAME", BIG],
], ids=["setname", "lib-name", "lib-ver", "hello-setname"])
def test_names_and_library_info_are_bounded(call: list[bytes]) -> None:
    """attack8: a connection keeps these for its life, outside every buffer bound; 12
    connections with 8 MiB of each held 270 MB of a live node (10,000 connections: 240 GB)."""
    conn = Connection(1, "127.0.0.1:1")
    handler = cmd_hello if call[0] == b"HELLO" else cmd_client
    reply = handler(NODE, conn, call).value
    assert reply == ErrorReply(
        "ERR Client names and library info are at most 4096 bytes."), reply
    assert (conn.name, conn.lib_name, conn.lib_ver) == ("", "", "")
    if handler is cmd_client:  # (HELLO needs an authenticated connection to succeed)
        ok = handler(NODE, conn, [*call[:-1], b"n" * 4096]).value
        assert not isinstance(ok, ErrorReply), ok
