"""The command table: every command the store knows, its arity, and how it is served.

``write`` commands change the map, so they go through the Raft log and are applied on every
node; ``read`` commands are served from local state once a ReadIndex confirms it is current.
Arity follows Redis: positive means exactly that many arguments (the name included),
negative means at least that many. The key positions (first, last, step) are Redis's legacy
key specs, so callers can find the keys a command touches without knowing the command.

The server calls ``validate`` before proposing, so the log never fills with commands that
fail for arity or syntax; ``KVStateMachine.apply`` checks again, since the log is input too.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from wire.reply import ErrorReply, SimpleString

from . import syntax
from .errors import INVALID_CURSOR, unknown_command, wrong_arity
from .numbers import parse_cursor

# What a command answers with (see wire/reply.py): bulk, null, integer, array, status, error.
Reply = bytes | int | None | list["Reply"] | SimpleString | ErrorReply

WRITE = "write"
READ = "read"


@attrs.frozen
class CommandSpec:
    """One command: lower-case name, Redis arity, ``write`` or ``read``, key positions."""

    name: str
    arity: int
    flag: str
    first_key: int = 1
    last_key: int = 1
    key_step: int = 1

    @property
    def is_write(self) -> bool:
        return self.flag == WRITE

    @property
    def flags(self) -> frozenset[str]:
        return frozenset((self.flag,))

    def arity_ok(self, argc: int) -> bool:
        """True if ``argc`` arguments (the name included) fit this command's arity."""
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    def keys(self, args: list[bytes]) -> list[bytes]:
        """The key arguments of ``args`` (a call of this command that passed arity)."""
        if self.first_key == 0:
            return []
        last = len(args) - 1 if self.last_key < 0 else self.last_key
        return args[self.first_key : last + 1 : self.key_step]


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        # writes
        CommandSpec("set", -3, WRITE),
        CommandSpec("del", -2, WRITE, 1, -1, 1),
        CommandSpec("incr", 2, WRITE),
        CommandSpec("decr", 2, WRITE),
        CommandSpec("incrby", 3, WRITE),
        CommandSpec("decrby", 3, WRITE),
        CommandSpec("append", 3, WRITE),
        CommandSpec("mset", -3, WRITE, 1, -1, 2),
        CommandSpec("flushall", -1, WRITE, 0, 0, 0),
        CommandSpec("cas", 4, WRITE),
        # reads
        CommandSpec("get", 2, READ),
        CommandSpec("exists", -2, READ, 1, -1, 1),
        CommandSpec("strlen", 2, READ),
        CommandSpec("mget", -2, READ, 1, -1, 1),
        CommandSpec("keys", 2, READ, 0, 0, 0),
        CommandSpec("scan", -2, READ, 0, 0, 0),
        CommandSpec("dbsize", 1, READ, 0, 0, 0),
    )
}

_BY_BYTES: dict[bytes, CommandSpec] = {name.encode(): spec for name, spec in COMMANDS.items()}


def legacy_form(args: list[bytes]) -> list[bytes]:
    """The original RaftKV's ``set key=value`` as ``SET key value`` (the server runs it as a
    plain SET; the client sends it as one, so it retries it as an idempotent write)."""
    if len(args) == 2 and b"=" in args[1] and args[0].lower() == b"set":
        key, _, value = args[1].partition(b"=")
        return [args[0], key, value]
    return args


def lookup(name: bytes | str) -> CommandSpec | None:
    """The command called ``name`` in any case, or None."""
    if isinstance(name, str):
        return COMMANDS.get(name.lower())
    return _BY_BYTES.get(name.lower())


def check_arity(args: list[bytes]) -> ErrorReply | None:
    """Redis's error for an unknown command or a wrong argument count, or None if fine.

    MSET's pairs count as arity: Redis answers an odd count with the arity error too.
    """
    spec = _BY_BYTES.get(args[0].lower()) if args else None
    if spec is None:
        return unknown_command(args)
    if not spec.arity_ok(len(args)) or (spec.name == "mset" and len(args) % 2 == 0):
        return wrong_arity(spec.name)
    return None


def _set(args: list[bytes]) -> ErrorReply | None:
    flags = syntax.parse_set_options(args)
    return flags if isinstance(flags, ErrorReply) else None


def _incrby(args: list[bytes]) -> ErrorReply | None:
    amount = syntax.parse_increment(args[2])
    return amount if isinstance(amount, ErrorReply) else None


def _decrby(args: list[bytes]) -> ErrorReply | None:
    amount = syntax.parse_decrement(args[2])
    return amount if isinstance(amount, ErrorReply) else None


def _scan(args: list[bytes]) -> ErrorReply | None:
    if parse_cursor(args[1]) is None:
        return INVALID_CURSOR
    options = syntax.parse_scan_options(args)
    return options if isinstance(options, ErrorReply) else None


# Checks that need only the arguments (never the data); commands without one cannot fail so.
_SYNTAX: dict[str, Callable[[list[bytes]], ErrorReply | None]] = {
    "set": _set,
    "incrby": _incrby,
    "decrby": _decrby,
    "flushall": syntax.check_flushall,
    "scan": _scan,
}


def validate(args: list[bytes]) -> ErrorReply | None:
    """Every error ``args`` gets whatever the data holds (arity, syntax), or None.

    A command that passes can still fail on the data: INCR of a non-integer, an overflow,
    APPEND past the size limit.
    """
    error = check_arity(args)
    if error is not None:
        return error
    check = _SYNTAX.get(args[0].lower().decode())
    return None if check is None else check(args)
