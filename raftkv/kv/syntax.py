"""Option parsing for commands whose arguments can be wrong regardless of the data.

Shared by the server-side pre-check (``commands.validate``, before a command is proposed)
and by the state machine itself (which must still reject anything malformed in the log).
Option words are compared like Redis's ``strcasecmp`` on C strings: case-insensitively, up
to the first NUL byte.
"""

from __future__ import annotations

import attrs

from wire.reply import ErrorReply

from .errors import (
    DB_OUT_OF_RANGE,
    DECR_OVERFLOW,
    NOT_INTEGER,
    OFFSET_OUT_OF_RANGE,
    SAME_OBJECT,
    STRING_TOO_LONG,
    SYNTAX_ERROR,
    invalid_expire,
    unknown_subcommand,
)
from .numbers import INT64_MAX, INT64_MIN, parse_int64

SET_NX = 1
SET_XX = 2
SET_GET = 4
SET_KEEPTTL = 8
SET_PERSIST = 16  # GETEX PERSIST
# How the expiry argument reads: relative (EX, PX) or absolute (EXAT, PXAT), s or ms.
_UNITS = {b"ex": (1000, False), b"px": (1, False), b"exat": (1000, True), b"pxat": (1, True)}


def option_word(arg: bytes) -> bytes:
    """An option argument as ``strcasecmp`` sees it: up to the first NUL, lower-cased."""
    nul = arg.find(b"\0")
    return (arg if nul < 0 else arg[:nul]).lower()


@attrs.frozen
class ExpireSpec:
    """An expiry option as given: milliseconds, and whether it is absolute (EXAT, PXAT)."""

    ms: int
    absolute: bool

    def deadline(self, now: int, command: str) -> int | ErrorReply:
        """The absolute deadline in ms at ``now`` (the entry's time), or Redis's error."""
        if self.absolute:
            return self.ms
        if self.ms > INT64_MAX - now:
            return invalid_expire(command)
        return self.ms + now


@attrs.frozen
class SetOptions:
    """The flags of SET (NX, XX, GET, KEEPTTL) or GETEX (PERSIST) and an expiry, if any."""

    flags: int = 0
    expire: ExpireSpec | None = None


def parse_expire_value(arg: bytes, unit_ms: int, absolute: bool, command: str
                       ) -> ExpireSpec | ErrorReply:
    """Redis's ``getExpireMillisecondsOrReply`` minus the part that needs the time."""
    value = parse_int64(arg)
    if value is None:
        return NOT_INTEGER
    if value <= 0 or (unit_ms == 1000 and value > INT64_MAX // 1000):
        return invalid_expire(command)
    return ExpireSpec(value * unit_ms, absolute)


def parse_set_options(args: list[bytes], *, getex: bool = False) -> SetOptions | ErrorReply:
    """The options of ``SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]``
    (from ``args[3]``), or of ``GETEX key [EX|PX|EXAT|PXAT|PERSIST]`` (from ``args[2]``).

    Follows Redis 7's ``parseExtendedStringArgumentsOrReply``: NX with XX, or two different
    expiry options, is a syntax error; repeating the same one is allowed (the last wins).
    """
    flags = 0
    unit: bytes | None = None
    raw = b""
    i = 2 if getex else 3
    n = len(args)
    while i < n:
        word = option_word(args[i])
        has_next = i + 1 < n
        if not getex and word == b"nx" and not flags & SET_XX:
            flags |= SET_NX
        elif not getex and word == b"xx" and not flags & SET_NX:
            flags |= SET_XX
        elif not getex and word == b"get":
            flags |= SET_GET
        elif not getex and word == b"keepttl" and unit is None:
            flags |= SET_KEEPTTL
        elif getex and word == b"persist" and unit is None:
            flags |= SET_PERSIST
        elif (word in _UNITS and has_next and not flags & (SET_KEEPTTL | SET_PERSIST)
              and unit in (None, word)):
            unit = word
            raw = args[i + 1]
            i += 1
        else:
            return SYNTAX_ERROR
        i += 1
    if unit is None:
        return SetOptions(flags)
    unit_ms, absolute = _UNITS[unit]
    spec = parse_expire_value(raw, unit_ms, absolute, "getex" if getex else "set")
    return spec if isinstance(spec, ErrorReply) else SetOptions(flags, spec)


EXPIRE_NX, EXPIRE_XX, EXPIRE_GT, EXPIRE_LT = 1, 2, 4, 8
_EXPIRE_FLAGS = {b"nx": EXPIRE_NX, b"xx": EXPIRE_XX, b"gt": EXPIRE_GT, b"lt": EXPIRE_LT}


def parse_expire_args(args: list[bytes], unit_ms: int) -> tuple[int, int] | ErrorReply:
    """``(when, flags)`` of ``EXPIRE key when [NX|XX|GT|LT]`` and its kin; ``when`` in the
    command's unit times ``unit_ms`` (still relative for EXPIRE/PEXPIRE). Redis 7's order of
    checks: the options, then the integer, then the seconds range."""
    flags = 0
    for arg in args[3:]:
        flag = _EXPIRE_FLAGS.get(option_word(arg))
        if flag is None:
            text = arg.split(b"\0", 1)[0].decode("utf-8", "replace")
            return ErrorReply(f"ERR Unsupported option {text}")
        flags |= flag
    if flags & EXPIRE_NX and flags & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT):
        return ErrorReply("ERR NX and XX, GT or LT options at the same time are not compatible")
    if flags & EXPIRE_GT and flags & EXPIRE_LT:
        return ErrorReply("ERR GT and LT options at the same time are not compatible")
    when = parse_int64(args[2])
    if when is None:
        return NOT_INTEGER
    if unit_ms == 1000 and not INT64_MIN // 1000 <= when <= INT64_MAX // 1000:
        return invalid_expire(args[0].lower().decode("utf-8", "replace"))
    return when * unit_ms, flags


def parse_increment(arg: bytes) -> int | ErrorReply:
    """The amount of INCRBY."""
    value = parse_int64(arg)
    return NOT_INTEGER if value is None else value


def parse_decrement(arg: bytes) -> int | ErrorReply:
    """The amount DECRBY adds: the negated argument (whose minimum cannot be negated)."""
    value = parse_int64(arg)
    if value is None:
        return NOT_INTEGER
    if value == INT64_MIN:
        return DECR_OVERFLOW
    return -value


def check_flushall(args: list[bytes]) -> ErrorReply | None:
    """``FLUSHALL [ASYNC|SYNC]``: both modes empty the map at once here."""
    if len(args) == 1 or (len(args) == 2 and option_word(args[1]) in (b"sync", b"async")):
        return None
    return SYNTAX_ERROR


@attrs.frozen
class ScanOptions:
    """The options of ``SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]``."""

    count: int = 10
    pattern: bytes | None = None  # None: no filter ("*" is the same as none)
    type_matches: bool = True  # TYPE string (every key here is one) or no TYPE


def parse_scan_options(args: list[bytes]) -> ScanOptions | ErrorReply:
    """Parse the options after SCAN's cursor exactly as Redis 7 does (later ones win)."""
    count, pattern, type_matches = 10, None, True
    i, n = 2, len(args)
    while i < n:
        word = option_word(args[i])
        if n - i < 2:
            return SYNTAX_ERROR
        if word == b"count":
            value = parse_int64(args[i + 1])
            if value is None:
                return NOT_INTEGER
            if value < 1:
                return SYNTAX_ERROR
            count = value
        elif word == b"match":
            pattern = None if args[i + 1] == b"*" else args[i + 1]
        elif word == b"type":
            # Redis 7 answers an unknown type name with no keys, not an error.
            type_matches = option_word(args[i + 1]) == b"string"
        else:
            return SYNTAX_ERROR
        i += 2
    return ScanOptions(count, pattern, type_matches)


def check_setrange(args: list[bytes], max_len: int) -> ErrorReply | None:
    """``SETRANGE key offset value``: the offset an integer >= 0, the result within limits
    (an empty value changes nothing, so any offset passes then, as in Redis)."""
    offset = parse_int64(args[2])
    if offset is None:
        return NOT_INTEGER
    if offset < 0:
        return OFFSET_OUT_OF_RANGE
    if args[3] and offset + len(args[3]) > max_len:
        return STRING_TOO_LONG
    return None


def parse_copy_options(args: list[bytes]) -> bool | ErrorReply:
    """``COPY src dst [DB n] [REPLACE]``: True with REPLACE. Only database 0 exists."""
    replace = False
    i = 3
    while i < len(args):
        word = option_word(args[i])
        if word == b"replace":
            replace = True
        elif word == b"db" and i + 1 < len(args):
            db = parse_int64(args[i + 1])
            if db is None:
                return NOT_INTEGER
            if db != 0:
                return DB_OUT_OF_RANGE
            i += 1
        else:
            return SYNTAX_ERROR
        i += 1
    if args[1] == args[2]:
        return SAME_OBJECT
    return replace


def check_object(args: list[bytes]) -> ErrorReply | None:
    """``OBJECT ENCODING key`` is the one subcommand here."""
    if option_word(args[1]) == b"encoding" and len(args) == 3:
        return None
    if option_word(args[1]) == b"encoding":
        return ErrorReply("ERR wrong number of arguments for 'object|encoding' command")
    return unknown_subcommand(args[1], "object")


def check_script(args: list[bytes]) -> ErrorReply | None:
    """``SCRIPT LOAD body | EXISTS sha... | FLUSH [ASYNC|SYNC]``."""
    sub = option_word(args[1])
    if sub == b"load":
        return None if len(args) == 3 else ErrorReply(
            "ERR wrong number of arguments for 'script|load' command")
    if sub == b"exists":
        return None if len(args) >= 3 else ErrorReply(
            "ERR wrong number of arguments for 'script|exists' command")
    if sub == b"flush":
        if len(args) == 2 or (len(args) == 3 and option_word(args[2]) in (b"sync", b"async")):
            return None
        return SYNTAX_ERROR
    return unknown_subcommand(args[1], "script")


def parse_numkeys(args: list[bytes]) -> int | ErrorReply:
    """EVAL's ``numkeys``: an integer from 0 to the number of arguments after it."""
    numkeys = parse_int64(args[2])
    if numkeys is None:
        return NOT_INTEGER
    if numkeys > len(args) - 3:
        return ErrorReply("ERR Number of keys can't be greater than number of args")
    if numkeys < 0:
        return ErrorReply("ERR Number of keys can't be negative")
    return numkeys
