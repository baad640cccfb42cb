"""Keyspace notifications: Redis's ``notify-keyspace-events`` flags, and the events an
applied entry's changes make.

The changes come from what the state machine applied (``raftkv.kv.changes.Change``: the
command that made it as ``op``, the key, its value and deadline afterwards), so every node
derives the same events in the same order from the same log. Each event goes to
``__keyspace@0__:<key>`` (message: the event name) when the flags have ``K``, and to
``__keyevent@0__:<event>`` (message: the key) when they have ``E``, as Redis sends them.

Event names are Redis 7's for the same commands: ``set`` (SET, SETNX, SETEX, GETSET, MSET,
CAS...), ``expire`` after ``set`` when the key has a deadline afterwards (SET EX, SETEX),
``incrby`` (INCR, DECR, INCRBY, DECRBY), ``incrbyfloat``, ``append``, ``setrange``, ``del``,
``rename_from``/``rename_to``, ``copy_to``, ``expire``, ``persist``, ``expired``. Where a
change alone cannot tell what Redis would: ``SET k v KEEPTTL`` on a key with a TTL also
sends ``expire``; the ``n`` (new key) and ``m`` (key miss) classes are accepted and never
sent; FLUSHALL sends nothing (Redis sends nothing either).

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

# Redis's event classes (server.h NOTIFY_*).
KEYSPACE = 1 << 0  # K
KEYEVENT = 1 << 1  # E
GENERIC = 1 << 2  # g
STRING = 1 << 3  # $
LIST = 1 << 4  # l
SET = 1 << 5  # s
HASH = 1 << 6  # h
ZSET = 1 << 7  # z
EXPIRED = 1 << 8  # x
EVICTED = 1 << 9  # e
STREAM = 1 << 10  # t
KEY_MISS = 1 << 11  # m
MODULE = 1 << 12  # d
NEW = 1 << 13  # n
ALL = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE

_LETTERS = {"g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH, "z": ZSET,
            "x": EXPIRED, "e": EVICTED, "t": STREAM, "m": KEY_MISS, "d": MODULE, "n": NEW,
            "K": KEYSPACE, "E": KEYEVENT, "A": ALL}
INVALID_FLAGS = ("ERR CONFIG SET failed (possibly related to argument "
                 "'notify-keyspace-events') - Invalid event class character. Use "
                 "'Ag$lshzxeKEtmdn'.")


def parse_flags(text: str) -> int | None:
    """The flags of a ``notify-keyspace-events`` string; None if a letter is unknown."""
    flags = 0
    for letter in text:
        bit = _LETTERS.get(letter)
        if bit is None:
            return None
        flags |= bit
    return flags


def flags_text(flags: int) -> str:
    """The string CONFIG GET shows for ``flags``, in Redis's order."""
    if flags & ALL == ALL:
        out = "A"
    else:
        out = "".join(letter for letter, bit in (("g", GENERIC), ("$", STRING), ("l", LIST),
                                                ("s", SET), ("h", HASH), ("z", ZSET),
                                                ("x", EXPIRED), ("e", EVICTED),
                                                ("t", STREAM), ("d", MODULE))
                      if flags & bit)
    for letter, bit in (("K", KEYSPACE), ("E", KEYEVENT), ("m", KEY_MISS), ("n", NEW)):
        if flags & bit:
            out += letter
    return out


class ChangeLike(Protocol):
    """What an event is derived from (``raftkv.kv.changes.Change``)."""

    @property
    def op(self) -> str: ...

    @property
    def key(self) -> bytes: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def deadline_ms(self) -> int | None: ...


_VALUE_EVENTS = {
    **dict.fromkeys(("set", "setnx", "setex", "psetex", "getset", "mset", "msetnx", "cas"),
                    "set"),
    **dict.fromkeys(("incr", "decr", "incrby", "decrby"), "incrby"),
    "incrbyfloat": "incrbyfloat",
    "append": "append",
    "setrange": "setrange",
    "copy": "copy_to",
    "rename": "rename_to",
    "renamenx": "rename_to",
}
_GONE_EVENTS = {"rename": "rename_from", "renamenx": "rename_from"}  # otherwise "del"
_SETS_TTL = frozenset(("set", "setex", "psetex"))
_CLASS = {"del": GENERIC, "expire": GENERIC, "persist": GENERIC, "rename_from": GENERIC,
          "rename_to": GENERIC, "copy_to": GENERIC, "expired": EXPIRED}


def events(change: ChangeLike) -> list[str]:
    """Redis's event names for one change, in the order Redis sends them."""
    op = change.op
    if op == "expired":
        return ["expired"]
    if op in ("flushall", "flushdb"):
        return []
    if change.value is not None:  # the command set the value
        name = _VALUE_EVENTS.get(op)
        if name is None:
            return []
        if op in _SETS_TTL and change.deadline_ms is not None:
            return [name, "expire"]
        return [name]
    if change.deadline_ms is not None:  # only its deadline changed, and it has one
        return ["expire"]
    if op in ("persist", "getex"):  # its deadline removed (they never delete a key: one
        return ["persist"]  # past its deadline is ``expired``, one given a past one ``del``)
    return [_GONE_EVENTS.get(op, "del")]


def event_class(name: str) -> int:
    return _CLASS.get(name, STRING)


def keyspace_messages(changes: Iterable[ChangeLike], flags: int) -> Iterator[tuple[bytes, bytes]]:
    """The (channel, message) pairs ``changes`` make under ``flags``, in order."""
    if not flags & (KEYSPACE | KEYEVENT):
        return
    for change in changes:
        for name in events(change):
            if not flags & event_class(name):
                continue
            event = name.encode()
            if flags & KEYSPACE:
                yield b"__keyspace@0__:" + change.key, event
            if flags & KEYEVENT:
                yield b"__keyevent@0__:" + event, change.key
