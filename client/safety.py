"""Which commands the client may send again after a failure (pure: no I/O).

A command whose outcome is unknown (a ``-UNKNOWN`` reply, or a connection that failed
after the request left) may be sent again only if doing it twice is the same as doing it
once. ``-TRYAGAIN`` and a connection that failed before sending are definite failures:
every command may be retried after them.

Idempotent means the *state* is the same; a retried ``DEL`` may count 0 keys that its
first, applied, attempt had already removed. ``SET ... NX`` is not idempotent here (a
retry would answer "not set" about the key it set itself), nor is ``SET ... GET`` (the
retry returns the value the first attempt wrote), nor ``SET ... EX|PX`` (the retry moves
the deadline later). Absolute deadlines (``EXPIREAT``, ``PEXPIREAT``, ``SET ... EXAT|PXAT``)
and ``PERSIST`` are idempotent; relative ones (``EXPIRE``, ``SETEX``) are not.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from raftkv.kv import COMMANDS


class Safety(enum.Enum):
    READ = "read"  # changes nothing: always retried
    IDEMPOTENT = "idempotent"  # retried after an unknown outcome too
    UNSAFE = "unsafe"  # retried only after a definite failure


# The key-value reads come from the server's own command table, so a read command added
# there is retried here too; the rest are the connection and introspection commands.
READS = frozenset(name.encode() for name, spec in COMMANDS.items() if not spec.is_write) | {
    b"ping", b"echo", b"info", b"command"
}
IDEMPOTENT_WRITES = frozenset(
    b"del unlink mset flushall flushdb persist expireat pexpireat".split())
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
    if name in IDEMPOTENT_WRITES:
        return Safety.IDEMPOTENT
    if name == b"set":
        options = {word(a) for a in args[3:]}
        unsafe = options & {b"nx", b"get", b"ex", b"px"}
        return Safety.UNSAFE if unsafe else Safety.IDEMPOTENT
    subs = _READ_SUBCOMMANDS.get(name)
    if subs is not None and len(args) > 1 and word(args[1]) in subs:
        return Safety.READ
    return Safety.UNSAFE
