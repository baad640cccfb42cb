"""The transport's receive-side signals for the consensus core: a peer's frame still
arriving or being decoded (``on_activity``, fed to RaftCore.leader_activity: issue 12) and a
peer whose process is gone (``on_peer_gone``, fed to RaftCore.leader_unreachable: failover
after a kill -9 without waiting out the election timeout). Bounded by ``trio.fail_after``;
waits are on events and transport state, never sleeps."""

from __future__ import annotations

import threading

import pytest
import trio
from test_transport import Note, RawPeer, start

from chaos.cluster import free_ports
from raftkv.node import transport
from wire.frames import encode_frame
from wire.record import encode


class Calls:
    """Peer ids a callback was called with, and an event per expected count."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self._waiters: list[tuple[int, trio.Event]] = []

    def __call__(self, peer: int) -> None:
        self.ids.append(peer)
        for n, ev in self._waiters:
            if len(self.ids) >= n:
                ev.set()

    async def wait(self, n: int = 1) -> None:
        ev = trio.Event()
        self._waiters.append((n, ev))
        if len(self.ids) >= n:
            ev.set()
        await ev.wait()


async def test_bytes_of_an_incomplete_frame_count_as_the_peers_activity(nursery) -> None:
    activity = Calls()
    with trio.fail_after(10):
        b = await start(nursery, 2, {1: f"127.0.0.1:{free_ports(1)[0]}"}, on_activity=activity)
        raw = await RawPeer.connect(b.port)
        await raw.hello(1)
        frame = encode_frame(encode(Note(1, 2, 7, b"x" * 200_000)))
        await raw.stream.send_all(frame[: len(frame) // 2])
        await activity.wait()  # half a frame: nothing to deliver, but the peer is talking
        assert set(activity.ids) == {1}
        with pytest.raises(trio.WouldBlock):
            b.inbox.receive_nowait()
        await raw.stream.send_all(frame[len(frame) // 2 :])
        note = await b.inbox.receive()
    assert (note.seq, len(note.data)) == (7, 200_000)


async def test_a_large_frame_being_decoded_counts_as_activity_all_along(
        nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    activity = Calls()
    decoding, release = threading.Event(), threading.Event()
    real = transport._decode

    def slow_decode(frame: bytes) -> object:
        msg = real(frame)
        if isinstance(msg, Note) and msg.data:
            decoding.set()
            assert release.wait(10)  # held until the loop has reported activity a few times
        return msg

    monkeypatch.setattr(transport, "_decode", slow_decode)
    with trio.fail_after(15):
        b = await start(nursery, 2, {1: f"127.0.0.1:{free_ports(1)[0]}"}, on_activity=activity)
        raw = await RawPeer.connect(b.port)
        await raw.hello(1)
        await raw.stream.send_all(encode_frame(encode(
            Note(1, 2, 1, b"y" * transport.OFF_LOOP_BYTES))))
        assert await trio.to_thread.run_sync(decoding.wait, 10)
        seen = len(activity.ids)  # the frame is all here: from now on only the decode
        await activity.wait(seen + 3)  # repeated while the worker thread is still decoding
        with pytest.raises(trio.WouldBlock):
            b.inbox.receive_nowait()
        release.set()
        note = await b.inbox.receive()
    assert note.seq == 1 and set(activity.ids) == {1}


async def test_a_peer_whose_connections_close_and_whose_port_refuses_is_gone(nursery) -> None:
    gone = Calls()
    with trio.fail_after(10):
        a = await start(nursery, 1, on_peer_gone=gone)
        b = await start(nursery, 2, {1: a.addr})
        a.t.update_peers({2: b.addr})
        await a.t.wait_until(lambda: a.t.stats()[2].connected and a.t.stats()[2].inbound)
        assert gone.ids == []
        await b.stop()  # as a kill -9: its connections close and its port refuses
        await gone.wait()
    assert set(gone.ids) == {2}


async def test_a_refused_dial_is_not_enough_while_the_peer_still_talks_to_us(nursery) -> None:
    # The peer reaches us but we cannot reach it (issue 20: a container with a new
    # address): its inbound connection is proof of life, whatever our dials say.
    gone = Calls()
    with trio.fail_after(10):
        a = await start(nursery, 1, {2: f"127.0.0.1:{free_ports(1)[0]}"}, on_peer_gone=gone)
        raw = await RawPeer.connect(a.port)
        await raw.hello(2)
        await a.t.wait_until(lambda: a.t.stats()[2].inbound)
        # (Before it connected, nothing spoke for peer 2: a refusal then may have counted.)
        calls, failures = len(gone.ids), a.t.stats()[2].dial_failures
        await a.t.wait_until(lambda: a.t.stats()[2].dial_failures >= failures + 2)
        assert len(gone.ids) == calls  # refused twice more, but it talks to us: not gone
        await raw.stream.aclose()
        await gone.wait(calls + 1)
    assert set(gone.ids) == {2}
