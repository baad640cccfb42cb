"""What a reply weighs in a client's output buffer (Redis's client-output-buffer-limit).

A reply that is ready but not yet sent sits in the connection's output buffer; the port
adds ``reply_size`` when it is ready and subtracts it once written, and disconnects a
client whose buffer passes the limit (a client that pipelines and never reads). Arrays
are weighed item by item: a sample let small first items hide large ones (attack18).
"""

from __future__ import annotations

from typing import Any

from wire.reply import OK, Encoded, ErrorReply, Push, Replies, SimpleString, Streamed

_SMALL = 16  # an integer, null, boolean or the framing of a value
_DOUBLE = 40  # a double: framing and up to 24 characters (``-1.2345678901234567e-308``)
_INT64 = 1 << 63


def reply_size(value: Any) -> int:
    """Approximate encoded size of ``value`` in bytes: exact for bytes and ASCII texts
    (status and error texts too: ``{ok=value}`` from a script is as large as the value),
    summed over the items of arrays, maps and sets. O(1) but for those and a non-ASCII
    text."""
    if value is OK:  # (every SET's reply: its weight without a call)
        return _OK_SIZE
    t = type(value)
    if t is bytes:
        return len(value) + _SMALL
    if value is None:
        return _SMALL
    if t is SimpleString or t is ErrorReply:
        return _text_size(value.text) + _SMALL
    if t is int:  # (past 64 bits: a RESP3 big number or a bulk string of its digits)
        return _SMALL if -_INT64 <= value < _INT64 else value.bit_length() // 3 + 2 * _SMALL
    if t is list or t is tuple or t is set or t is frozenset:
        return _SMALL + _items_size(value)
    if t is dict:
        return _SMALL + _items_size(value.keys()) + _items_size(value.values())
    if t is str:
        return _text_size(value) + _SMALL
    if t is float:
        return _DOUBLE
    if t is Push or t is Replies:  # Pub/Sub's messages and confirmations
        return reply_size(value.items)
    if t is Encoded:  # (shared by the clients it goes to; each is weighed for it)
        return len(value.data)
    if t is Streamed:  # (encoded as it is sent: weighed at what it will send)
        return value.size
    if t is bool:
        return _SMALL
    return _subclass_size(value)


_OK_SIZE = len(OK.text) + _SMALL  # (what the SimpleString line below gives it)


def _text_size(text: str) -> int:
    """Its UTF-8 length: exact for ASCII (``isascii`` is O(1)), else at most 4 a character."""
    return len(text) if text.isascii() else 4 * len(text)


def _subclass_size(value: Any) -> int:
    """Rare: subclasses of the plain types (IntEnum, bytearray, ...), weighed as the plain
    value ``wire.resp`` encodes them as."""
    if isinstance(value, bool):
        return _SMALL
    if isinstance(value, int):
        return reply_size(int(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return memoryview(value).nbytes + _SMALL
    if isinstance(value, str):
        return _text_size(value) + _SMALL
    if isinstance(value, float):
        return _DOUBLE
    if isinstance(value, dict):
        return _SMALL + _items_size(value.keys()) + _items_size(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return _SMALL + _items_size(value)
    return _SMALL


def _items_size(items: Any) -> int:
    """The items' weight (an array's, a set's, half a map's), item by item: exact, as a
    sample is not (attack18: 256 empty strings then 14 values of 4 MB weighed 4,336 bytes
    from the first 256). Linear, as building and encoding the reply are; a bytes item
    costs one check."""
    total = 0
    for item in items:
        total += len(item) + _SMALL if type(item) is bytes else reply_size(item)
    return total
