"""encode_snapshot's memory: the peak stays a small multiple of the snapshot's size.

The encoder once kept one small ``bytes`` per key, value, modification index and feed
change until a final join: 13x the snapshot's size at the peak, in short-lived small
objects that fragmented the allocator's arenas, so every node's RSS stepped up at each
snapshot of a long overwrite run (tests/bench/bench_memory.py). tracemalloc counts Python's
allocations deterministically: no timing, no machine dependence.
"""

from __future__ import annotations

import tracemalloc

from raftkv.kv.codec import encode_entry
from raftkv.kv.machine import KVStateMachine
from raftkv.kv.state import decode_snapshot, encode_snapshot

T0 = 1_700_000_000_000


def test_encoding_peaks_at_a_few_times_the_snapshot_size() -> None:
    kv = KVStateMachine()
    for i in range(20_000):  # values, modification indexes and the change feed's tail
        kv.apply(encode_entry([b"SET", b"key:%012d" % i, b"xxx"], T0), index=i + 1)
    state = kv.snapshot_state()
    assert len(state.feed.changes) == 20_000  # type: ignore[union-attr]
    tracemalloc.start()
    try:
        blob = encode_snapshot(state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(blob), (peak, len(blob))
    assert decode_snapshot(blob).data == state.data


def test_decoding_builds_the_maps_without_a_second_copy_of_them() -> None:
    """decode_snapshot read each map as a list of (key, value) tuples, then built the
    dict: the peak was 1.6x the decoded state's own memory (9.3x the snapshot's bytes for
    short keys). Read in a stream, pairs go straight into the dicts."""
    kv = KVStateMachine()
    for start in range(0, 20_000, 5_000):
        pairs = [x for i in range(start, start + 5_000) for x in (b"key:%012d" % i, b"xxx")]
        kv.apply(encode_entry([b"MSET", *pairs], T0), index=start + 1)
    blob = encode_snapshot(kv.snapshot_state(with_feed=False))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        state = decode_snapshot(blob)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(state.data) == len(state.mods) == 20_000
    assert peak - base < 1.3 * (kept - base), (peak - base, kept - base)


def test_decoding_the_feed_builds_its_changes_without_a_list_of_them_first() -> None:
    """The feed's retained changes came as one msgpack value: a list of 6-item lists
    beside the ``Change`` tuples built from it (the peak was 1.45x the decoded state for
    a 20,000-change tail). Read change by change, the peak is the state itself."""
    kv = KVStateMachine()
    for i in range(20_000):  # overwrites: the tail dominates the state
        kv.apply(encode_entry([b"SET", b"key:%012d" % (i % 1000), b"xxx"], T0), index=i + 1)
    blob = encode_snapshot(kv.snapshot_state())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        state = decode_snapshot(blob)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state.feed is not None and len(state.feed.changes) == 20_000
    assert peak - base < 1.1 * (kept - base), (peak - base, kept - base)
