"""Connection-level commands with hostile or unusual arguments (attack2 branch, round 2).
Each test fails today; all are low severity.

* ``EXPIRED key...`` is RaftKV's internal command (the leader's active expiry), hidden
  from COMMAND and refused inside MULTI as unknown, but a client sending it outside MULTI
  gets it proposed and applied (live: ``EXPIRED big`` answered ``:0``). Internal commands
  must not be reachable from the client port, like ``EXEC payload``.
* ``COMMAND GETKEYS set a b`` (what client libraries use to route) answers the whole
  command table; so does any unknown subcommand (``COMMAND FOO``). Redis answers the keys
  (``a``), and an error for an unknown subcommand.
* ``HELLO 3 AUTH user pass`` answers with the server map: a client configured with a
  password believes it authenticated to a server that has no authentication at all.
  Redis without a password configured answers ``-WRONGPASS`` for an unknown user.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.node.pending import Pending
from raftkv.server.client_port import Connection
from raftkv.server.commands import cmd_command, cmd_hello, execute
from wire.reply import ErrorReply


def _node(submitted: list[list[bytes]]) -> Any:
    def submit(args: list[bytes]) -> Pending:
        submitted.append(args)
        return Pending.of(0)
    return SimpleNamespace(id=1, core=SimpleNamespace(leader_id=1), submit=submit,
                           settings=SimpleNamespace(enable_scripts=False))


def test_internal_expired_command_is_not_reachable_from_clients() -> None:
    submitted: list[list[bytes]] = []
    reply = execute(_node(submitted), Connection(1, "127.0.0.1:1"), [b"EXPIRED", b"k"]).value
    assert isinstance(reply, ErrorReply) and not submitted, (reply, submitted)


def test_command_getkeys_answers_keys_not_the_command_table() -> None:
    reply = cmd_command(_node([]), Connection(1, "127.0.0.1:1"),
                        [b"COMMAND", b"GETKEYS", b"set", b"a", b"b"]).value
    assert reply == [b"a"] or isinstance(reply, ErrorReply), str(reply)[:200]


def test_unknown_command_subcommand_is_an_error() -> None:
    reply = cmd_command(_node([]), Connection(1, "127.0.0.1:1"), [b"COMMAND", b"FOO"]).value
    assert isinstance(reply, ErrorReply), str(reply)[:200]


def test_hello_auth_does_not_pretend_to_authenticate() -> None:
    reply = cmd_hello(_node([]), Connection(1, "127.0.0.1:1"),
                      [b"HELLO", b"3", b"AUTH", b"admin", b"secret"]).value
    assert isinstance(reply, ErrorReply), reply


def _command(*args: bytes) -> Any:
    return cmd_command(_node([]), Connection(1, "127.0.0.1:1"), [b"COMMAND", *args]).value


def test_command_getkeys_follows_the_key_positions_and_redis_errors() -> None:
    """Pinned by the fix (fix-a): multi-key commands, no-key commands and bad calls get
    Redis's answers, and an unknown subcommand Redis's text."""
    assert _command(b"GETKEYS", b"mset", b"a", b"1", b"b", b"2") == [b"a", b"b"]
    assert _command(b"GETKEYS", b"del", b"a", b"b") == [b"a", b"b"]
    assert _command(b"GETKEYS", b"watch", b"x") == [b"x"]
    assert _command(b"GETKEYS", b"ping") == ErrorReply("ERR The command has no key arguments")
    assert _command(b"GETKEYS", b"nosuch", b"a") == ErrorReply("ERR Invalid command specified")
    assert _command(b"GETKEYS", b"expired", b"a") == ErrorReply("ERR Invalid command specified")
    assert _command(b"GETKEYS", b"get") == ErrorReply(
        "ERR Invalid number of arguments specified for command")
    assert _command(b"GETKEYS") == ErrorReply(
        "ERR wrong number of arguments for 'command|getkeys' command")
    assert _command(b"foo") == ErrorReply("ERR unknown subcommand 'foo'. Try COMMAND HELP.")
    assert isinstance(_command(), list) and len(_command()) > 10
