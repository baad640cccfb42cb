"""The reply values the state machine and the servers produce, independent of RESP version.

Plain Python values stand for the common cases: ``bytes`` is a bulk string, ``None`` a null,
``int`` an integer, ``list`` an array, ``dict`` a map, ``set``/``frozenset`` a set, ``float``
a double and ``bool`` a boolean (RESP2 renders the last four as arrays, bulk strings and
integers, as Redis does). Wrappers mark what plain values cannot say: a status, an error,
a RESP3 push (Pub/Sub messages), and several replies answering one command (SUBSCRIBE a b
answers one confirmation per channel).
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


@attrs.frozen
class Push:
    """An out-of-band message (``>`` in RESP3; a plain array in RESP2, as Redis sends
    Pub/Sub messages to RESP2 clients)."""

    items: tuple[object, ...]


@attrs.frozen
class Replies:
    """Several top-level replies to one command, sent one after another."""

    items: tuple[object, ...]


OK = SimpleString("OK")
