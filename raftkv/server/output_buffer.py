"""What a reply weighs in a client's output buffer (Redis's client-output-buffer-limit).

A reply that is ready but not yet sent sits in the connection's output buffer; the port
adds ``reply_size`` when it is ready and subtracts it once written, and disconnects a
client whose buffer passes the limit (a client that pipelines and never reads). Large
arrays are estimated from a sample, so weighing a reply never costs the event loop more
than a few thousand steps.
"""

from __future__ import annotations

from typing import Any

from wire.reply import Encoded, Push, Replies, Streamed

_SAMPLE = 256
_SMALL = 16  # an integer, null, status or the framing of a value


def reply_size(value: Any) -> int:
    """Approximate encoded size of ``value`` in bytes (exact for bytes, sampled arrays)."""
    t = type(value)
    if t is bytes or t is str:
        return len(value) + _SMALL
    if t is list or t is tuple or t is set or t is frozenset or t is dict:
        n = len(value)
        if t is dict:
            items: Any = value.items()
            weigh = _pair_size
        else:
            items = value
            weigh = reply_size
        if n <= _SAMPLE:
            return _SMALL + sum(weigh(item) for item in items)
        sample = 0
        for i, item in enumerate(items):
            if i == _SAMPLE:
                break
            sample += weigh(item)
        return _SMALL + sample * n // _SAMPLE
    if t is Push or t is Replies:  # Pub/Sub's messages and confirmations
        return reply_size(value.items)
    if t is Encoded:  # (shared by the clients it goes to; each is weighed for it)
        return len(value.data)
    if t is Streamed:  # (encoded as it is sent: weighed at what it will send)
        return value.size
    return _SMALL


def _pair_size(pair: tuple[Any, Any]) -> int:
    return reply_size(pair[0]) + reply_size(pair[1])
