"""Redis's number parsing, byte for byte: which argument strings count as integers or cursors.

``parse_int64`` is Redis's ``string2ll`` (no sign but ``-``, no spaces, no leading zeros, no
``-0``, signed 64-bit range), the one ``wire.resp`` parses headers with; values stored by
INCR are exactly the strings it accepts back.
``parse_cursor`` is SCAN's ``strtoul``-based cursor parsing, quirks included.
"""

from __future__ import annotations

import decimal
import re

from wire.resp import string2ll as parse_int64

__all__ = [
    "INT64_MAX", "INT64_MIN", "UINT64_MAX", "add_long_double", "format_long_double",
    "parse_cursor", "parse_int64", "parse_long_double",
]

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


# -- INCRBYFLOAT: Redis computes in C long double (x87, 64-bit mantissa, ~19 digits) --------

# strtold's decimal syntax (hex floats aside); Redis rejects leading space and NUL bytes.
_FLOAT_RE = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INF_RE = re.compile(rb"[+-]?inf(?:inity)?\Z", re.IGNORECASE)
# Long double's largest finite exponent is 4932 (decimal); past it strtold says ERANGE.
_MAX_EXP10 = 4931
_LONG_DOUBLE = decimal.Context(prec=19, Emax=_MAX_EXP10, Emin=-4950, traps=[])
MAX_FLOAT_ARG = 5 * 1024  # Redis's MAX_LONG_DOUBLE_CHARS


def parse_long_double(raw: bytes) -> decimal.Decimal | None:
    """A float argument as Redis's ``string2ld`` accepts it (infinity included), or None.

    Held as a 19-digit Decimal, which rounds like long double closely enough that the sums
    users see (0.1 + 0.2 = 0.3, 10.5 + 0.1 = 10.6) print as Redis prints them.
    """
    if not raw or len(raw) > MAX_FLOAT_ARG:
        return None
    if _INF_RE.match(raw):
        return decimal.Decimal("-Infinity" if raw[:1] == b"-" else "Infinity")
    if not _FLOAT_RE.match(raw):
        return None
    value = _LONG_DOUBLE.create_decimal(raw.decode("ascii"))
    if not value.is_finite() or (value and value.adjusted() > _MAX_EXP10):
        return None
    return value


def add_long_double(a: decimal.Decimal, b: decimal.Decimal) -> decimal.Decimal | None:
    """``a + b`` in long-double-like precision, or None if the result is NaN or infinite."""
    total = _LONG_DOUBLE.add(a, b)
    if not total.is_finite() or (total and total.adjusted() > _MAX_EXP10):
        return None
    return total


def format_long_double(value: decimal.Decimal) -> bytes:
    """Redis's ``ld2string(.., LD_STR_HUMAN)``: ``%.17Lf``, trailing zeros and point cut."""
    text = format(value.quantize(decimal.Decimal(1).scaleb(-17), context=_WIDE), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.encode()


_WIDE = decimal.Context(prec=6000, Emax=_MAX_EXP10 + 20, Emin=-6000, traps=[])
