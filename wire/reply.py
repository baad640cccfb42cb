"""The reply values the state machine and the servers produce, independent of RESP version.

Plain Python values stand for the common cases: ``bytes`` is a bulk string, ``None`` a null,
``int`` an integer, ``list`` an array, ``dict`` a map, ``set``/``frozenset`` a set, ``float``
a double and ``bool`` a boolean (RESP2 renders the last four as arrays, bulk strings and
integers, as Redis does). Wrappers mark what plain values cannot say: a status, an error,
a RESP3 push (Pub/Sub messages), and several replies answering one command (SUBSCRIBE a b
answers one confirmation per channel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
class Encoded:
    """A reply already encoded as RESP for the connection it goes to, sent as it is: one
    encoding shared by many clients waiting for the same bytes (the change feed's XREAD,
    raftkv.server.streams), and built in slices by its producer, not at send time. A whole
    reply only (not an element of an array)."""

    data: bytes


class Streamed:
    """A whole reply encoded piece by piece as it is sent: ``pieces()`` yields its RESP
    bytes (the same in RESP2 and RESP3), ``size`` is what it weighs in the output buffer
    meanwhile. A large read of the change feed is encoded only as fast as its client reads
    it: a client that does not read holds the references the reply is made from, never
    the reply itself (raftkv.server.streams). A whole reply only, sent once."""

    __slots__ = ("_pieces", "size")

    def __init__(self, size: int, pieces: Callable[[], Iterator[bytes]]) -> None:
        self.size = size
        self._pieces = pieces

    def pieces(self) -> Iterator[bytes]:
        return self._pieces()


@attrs.frozen
class Replies:
    """Several top-level replies to one command, sent one after another."""

    items: tuple[object, ...]


OK = SimpleString("OK")
