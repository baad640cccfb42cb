"""Option parsing for commands whose arguments can be wrong regardless of the data.

Shared by the server-side pre-check (``commands.validate``, before a command is proposed)
and by the state machine itself (which must still reject anything malformed in the log).
Option words are compared like Redis's ``strcasecmp`` on C strings: case-insensitively, up
to the first NUL byte.
"""

from __future__ import annotations

import attrs

from wire.reply import ErrorReply

from .errors import DECR_OVERFLOW, NOT_INTEGER, SYNTAX_ERROR
from .numbers import INT64_MIN, parse_int64

SET_NX = 1
SET_XX = 2
SET_GET = 4


def option_word(arg: bytes) -> bytes:
    """An option argument as ``strcasecmp`` sees it: up to the first NUL, lower-cased."""
    nul = arg.find(b"\0")
    return (arg if nul < 0 else arg[:nul]).lower()


def parse_set_options(args: list[bytes]) -> int | ErrorReply:
    """The NX/XX/GET flags of ``SET key value [NX|XX] [GET]``.

    Expiry options (EX, PX, EXAT, PXAT, KEEPTTL) are a syntax error: this store has no
    expiry. NX together with XX is a syntax error, as in Redis; repeating one is allowed.
    """
    flags = 0
    for arg in args[3:]:
        word = option_word(arg)
        if word == b"nx" and not flags & SET_XX:
            flags |= SET_NX
        elif word == b"xx" and not flags & SET_NX:
            flags |= SET_XX
        elif word == b"get":
            flags |= SET_GET
        else:
            return SYNTAX_ERROR
    return flags


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
