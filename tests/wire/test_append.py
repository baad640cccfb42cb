"""wire.append: AppendEntries packed with their entries shared between messages that
hold the same Entry objects, in exactly ``wire.record.encode``'s bytes."""

from __future__ import annotations

import attrs
import pytest

from wire.append import AppendEncoder
from wire.raft import AppendEntries, Entry
from wire.record import MAX_INT, decode, encode


def entries(n: int, term: int = 3, size: int = 20) -> tuple[Entry, ...]:
    return tuple(Entry(term, 100 + i, i % 3, bytes([i % 256]) * size) for i in range(n))


def to(dst: int, ents: tuple[Entry, ...], **fields: int) -> AppendEntries:
    msg = AppendEntries(term=7, src=1, dst=dst, prev_index=99, prev_term=3, entries=ents,
                        commit=90, seq=5)
    return attrs.evolve(msg, **fields)


@pytest.mark.parametrize("n", [0, 1, 2, 8, 15, 16, 17, 300])
def test_the_bytes_are_encodes(n: int) -> None:
    enc = AppendEncoder()
    ents = entries(n)
    for msg in (to(2, ents), to(3, ents, commit=0, seq=MAX_INT),
                to(4, ents, term=MAX_INT, prev_index=2**32, prev_term=2**16)):
        assert enc.encode(msg) == encode(msg)
        assert decode(enc.encode(msg)) == msg


def test_the_same_entry_objects_are_packed_once() -> None:
    enc = AppendEncoder()
    ents = entries(20)
    first, second = to(2, ents), to(3, ents[:], commit=95, seq=6)
    assert enc.encode(first) == encode(first)
    assert enc.encode(second) == encode(second)
    assert (enc.misses, enc.hits) == (1, 1)


def test_equal_but_other_entries_are_packed_afresh() -> None:
    """Identity, not equality or Raft's index/term: nothing is assumed of the caller."""
    enc = AppendEncoder()
    ents = entries(20)
    enc.encode(to(2, ents))
    other_middle = (ents[0], *entries(19, term=4)[1:], ents[-1])
    assert len(other_middle) == 20 and other_middle[-1] is ents[-1]
    msg = to(3, other_middle)
    assert enc.encode(msg) == encode(msg)
    copies = tuple(attrs.evolve(e) for e in ents)
    assert enc.encode(to(3, copies)) == encode(to(3, copies))
    assert (enc.misses, enc.hits) == (3, 0)


def test_only_the_last_few_packings_are_kept() -> None:
    enc = AppendEncoder(keep=2)
    runs = [entries(10, term=t) for t in range(5)]
    for ents in runs:
        enc.encode(to(2, ents))
    assert len(enc._packed) == 2
    enc.encode(to(3, runs[0]))  # evicted: packed again
    enc.encode(to(3, runs[4]))  # kept
    assert (enc.misses, enc.hits) == (6, 1)


@pytest.mark.parametrize("bad", [
    {"term": -1}, {"commit": MAX_INT + 1}, {"seq": True}, {"prev_term": 2.0},
])
def test_a_bad_field_raises_as_encode_does(bad: dict[str, object]) -> None:
    msg = to(2, entries(10), **bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)) as expected:
        encode(msg)
    with pytest.raises(expected.type):
        AppendEncoder().encode(msg)


def test_a_bad_entry_raises_as_encode_does() -> None:
    for bad in (Entry(3, -1, 1, b"x"), Entry(3, 1, 1, "x"), "not an entry"):  # type: ignore[arg-type]
        msg = to(2, (*entries(10), bad))  # type: ignore[arg-type]
        with pytest.raises((TypeError, ValueError)) as expected:
            encode(msg)
        with pytest.raises(expected.type):
            AppendEncoder().encode(msg)
