"""Lua scripts are refused unless the node runs with --enable-scripts (the attacker found
scripts that crash or hang every replica), inside MULTI too."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from raftkv.server.acl import AccessControl
from raftkv.server.commands import SCRIPTS_DISABLED, execute
from raftkv.server.connection import Connection
from raftkv.server.transaction import multi
from wire.reply import ErrorReply


def node(enable: bool) -> SimpleNamespace:
    submitted: list[list[bytes]] = []
    return SimpleNamespace(
        id=1, settings=SimpleNamespace(enable_scripts=enable, max_request_bytes=1 << 20),
        submit=lambda args: submitted.append(args) or SimpleNamespace(value="proposed"),
        submitted=submitted, client_server=SimpleNamespace(acl=AccessControl.configure()),
    )


@pytest.mark.parametrize("args", [[b"EVAL", b"return 1", b"0"], [b"evalsha", b"ab" * 20, b"0"],
                                  [b"EVAL_RO", b"return 1", b"0"], [b"SCRIPT", b"LOAD", b"x"]])
def test_script_commands_are_refused_unless_enabled(args: list[bytes]) -> None:
    off = node(False)
    reply = execute(off, Connection(1, "127.0.0.1:1", user="default"), args).value
    assert reply == ErrorReply(SCRIPTS_DISABLED) and off.submitted == []
    on = node(True)
    execute(on, Connection(1, "127.0.0.1:1", user="default"), args)
    assert on.submitted == [args]


def test_a_script_queued_in_multi_aborts_the_transaction() -> None:
    conn = Connection(1, "127.0.0.1:1", user="default")
    multi(conn.tx)
    reply = execute(node(False), conn, [b"EVAL", b"return 1", b"0"]).value
    assert isinstance(reply, ErrorReply) and conn.tx.dirty
