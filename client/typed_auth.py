"""The credentials of an ``AUTH`` typed in raftkv-cli's REPL, for every connection it opens.

The REPL sends a typed ``AUTH`` like any command: the node authenticates that one
connection, but the client opens others (a reconnect after a failover or a restart, the
connection of a ``SUBSCRIBE``, ``status``) with its own ``Security``, and before this they
ran as ``default``, without a word (attack22). So the REPL keeps ``Security`` in step with
what its connection runs as, by the rules the node (and Redis) apply to that connection:

- ``AUTH [user] password`` or ``HELLO <ver> AUTH user password`` that succeeded: those
  credentials (the last AUTH option of a HELLO, as the node takes it);
- one that failed: no change (the node leaves the connection's user as it was; Redis
  does too);
- ``RESET``: back to the command line's ``--user/--pass`` (the node takes the connection
  back to its initial user, which a new connection authenticates as).

redis-cli 7.0.15 keeps none of this: after it reconnects, a typed AUTH is gone (NOAUTH,
or ``default``). It says so, though: it reports the lost connection and does not run the
command, while this client reconnects and retries on its own, so it must authenticate.
A typed password is kept as typed (bytes, the node compares bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from client.security import Security


def typed_credentials(args: Sequence[bytes]) -> tuple[bytes | None, bytes] | None:
    """``(user or None, password)`` that ``args`` authenticate with if they succeed; None
    for a command that sets no credentials (or that the node refuses as malformed)."""
    if not args:
        return None
    name = args[0].lower()
    if name == b"auth":
        if len(args) == 2:
            return None, args[1]
        if len(args) == 3:
            return args[1], args[2]
        return None
    if name == b"hello" and len(args) > 1:
        pair: tuple[bytes | None, bytes] | None = None
        rest = list(args[2:])
        while rest:  # the node's parse (raftkv.server.commands.cmd_hello): the last AUTH
            opt = rest[0].lower()
            if opt == b"setname" and len(rest) >= 2:
                rest = rest[2:]
            elif opt == b"auth" and len(rest) >= 3:
                pair, rest = (rest[1], rest[2]), rest[3:]
            else:
                return None
        return pair
    return None


def after_success(current: Security | None, initial: Security | None,
                  args: Sequence[bytes]) -> Security | None:
    """The ``Security`` for new connections once ``args`` succeeded on the REPL's
    connection (``initial``: the command line's); ``current`` if they change nothing."""
    if len(args) == 1 and args[0].lower() == b"reset":
        return initial
    pair = typed_credentials(args)
    if pair is None:
        return current
    user, password = pair
    if current is None:
        return Security(username=user, password=password)
    return attrs.evolve(current, username=user, password=password)
