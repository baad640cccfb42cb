"""Scripts are off unless every node runs with --enable-scripts (a script can hold every
replica's apply loop for up to an hour: README). The client port refused ``EVAL`` by its
name only, so ``RAFT ONCE id seq EVAL ...`` (and EVALSHA, EVAL_RO, SCRIPT LOAD) ran on a
default cluster (attack3, live: ``RAFT ONCE 17 1 EVAL "return redis.call('set',...)" 0``
answered OK and the key was set)."""

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
        return Pending.of(1)
    return SimpleNamespace(id=1, core=SimpleNamespace(leader_id=1), submit=submit,
                           submit_once=lambda entry, spec: submit(entry),
                           settings=SimpleNamespace(enable_scripts=False))


@pytest.mark.parametrize("inner", [
    [b"EVAL", b"return 1", b"0"], [b"evalsha", b"a" * 40, b"0"],
    [b"EVAL_RO", b"return 1", b"0"], [b"SCRIPT", b"LOAD", b"return 1"]])
def test_raft_once_does_not_carry_a_script_past_the_switch(inner: list[bytes]) -> None:
    submitted: list[list[bytes]] = []
    conn = Connection(1, "127.0.0.1:1")
    conn.user = "default"
    reply = execute(_node(submitted), conn, [b"RAFT", b"ONCE", b"5", b"1", *inner]).value
    assert not submitted, f"submitted with scripts disabled: {submitted}"
    assert isinstance(reply, ErrorReply) and "scripts are disabled" in reply.text, reply


def test_raft_once_of_a_plain_write_still_goes_through() -> None:
    submitted: list[list[bytes]] = []
    conn = Connection(1, "127.0.0.1:1")
    conn.user = "default"
    execute(_node(submitted), conn, [b"RAFT", b"ONCE", b"5", b"1", b"SET", b"k", b"v"])
    assert submitted and submitted[0][0] == b"once", submitted
