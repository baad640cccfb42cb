"""raftkv.kv.scan: the hash-ordered index behind SCAN, driven directly with forced hash ties."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv.scan import ScanOrder, key_hash


class Store:
    """A dict plus its ScanOrder, kept in step the way KVStateMachine does it."""

    def __init__(self, keys, hash_key=key_hash) -> None:
        self.data = dict.fromkeys(keys, b"v")
        self.order = ScanOrder(self.data, hash_key)

    def put(self, key: bytes) -> None:
        if key not in self.data:
            self.order.added(key)
        self.data[key] = b"v"

    def delete(self, key: bytes) -> None:
        if self.data.pop(key, None) is not None:
            self.order.removed()

    def scan(self, count: int, between=lambda: None) -> list[bytes]:
        cursor, seen = 0, []
        while True:
            cursor, keys = self.order.batch(self.data, cursor, count)
            seen += keys
            if cursor == 0:
                return seen
            between()


def first_byte(key: bytes) -> int:
    """A terrible hash: keys that share a first byte tie."""
    return key[0] if key else 0


def test_key_hash_is_fixed() -> None:
    # The order must be the same on every node, run and version (no salted hash()): a
    # cursor from one node continues on another. Pinned: BLAKE2b-64, big-endian.
    assert key_hash(b"") == 0xE4A6A0577479B2B4
    assert key_hash(b"user:1") == 0xD47B7ADDA40C1A12


def test_a_batch_never_splits_keys_with_equal_hashes() -> None:
    keys = [bytes([c]) + str(i).encode() for c in b"abc" for i in range(5)]
    store = Store(keys, first_byte)
    cursor, batch = store.order.batch(store.data, 0, 1)
    assert sorted(batch) == sorted(k for k in keys if k[:1] == b"a")  # all five "a" keys
    assert cursor == ord("b")
    assert sorted(store.scan(1)) == sorted(keys)


def test_ties_survive_churn_between_batches() -> None:
    rng = random.Random(7)
    stable = [bytes([c]) + b"s" + str(i).encode() for c in b"abcdef" for i in range(4)]
    store = Store(stable, first_byte)

    def churn() -> None:
        for _ in range(3):
            key = bytes([rng.choice(b"abcdef")]) + b"c" + str(rng.randrange(20)).encode()
            store.put(key) if rng.random() < 0.6 else store.delete(key)

    seen = store.scan(2, churn)
    assert sorted(k for k in seen if b"s" in k[1:2]) == sorted(stable)


def test_bulk_inserts_and_deletes_between_batches() -> None:
    # More than the per-key insertion limit arrives at once (the merge path), and most keys
    # are then deleted (the compaction path); stable keys still come back exactly once.
    stable = [b"stable:%d" % i for i in range(50)]
    store = Store(stable)
    round_ = [0]

    def churn() -> None:
        round_[0] += 1
        for i in range(600):
            store.put(b"bulk:%d:%d" % (round_[0], i))
        for i in range(600):
            store.delete(b"bulk:%d:%d" % (round_[0] - 1, i))

    seen = store.scan(4, churn)
    assert sorted(k for k in seen if k.startswith(b"stable:")) == sorted(stable)
    assert len(store.order._entries) < 3 * 600 + len(stable)  # stale entries were compacted


@pytest.mark.parametrize("readded", [1, 300])  # one insertion, or the merge path
def test_keys_deleted_and_added_again_appear_once(readded: int) -> None:
    keys = [b"k%d" % i for i in range(400)]
    store = Store(keys)
    store.order.batch(store.data, 0, 1)
    for key in keys[:readded]:
        store.delete(key)
        store.put(key)  # a stale entry and a pending re-add for the same key
    assert sorted(store.scan(7)) == sorted(keys)


@settings(max_examples=80, deadline=None)
@given(
    st.sets(st.binary(max_size=2), max_size=40),
    st.integers(1, 5),
    st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=2)), max_size=60),
)
def test_random_churn_with_ties(stable: set[bytes], count: int, ops) -> None:
    store = Store(stable, first_byte)
    ops = [(add, b"\xfe" + key[:1] + b"\xff" + key) for add, key in ops]  # never stable keys
    pos = [0]

    def churn() -> None:
        for add, key in ops[pos[0] : pos[0] + 4]:
            store.put(key) if add else store.delete(key)
        pos[0] += 4

    seen = store.scan(count, churn)
    assert sorted(k for k in seen if k in stable) == sorted(stable)
