"""raftkv.node.read_poller: client sockets registered once on one edge-triggered epoll; a
parked reader wakes on data, on close (ClosedResourceError) and on cancellation, an edge
seen while nobody waited is kept, and no registration outlives its socket."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from raftkv.node.plain_stream import PlainStream
from raftkv.node.read_poller import ReadPoller


def pair(poller: ReadPoller) -> tuple[PlainStream, PlainStream]:
    """``a`` reads through the poller; ``b`` is a plain peer."""
    x, y = socket.socketpair()
    return PlainStream(x, poller), PlainStream(y)


async def _receive(got: list[bytes | BaseException], stream: PlainStream) -> None:
    try:
        got.append(await stream.receive_some(100))
    except trio.ClosedResourceError as exc:
        got.append(exc)


async def test_a_parked_reader_waits_on_the_poller_and_wakes_in_the_next_pass() -> None:
    """Not on trio's epoll (no re-arm per wait), and woken in the first pass of trio's loop
    after its data arrived, as trio's own wait would (the poller's task, a pass later,
    made readers miss their proposal batch)."""
    poller = ReadPoller.current()
    a, b = pair(poller)
    assert a.fileno() in poller.registered
    passes = 0
    reader_ran_at: list[int] = []

    class Passes(trio.abc.Instrument):
        def before_io_wait(self, timeout: float) -> None:
            nonlocal passes
            passes += 1

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            if task.name == "reader":
                reader_ran_at.append(passes)

    got: list[bytes | BaseException] = []
    async with trio.open_nursery() as nursery:
        await trio.testing.wait_all_tasks_blocked()
        trio_readers = trio.lowlevel.current_statistics().io_statistics.tasks_waiting_read
        nursery.start_soon(_receive, got, a, name="reader")
        await trio.testing.wait_all_tasks_blocked()
        assert list(poller._parked) == [a.fileno()]
        assert (trio.lowlevel.current_statistics().io_statistics.tasks_waiting_read
                == trio_readers)  # the reader is not one of trio's
        instrument = Passes()
        trio.lowlevel.add_instrument(instrument)
        reader_ran_at.clear()
        sent_at = passes
        b.socket.send(b"hello")  # (no checkpoint between the send and the count)
    trio.lowlevel.remove_instrument(instrument)
    assert got == [b"hello"]
    assert reader_ran_at[0] == sent_at + 1


async def test_close_wakes_a_parked_reader_and_unregisters_before_the_fd_is_reused() -> None:
    poller = ReadPoller.current()
    a, b = pair(poller)
    fd = a.fileno()
    got: list[bytes | BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, got, a)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()
    assert len(got) == 1 and isinstance(got[0], trio.ClosedResourceError)
    assert fd not in poller.registered
    # The fd number is reused by the next socket: its data wakes its own reader only.
    c, d = pair(poller)
    assert c.fileno() == fd
    later: list[bytes | BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, later, c)
        await trio.testing.wait_all_tasks_blocked()
        await d.send_all(b"mine")
    assert later == [b"mine"] and len(got) == 1
    for s in (b, c, d):
        await s.aclose()
    assert poller.registered == frozenset()


async def test_a_socket_closed_behind_the_pollers_back_is_replaced_on_reuse() -> None:
    poller = ReadPoller.current()
    a, b = pair(poller)
    fd = a.fileno()
    a.socket.close()  # (not through aclose: the kernel drops it from the epoll)
    c, d = pair(poller)
    assert c.fileno() == fd and fd in poller.registered
    await d.send_all(b"ok")
    with trio.fail_after(5):
        assert await c.receive_some(100) == b"ok"
    for s in (b, c, d):
        await s.aclose()
    assert poller.registered == frozenset()


async def test_a_cancelled_wait_leaves_nothing_parked_and_the_next_read_works() -> None:
    poller = ReadPoller.current()
    a, b = pair(poller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.receive_some, 100)
        await trio.testing.wait_all_tasks_blocked()
        assert list(poller._parked) == [a.fileno()]
        nursery.cancel_scope.cancel()
    assert poller._parked == {}
    await b.send_all(b"after")
    with trio.fail_after(5):
        assert await a.receive_some(100) == b"after"
    await a.aclose()
    await b.aclose()


async def test_an_edge_seen_while_the_reader_was_busy_is_not_lost() -> None:
    """Edge-triggered: data that arrives while the reader does something else is reported
    once; after a read that drained the socket the next read must still get it."""
    poller = ReadPoller.current()
    a, b = pair(poller)
    await b.send_all(b"one")
    with trio.fail_after(5):
        assert await a.receive_some(100) == b"one"  # short: drained, next one waits first
    await b.send_all(b"two")
    await trio.testing.wait_all_tasks_blocked()  # the poller saw the edge, nobody parked
    assert poller._parked == {}
    with trio.fail_after(5):
        assert await a.receive_some(100) == b"two"
    await a.aclose()
    await b.aclose()


async def test_two_receivers_at_once_is_busy() -> None:
    poller = ReadPoller.current()
    a, b = pair(poller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await a.receive_some()
        nursery.cancel_scope.cancel()
    await a.aclose()
    await b.aclose()


async def test_many_connections_opened_and_closed_leave_no_registration() -> None:
    poller = ReadPoller.current()
    for _ in range(5):
        streams = [pair(poller) for _ in range(40)]
        assert len(poller.registered) == 40
        async with trio.open_nursery() as nursery:
            for a, _b in streams[::2]:  # half of them with a reader parked when closed
                nursery.start_soon(_receive, [], a)
            await trio.testing.wait_all_tasks_blocked()
            for a, b in streams:
                await a.aclose()
                await b.aclose()
        assert poller.registered == frozenset() and poller._parked == {}


async def test_a_parked_reader_outlives_a_stopped_poller_on_trios_own_wait() -> None:
    poller = ReadPoller()  # (its own, run here so that the test can stop it)
    got: list[bytes | BaseException] = []
    poller_scope = trio.CancelScope()
    async with trio.open_nursery() as outer:
        outer.start_soon(_run_in, poller_scope, poller)
        a, b = pair(poller)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_receive, got, a)
            await trio.testing.wait_all_tasks_blocked()
            assert list(poller._parked) == [a.fileno()]
            poller_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert poller.closed and poller._parked == {} and got == []
            await b.send_all(b"still")
    assert got == [b"still"]
    await a.aclose()
    await b.aclose()


async def _run_in(scope: trio.CancelScope, poller: ReadPoller) -> None:
    with scope:
        await poller.run()


async def test_passes_with_nothing_for_the_poller_do_not_poll_it() -> None:
    poller = ReadPoller.current()
    a, b = pair(poller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, [], a)
        await trio.testing.wait_all_tasks_blocked()
        polls = poller.polls
        for _ in range(50):  # 50 passes of trio's loop, no client data
            await trio.lowlevel.checkpoint()
        assert poller.polls == polls
        await b.send_all(b"x")
    assert poller.polls > polls
    await a.aclose()
    await b.aclose()
