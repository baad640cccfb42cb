"""wire.record's streaming decode of large peer frames: memory (tracemalloc), not time.

Only an authenticated peer may send a frame over 64 KiB, up to 16 MiB and more with big
values; decoded as one generic msgpack value, 16 MiB of one-byte entries peaked at 16.6
bytes of memory per input byte (the generic tuples beside the records built from them,
9.1), and a frame of nested arrays built them all before any check refused it. Decoded
in a stream against the schema, the peak is the records' own memory (a frame of one big
value costs a second copy of it meanwhile, in the unpacker's buffer: 2 bytes per byte
against 1)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack

from wire import ProtocolError
from wire.raft import AppendEntries, Entry
from wire.record import decode, encode


def traced(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """``fn()``'s result, the memory it still holds, and the peak while it ran."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        try:
            result: Any = fn()
        except ProtocolError as exc:
            result = exc
        kept, peak = tracemalloc.get_traced_memory()
        return result, kept - base, peak - base
    finally:
        tracemalloc.stop()


def test_a_large_frame_of_small_entries_costs_about_its_records_memory() -> None:
    msg = AppendEntries(1, 1, 2, 10, 1, tuple(Entry(1, 11 + i, 0, b"v") for i in range(80_000)), 10)
    frame = encode(msg)
    assert len(frame) > 512 * 1024  # streamed: over wire.record.STREAM_MIN
    decoded, kept, peak = traced(lambda: decode(frame))
    assert decoded == msg
    assert peak < 1.3 * kept  # generic: 1.8x, the tuples of the msgpack value beside


def test_a_large_frame_of_nested_arrays_is_refused_before_it_is_built() -> None:
    body = b"\x91\x90" * 500_000  # [[]] where an Entry belongs, 500,000 times
    # AppendEntries: [22, term, src, dst, prev_index, prev_term, entries, commit, seq]
    head = b"\x99" + b"".join(map(msgpack.packb, (22, 1, 1, 2, 10, 1)))
    frame = head + b"\xdd" + (500_000).to_bytes(4, "big") + body + b"\x0a\x00"
    error, _, peak = traced(lambda: decode(frame))
    assert isinstance(error, ProtocolError) and "entries[0]" in str(error)
    assert peak < len(frame) // 4  # generic: 28 bytes per input byte, 500,000 tuples
