"""raftkv.node.plain_stream: trio's stream contract (data, EOF, errors, cancellation) with a
yield only every YIELD_EVERY calls that did not have to wait."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from raftkv.node import plain_stream
from raftkv.node.plain_stream import PlainStream


def pair() -> tuple[PlainStream, PlainStream]:
    a, b = socket.socketpair()
    return PlainStream(a), PlainStream(b)


async def test_bytes_arrive_in_order_both_ways_and_eof_is_empty() -> None:
    a, b = pair()
    big = bytes(range(256)) * 40_000  # 10 MB: more than the socket buffers, so sends wait
    got = bytearray()

    async def drain() -> None:
        while data := await b.receive_some():
            got.extend(data)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await a.send_all(big)
            await a.send_eof()
    assert bytes(got) == big
    await b.send_all(b"back")
    assert await a.receive_some(10) == b"back"
    for s in (a, b):
        await s.aclose()


async def test_adopt_takes_a_trio_socket_stream_over() -> None:
    x, y = socket.socketpair()
    tcp = trio.SocketStream(trio.socket.from_stdlib_socket(x))
    a = PlainStream.adopt(tcp)
    await tcp.aclose()  # detached: closing it does not close the adopted socket
    b = PlainStream(y)
    await a.send_all(b"hi")
    assert await b.receive_some() == b"hi"
    await a.aclose()
    await b.aclose()


async def test_close_wakes_a_waiting_receiver_and_later_calls_fail() -> None:
    a, b = pair()
    errors: list[BaseException] = []

    async def receive() -> None:
        try:
            await a.receive_some()
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()
    assert len(errors) == 1
    with pytest.raises(trio.ClosedResourceError):
        await a.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_some()
    await b.aclose()


async def test_a_reset_connection_is_a_broken_resource() -> None:
    a, b = pair()
    await b.aclose()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(100):  # the first write may still be accepted
            await a.send_all(b"x" * 65536)
    await a.aclose()


async def test_two_receivers_at_once_is_busy() -> None:
    a, b = pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await a.receive_some()
        nursery.cancel_scope.cancel()
    await a.aclose()
    await b.aclose()


async def test_a_cancelled_scope_cancels_even_when_data_is_there() -> None:
    a, b = pair()
    await b.send_all(b"ready")
    with trio.CancelScope() as scope:
        scope.cancel()
        await a.receive_some()
    assert scope.cancelled_caught
    assert await a.receive_some() == b"ready"  # nothing was consumed
    await a.aclose()
    await b.aclose()


async def test_calls_that_need_not_wait_yield_only_every_yield_every() -> None:
    """The point of the stream: no scheduler pass per call when the socket is ready; but a
    peer that keeps it ready still lets other tasks run."""
    a, b = pair()
    ran = 0

    async def other() -> None:
        nonlocal ran
        while True:
            ran += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()  # it runs once per pass through the scheduler
        start = ran
        calls = 4 * plain_stream.YIELD_EVERY
        for _ in range(calls):
            await a.send_all(b"x")
        assert 1 <= ran - start <= calls // plain_stream.YIELD_EVERY + 1
        nursery.cancel_scope.cancel()
    await a.aclose()
    await b.aclose()


class CountingSocket(socket.socket):
    """A socket that counts its recv calls."""

    recvs = 0

    def recv(self, *args):  # type: ignore[no-untyped-def, override]
        self.recvs += 1
        return super().recv(*args)


async def test_after_a_read_that_drained_the_socket_the_next_waits_before_recv() -> None:
    x, y = socket.socketpair()
    sock = CountingSocket(fileno=x.detach())
    a, b = PlainStream(sock), PlainStream(y)
    await b.send_all(b"short")
    assert await a.receive_some(100) == b"short"  # less than asked for: drained
    assert sock.recvs == 1
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append(got, a))
        await trio.testing.wait_all_tasks_blocked()
        assert sock.recvs == 1  # waiting for readiness, no recv that would fail (EAGAIN)
        await b.send_all(b"next")
    assert got == [b"next"] and sock.recvs == 2
    await a.aclose()
    await b.aclose()


async def _append(got: list[bytes], stream: PlainStream) -> None:
    got.append(await stream.receive_some(100))
