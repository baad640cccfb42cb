"""``encode_pieces`` / ``encode_frame_pieces``: a record sent in pieces, its big bytes values
by reference (issue 12), is exactly today's encoding once the pieces are joined, and the
receiver's FrameDecoder and ``decode`` take it back whatever the read boundaries."""

from __future__ import annotations

import types
import typing
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire.hello
import wire.raft  # noqa: F401
from wire.frames import FrameDecoder, encode_frame, frame_header
from wire.raft import AppendEntries, Entry
from wire.record import (
    BIG_BYTES,
    REGISTRY,
    decode,
    encode,
    encode_frame_pieces,
    encode_pieces,
)

MAX = 2**64 - 1


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a wire annotation (as wire.record supports them)."""
    if tp is int:
        return st.one_of(st.integers(0, 300), st.integers(0, MAX))
    if tp is bool:
        return st.booleans()
    if tp is bytes:
        # Sizes either side of every msgpack bin header (bin8 / bin16 / bin32 cut-offs are
        # exercised with a tiny ``big``; the real 64 KiB threshold in its own test below).
        return st.binary(max_size=40)
    if tp is str:
        return st.text(max_size=12)
    if tp is float:
        return st.floats(allow_nan=False)
    if isinstance(tp, type) and tp in REGISTRY.values():
        return records(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = (a for a in args if a is not type(None))
        return st.none() | _strategy(inner)
    if origin is tuple:
        return st.lists(_strategy(args[0]), max_size=5).map(tuple)
    raise TypeError(f"no strategy for {tp!r}")


def records(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, *(_strategy(hints[a.name]) for a in attrs.fields(cls)))


# The project's own records (other test modules register records with validators too).
OURS = sorted((c for c in REGISTRY.values() if c.__module__ in ("wire.raft", "wire.hello")),
              key=lambda c: c.__name__)
ANY_RECORD = st.sampled_from(OURS).flatmap(records)


@settings(max_examples=150, deadline=None)
@given(obj=ANY_RECORD, big=st.integers(1, 48))
def test_pieces_join_to_the_encoding_of_any_record(obj: Any, big: int) -> None:
    pieces = encode_pieces(obj, big)
    assert b"".join(pieces) == encode(obj)
    assert all(type(p) is bytes and p for p in pieces)


@settings(max_examples=150, deadline=None)
@given(obj=ANY_RECORD, big=st.integers(1, 48), cut=st.integers(1, 64))
def test_the_frame_in_pieces_is_todays_frame_and_decodes(obj: Any, big: int, cut: int) -> None:
    pieces = encode_frame_pieces(obj, 1 << 20, big)
    stream = b"".join(pieces)
    assert stream == encode_frame(encode(obj))
    decoder = FrameDecoder()
    got = [f for i in range(0, len(stream), cut) for f in decoder.feed(stream[i:i + cut])]
    assert [decode(f) for f in got] == [obj]


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=6), big=st.integers(1, 48))
def test_big_values_are_the_callers_objects_not_copies(sizes: list[int], big: int) -> None:
    entries = tuple(Entry(3, 7 + i, 0, bytes([i]) * n) for i, n in enumerate(sizes))
    msg = AppendEntries(3, 1, 2, 6, 3, entries, 6)
    pieces = encode_pieces(msg, big)
    by_ref = [e.data for e in entries if len(e.data) >= big]
    assert [p for p in pieces if any(p is d for d in by_ref)] == by_ref
    # ... and everything else is small: one piece before, between and after them.
    assert len(pieces) == 2 * len(by_ref) + 1


@pytest.mark.parametrize(("size", "big"), [
    (BIG_BYTES - 1, BIG_BYTES), (BIG_BYTES, BIG_BYTES), (3 << 20, BIG_BYTES),  # bin32
    (255, 200), (256, 200), (0xFFFF, 200), (0x10000, 200),  # bin8 / bin16 / bin32 edges
])
def test_an_entry_across_the_threshold_and_bin_header_sizes(size: int, big: int) -> None:
    data = b"\xab" * size
    small = Entry(3, 8, 0, b"s" * 10)
    msg = AppendEntries(3, 1, 2, 6, 3, (Entry(3, 7, 0, data), small), 6, 9)
    pieces = encode_frame_pieces(msg, 16 << 20, big)
    assert b"".join(pieces) == encode_frame(encode(msg))
    assert any(p is data for p in pieces) == (size >= big)
    assert decode(FrameDecoder(16 << 20).feed(b"".join(pieces))[0]) == msg


def test_the_frame_limit_still_applies() -> None:
    msg = AppendEntries(3, 1, 2, 6, 3, (Entry(3, 7, 0, b"x" * BIG_BYTES),), 6)
    n = len(encode(msg))
    assert len(b"".join(encode_frame_pieces(msg, n))) == n + 4
    with pytest.raises(ValueError, match="exceeds max_frame_size"):
        encode_frame_pieces(msg, n - 1)
    with pytest.raises(ValueError, match="empty"):
        frame_header(0)


def test_encode_errors_are_raised_as_by_encode() -> None:
    with pytest.raises(TypeError):
        encode_pieces(AppendEntries(3, 1, 2, 6, 3, (Entry(3, 7, 0, "text"),), 6))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_pieces(AppendEntries(-1, 1, 2, 6, 3, (), 6))
