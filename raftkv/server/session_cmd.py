"""``RAFT SESSION OPEN [timeout-seconds] | SESSION CLOSE id | ONCE id seq command...``: client
sessions on the client port (the state machine's side is raftkv.kv.sessions).

Pure translation into the internal log commands: ``session_open ms``, ``session_close id``
and ``once id seq command...``. A read wrapped in ``ONCE`` is served as the plain read:
reads change nothing, so running one twice is harmless and it need not be logged.
"""

from __future__ import annotations

from collections.abc import Callable

from raftkv.kv import CommandSpec, lookup
from raftkv.kv.errors import unknown_command
from raftkv.kv.sessions import DEFAULT_TIMEOUT_MS
from wire.reply import ErrorReply

USAGE = ErrorReply(
    "ERR wrong arguments; try RAFT SESSION OPEN [timeout-seconds] | RAFT SESSION CLOSE id | "
    "RAFT ONCE id seq command [arg ...]"
)


def session_command(args: list[bytes], new_id: Callable[[], int]) -> list[bytes] | ErrorReply:
    """The state-machine command for ``RAFT SESSION ...`` or ``RAFT ONCE ...`` (``args``
    starts with RAFT), or the error to answer. The result is validated again on submit.

    ``new_id()`` draws the id a session opened here gets: at random (the caller's), since
    a session's id is all it takes to read its recorded replies or advance its sequence
    numbers (attack3: the entry counter let one ACL user read another's GETSET reply).
    Drawn for OPEN only: a RAFT ONCE, the hot path, needs no random bytes."""
    sub = args[1].lower() if len(args) > 1 else b""
    if sub == b"once":
        return once_command(args, lookup(args[4])) if len(args) > 4 else USAGE
    action = args[2].lower() if sub == b"session" and len(args) > 2 else b""
    if action == b"open" and len(args) in (3, 4):
        sid = b"%d" % new_id()
        if len(args) == 3:
            return [b"session_open", str(DEFAULT_TIMEOUT_MS).encode(), sid]
        seconds = args[3]
        if not seconds.isdigit() or len(seconds) > 12 or int(seconds) == 0:
            return ErrorReply("ERR session timeout must be a positive number of seconds")
        return [b"session_open", str(int(seconds) * 1000).encode(), sid]
    if action == b"close" and len(args) == 4:
        return [b"session_close", args[3]]
    return USAGE


# The connection's transaction state (server/transaction.py): not one command the log
# applies, so nothing a session could record once and answer again.
TRANSACTION_COMMANDS = frozenset({b"multi", b"exec", b"discard", b"watch", b"unwatch"})


def not_wrappable(name: bytes) -> ErrorReply:
    """What ``RAFT ONCE id seq NAME`` answers for a transaction command ``NAME``."""
    return ErrorReply(
        f"ERR RAFT ONCE cannot wrap {name.decode().upper()}: MULTI, EXEC, DISCARD, WATCH and "
        "UNWATCH change this connection's transaction state, they are not one command the "
        "log applies, so there is no reply to record once; send it without RAFT ONCE")


def once_command(args: list[bytes], spec: CommandSpec | None) -> list[bytes] | ErrorReply:
    """``RAFT ONCE id seq command...`` (at least 5 arguments) as a state-machine command,
    ``spec`` being the wrapped command's (the client port's hot path looked it up already):
    ``once id seq command...`` for a write, the command itself for a read."""
    inner = args[4:]
    name = inner[0].lower()
    if name in TRANSACTION_COMMANDS:  # (it answered "unknown command": session 11)
        return not_wrappable(name)
    # Internal commands are built by the server only; WATCH is the connection's
    # transaction state, not a read (attack7: it answered the key's internal version).
    if spec is None or spec.internal or spec.name == "watch":
        return unknown_command(inner)
    return inner if not spec.is_write else [b"once", args[2], args[3], *inner]
