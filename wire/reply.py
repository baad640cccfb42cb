"""The reply values the state machine and the servers produce, independent of RESP version.

Plain Python values stand for the common cases: ``bytes`` is a bulk string, ``None`` a null,
``int`` an integer, ``list`` an array, ``dict`` a map, ``set``/``frozenset`` a set, ``float``
a double and ``bool`` a boolean (RESP2 renders the last four as arrays, bulk strings and
integers, as Redis does). Two wrappers mark what plain values cannot say.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class SimpleString:
    """A status reply such as ``+OK``; must not contain CR or LF."""

    text: str


@attrs.frozen
class ErrorReply:
    """An error reply; ``text`` starts with the error code, e.g. ``ERR syntax error``."""

    text: str


OK = SimpleString("OK")
