"""The log's internal commands from an authenticated client (attack3). attack2's
``test_internal_expired_command_is_not_reachable_from_clients`` passed without the fix: its
connection had no user, so the gate answered NOAUTH before the command was looked at. Here
the connection is the default user's, as on a port without passwords."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from raftkv.node.pending import Pending
from raftkv.server.client_port import Connection
from raftkv.server.commands import execute
from wire.reply import ErrorReply


def _node(submitted: list[list[bytes]]) -> Any:
    def submit(args: list[bytes]) -> Pending:
        submitted.append(args)
        return Pending.of(0)
    return SimpleNamespace(id=1, core=SimpleNamespace(leader_id=1), submit=submit,
                           settings=SimpleNamespace(enable_scripts=False))


@pytest.mark.parametrize("args", [
    [b"EXPIRED", b"k"], [b"once", b"1", b"1", b"FLUSHALL"],
    [b"ONCE", b"1", b"1", b"SET", b"k", b"v"], [b"session_open", b"1000"],
    [b"SESSION_CLOSE", b"1"], [b"publish_member", b"2"], [b"PUBLISH_MEMBER", b"3"]])
def test_internal_commands_are_unknown_commands(args: list[bytes]) -> None:
    submitted: list[list[bytes]] = []
    conn = Connection(1, "127.0.0.1:1")
    conn.user = "default"
    reply = execute(_node(submitted), conn, args).value
    assert not submitted, submitted
    assert isinstance(reply, ErrorReply) and reply.text.startswith("ERR unknown command"), reply


def test_a_plain_write_still_reaches_the_node() -> None:
    submitted: list[list[bytes]] = []
    conn = Connection(1, "127.0.0.1:1")
    conn.user = "default"
    execute(_node(submitted), conn, [b"SET", b"k", b"v"])
    assert submitted == [[b"SET", b"k", b"v"]]
