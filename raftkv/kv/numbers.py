"""Redis's number parsing, byte for byte: which argument strings count as integers or cursors.

``parse_int64`` is Redis's ``string2ll`` (no sign but ``-``, no spaces, no leading zeros, no
``-0``, signed 64-bit range), the one ``wire.resp`` parses headers with; values stored by
INCR are exactly the strings it accepts back.
``parse_cursor`` is SCAN's ``strtoul``-based cursor parsing, quirks included.
"""

from __future__ import annotations

from wire.resp import string2ll as parse_int64

__all__ = ["INT64_MAX", "INT64_MIN", "UINT64_MAX", "parse_cursor", "parse_int64"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

_C_SPACE = frozenset(b" \t\n\v\f\r")


def parse_cursor(raw: bytes) -> int | None:
    """A SCAN cursor (0 .. 2**64-1) as Redis 7 reads it with ``strtoul``, or None if invalid.

    Redis accepts what ``strtoul`` accepts when it consumes the whole C string: a leading
    ``+`` or ``-`` (``-1`` wraps to 2**64-1), leading zeros, and the empty string (0); it
    rejects leading white space and values past 2**64-1. The C string ends at a NUL byte.
    """
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    if not raw:
        return 0
    if raw[0] in _C_SPACE:
        return None
    sign = raw[0]
    digits = raw[1:] if sign in (0x2B, 0x2D) else raw  # '+' / '-'
    if not digits.isdigit():
        return None
    value = int(digits)
    if value > UINT64_MAX:
        return None
    return (-value) % 2**64 if sign == 0x2D else value
