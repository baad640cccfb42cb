"""How the transport packs a peer message: a small one whole (``encode``, one piece), a
big one in pieces that pass its big value by reference (``encode_pieces``); the bytes on
the wire are the same either way."""

from __future__ import annotations

import pytest

from raftkv.node import transport
from raftkv.node.transport import PeerTransport
from wire.frames import encode_frame
from wire.raft import AppendEntries, Entry
from wire.record import BIG_BYTES, encode


def make() -> PeerTransport:
    return PeerTransport(node_id=1, cluster_id="c", listen=("127.0.0.1", 0),
                         advertise_peer_addr="127.0.0.1:1", client_addr="127.0.0.1:2",
                         peers={2: "127.0.0.1:3"}, inbound=lambda msg: None)


def append(*sizes: int) -> AppendEntries:
    entries = tuple(Entry(3, 10 + i, 1, bytes([i]) * n) for i, n in enumerate(sizes))
    return AppendEntries(3, 1, 2, 9, 3, entries, 9, 4)


def test_a_small_message_is_packed_whole_without_the_walk_for_big_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    t = make()

    def walked(msg: object) -> list[bytes]:
        raise AssertionError("encode_pieces walked a small message")

    monkeypatch.setattr(transport, "encode_pieces", walked)
    for msg in (append(), append(40), append(*[40] * 30), append(BIG_BYTES - 1)):
        pieces = t._encode(t._links[2], msg)
        assert pieces is not None
        assert b"".join(pieces) == encode_frame(encode(msg))


def test_a_big_value_still_goes_by_reference_in_the_same_bytes() -> None:
    t = make()
    msg = append(40, BIG_BYTES, 7)
    pieces = t._encode(t._links[2], msg)
    assert pieces is not None
    assert any(p is msg.entries[1].data for p in pieces)
    assert b"".join(pieces) == encode_frame(encode(msg))


def test_the_same_entries_to_two_followers_are_packed_once() -> None:
    t = make()
    t.update_peers({2: "127.0.0.1:3", 3: "127.0.0.1:4"})
    ents = append(*[40] * transport.SHARE_ENTRIES).entries
    msgs = [AppendEntries(3, 1, dst, 9, 3, ents, 9, 4) for dst in (2, 3)]
    for msg in msgs:
        pieces = t._encode(t._links[msg.dst], msg)
        assert pieces is not None and b"".join(pieces) == encode_frame(encode(msg))
    assert (t._appends.misses, t._appends.hits) == (1, 1)
