"""A node's own snapshot is encoded in pieces as it is written (``snapshots.EncodedPieces``):
the same bytes as ``encode_snapshot``, never held whole (README "Performance", memory row)."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_snapshot
from raftkv.node.snapshots import SNAPSHOT_PIECE, EncodedPieces


def test_the_pieces_are_the_snapshot_and_each_but_the_last_is_full() -> None:
    kv = KVStateMachine()
    for n in range(1, 30_001):  # values, versions and the feed: about 3 pieces' worth
        kv.apply(encode_entry([b"SET", b"key:%d" % n, b"v" * 40, b"EX", b"100"], n), index=n)
    state = kv.snapshot_state()
    encoded = EncodedPieces(state)
    pieces = list(encoded)
    assert len(pieces) >= 3
    assert all(len(p) >= SNAPSHOT_PIECE for p in pieces[:-1])
    assert max(map(len, pieces)) < SNAPSHOT_PIECE + 64 * 1024  # a run of items past it
    assert b"".join(pieces) == encode_snapshot(state) == kv.snapshot()
    assert encoded.size == sum(map(len, pieces))
