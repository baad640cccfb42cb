"""Heartbeats go ahead of a large AppendEntries while it is being encoded (issue 12 item 2):
the encode of an 8 MiB append took up to 205 ms per peer on the loaded machine, and a
follower that heard nothing from its leader meanwhile started an election."""

from __future__ import annotations

import threading

import pytest
import trio
from test_transport import LIMITS, mesh

from raftkv.node import transport
from raftkv.node.transport import heartbeat_ahead_of
from wire.raft import AppendEntries, Entry

BIG = transport.OFF_LOOP_BYTES
APPEND = AppendEntries(3, 1, 2, 5, 2, (Entry(3, 6, 0, b"x" * BIG),), 4, 1)


def heartbeat(prev: int, term: int = 3, seq: int = 2) -> AppendEntries:
    return AppendEntries(term, 1, 2, prev, 3, (), 5, seq)


def test_a_heartbeat_past_the_large_append_points_at_its_prev_index() -> None:
    ahead = heartbeat_ahead_of(APPEND, heartbeat(6))
    assert ahead == AppendEntries(3, 1, 2, 5, 2, (), 5, 2)  # commit and seq kept


def test_a_heartbeat_that_needs_nothing_in_transit_goes_as_it_is() -> None:
    hb = heartbeat(4, seq=9)
    assert heartbeat_ahead_of(APPEND, hb) is hb


def test_only_heartbeats_of_the_same_leader_and_term_go_ahead() -> None:
    assert heartbeat_ahead_of(APPEND, heartbeat(6, term=4)) is None
    assert heartbeat_ahead_of(APPEND, APPEND) is None  # entries keep their order
    assert heartbeat_ahead_of(heartbeat(6), heartbeat(6)) is None  # no large append ahead


async def test_heartbeats_overtake_a_large_append_being_encoded(
        nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_encode = transport.encode_pieces

    def encode(msg):  # type: ignore[no-untyped-def]
        if getattr(msg, "entries", None):
            assert release.wait(10), "the heartbeat never went ahead"
        return real_encode(msg)

    monkeypatch.setattr(transport, "encode_pieces", encode)
    with trio.fail_after(20):
        a, b = await mesh(nursery, 2, limits=LIMITS)
        assert a.t.send(APPEND)
        assert a.t.send(heartbeat(6))
        first = await b.inbox.receive()  # while the append is still being encoded
        release.set()
        rest = [await b.inbox.receive() for _ in range(3)]
    assert first == heartbeat_ahead_of(APPEND, heartbeat(6))
    # One more right before the append (so the follower's timer restarts as it arrives),
    # then the originals in their order.
    assert rest == [AppendEntries(3, 1, 2, 5, 2, (), 4, 1), APPEND, heartbeat(6)]
