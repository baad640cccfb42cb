"""Large peer messages are encoded and decoded in worker threads, not on the event loop
(raftkv.node.transport.OFF_LOOP_BYTES): an 8 MiB AppendEntries took ~48 ms to encode on a
loaded 2-core machine, once per follower (issue 12). Order on the link is kept."""

from __future__ import annotations

import threading

import pytest
import trio
from test_transport import LIMITS, Note, mesh

from raftkv.node import transport

BIG = transport.OFF_LOOP_BYTES


def test_bulk_bytes_counts_what_a_message_carries_in_bulk() -> None:
    assert transport._bulk_bytes(Note(1, 2, 0, b"x" * 10)) == 10
    assert transport._bulk_bytes(Note(1, 2, 0)) == 0


async def test_large_messages_are_coded_off_the_loop_and_stay_in_order(
        nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = threading.current_thread()
    where: list[tuple[str, int, bool]] = []
    real_pieces, real_encode, real_decode = (transport.encode_pieces, transport.encode,
                                             transport.decode)

    def noted(msg) -> None:  # type: ignore[no-untyped-def]
        if isinstance(msg, Note):
            where.append(("encode", len(msg.data), threading.current_thread() is loop))

    def encode_pieces(msg):  # type: ignore[no-untyped-def]
        noted(msg)
        return real_pieces(msg)

    def encode(msg):  # type: ignore[no-untyped-def]  (a small message: packed whole)
        noted(msg)
        return real_encode(msg)

    def decode(frame, *args):  # type: ignore[no-untyped-def]
        msg = real_decode(frame, *args)
        if isinstance(msg, Note):
            where.append(("decode", len(msg.data), threading.current_thread() is loop))
        return msg

    monkeypatch.setattr(transport, "encode_pieces", encode_pieces)
    monkeypatch.setattr(transport, "encode", encode)
    monkeypatch.setattr(transport, "decode", decode)
    with trio.fail_after(20):
        a, b = await mesh(nursery, 2, limits=LIMITS)
        sizes = [0, BIG, 5, BIG + 7, 1]
        for seq, size in enumerate(sizes):
            assert a.t.send(Note(1, 2, seq, b"x" * size))
        got = [await b.inbox.receive() for _ in sizes]
    assert [(n.seq, len(n.data)) for n in got] == list(enumerate(sizes))
    for op in ("encode", "decode"):
        on_loop = {size: here for what, size, here in where if what == op}
        assert on_loop[BIG] is False and on_loop[BIG + 7] is False, where
        assert on_loop[0] is True and on_loop[5] is True, where
