"""Which commands the client may send again after a failure (pure: no I/O).

A command whose outcome is unknown (a ``-UNKNOWN`` reply, or a connection that failed
after the request left) may be sent again only if it changes nothing (a read), or if it
carries a session tag the server deduplicates (``RAFT ONCE``: see client.api; every write
gets one while the client has a session). ``-TRYAGAIN`` and a connection that failed
before sending are definite failures: every command may be retried after them.

No plain write counts as safe to repeat, not even ``SET k v`` or ``DEL k``: "the state is
the same" holds only without other writers. With one, a retried ``SET k v`` applied a second
time, after another client's acknowledged ``SET k w``, overwrites it, and a reader sees v,
w, v for one SET of v (not linearizable; attack2). etcd's client retries a Put only when it
provably never reached a server, as this client does without a session.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from raftkv.kv import COMMANDS


class Safety(enum.Enum):
    READ = "read"  # changes nothing: always retried
    IDEMPOTENT = "idempotent"  # retried after an unknown outcome too (a RAFT ONCE tag)
    UNSAFE = "unsafe"  # retried only after a definite failure


# The key-value reads come from the server's own command table, so a read command added
# there is retried here too; the rest are the connection and introspection commands.
READS = frozenset(name.encode() for name, spec in COMMANDS.items() if not spec.is_write) | {
    b"ping", b"echo", b"info", b"command"
}
_READ_SUBCOMMANDS = {
    b"raft": frozenset({b"status"}),
    b"config": frozenset({b"get"}),
    b"client": frozenset({b"getname", b"id", b"info", b"list"}),
}


def word(arg: bytes | str | int | float) -> bytes:
    """A command word in lower case, as bytes."""
    if isinstance(arg, bytes):
        return arg.lower()
    return str(arg).encode().lower()


def classify(args: Sequence[bytes | str | int | float]) -> Safety:
    """How safe it is to send ``args`` again; unknown commands are ``UNSAFE``."""
    if not args:
        return Safety.UNSAFE
    name = word(args[0])
    if name in READS:
        return Safety.READ
    subs = _READ_SUBCOMMANDS.get(name)
    if subs is not None and len(args) > 1 and word(args[1]) in subs:
        return Safety.READ
    return Safety.UNSAFE
