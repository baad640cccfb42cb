"""The userspace link proxy over real loopback sockets, on trio's virtual clock.

``autojump_clock`` makes "nothing arrives for 10 s" cheap and exact: the clock only jumps
when every task is blocked, i.e. when no byte is on its way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from chaos.proxy import LinkProxy, ProxyMesh


async def echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


@pytest.fixture
async def proxy(nursery: trio.Nursery) -> AsyncIterator[LinkProxy]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await nursery.start(trio.serve_listeners, echo, listeners)
    p = LinkProxy(1, 2, ("127.0.0.1", port))
    await nursery.start(p.run)
    yield p


async def connect(p: LinkProxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", p.port)


async def receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        assert data, "connection closed early"
        buf += data
    return buf


async def test_forwards_both_ways(proxy: LinkProxy, autojump_clock: object) -> None:
    s = await connect(proxy)
    await s.send_all(b"hello")
    assert await receive_exactly(s, 5) == b"hello"
    await trio.testing.wait_all_tasks_blocked()
    assert proxy.connections == 1
    assert proxy.bytes == 10


async def test_block_is_silent_and_unblock_delivers_what_waited(
        proxy: LinkProxy, autojump_clock: object) -> None:
    s = await connect(proxy)
    await s.send_all(b"a")
    assert await receive_exactly(s, 1) == b"a"
    proxy.block()
    await s.send_all(b"held")
    with trio.move_on_after(10) as waited:
        await s.receive_some(100)
    assert waited.cancelled_caught, "a blocked link delivered data"
    proxy.unblock()
    assert await receive_exactly(s, 4) == b"held"  # the same connection, still open


async def test_a_connection_made_while_blocked_waits_for_the_heal(
        proxy: LinkProxy, autojump_clock: object) -> None:
    proxy.block()
    s = await connect(proxy)  # accepted, like a SYN that will be retransmitted
    await s.send_all(b"hi")
    with trio.move_on_after(10) as waited:
        await s.receive_some(100)
    assert waited.cancelled_caught
    proxy.unblock()
    assert await receive_exactly(s, 2) == b"hi"


async def test_latency_delays_and_keeps_order(proxy: LinkProxy, autojump_clock: object) -> None:
    proxy.set_latency(0.2, 0.3)
    s = await connect(proxy)
    sent = b"".join(bytes([i]) for i in range(200))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        async def writer() -> None:
            for i in range(200):
                await s.send_all(bytes([i]))
                await trio.sleep(0.01)  # separate chunks, each with its own jitter
        nursery.start_soon(writer)
        got = await receive_exactly(s, 200)
    assert got == sent
    # Each direction adds at least 0.2 s of virtual time.
    assert trio.current_time() - start >= 2 * 0.2 + 199 * 0.01


async def test_reset_aborts_the_connection(proxy: LinkProxy, autojump_clock: object) -> None:
    s = await connect(proxy)
    await s.send_all(b"x")
    assert await receive_exactly(s, 1) == b"x"
    proxy.reset()
    with pytest.raises(trio.BrokenResourceError):
        while await s.receive_some(10):
            pass
        raise AssertionError("closed with FIN, not RST")


async def test_upstream_down_resets_the_dialer(nursery: trio.Nursery) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    dead_port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nothing listens there any more
    p = LinkProxy(1, 2, ("127.0.0.1", dead_port))
    await nursery.start(p.run)
    s = await connect(p)
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
        while await s.receive_some(10):
            pass
        raise AssertionError("closed with FIN, not RST")


async def test_mesh_names_a_proxy_per_directed_link_and_cuts_exactly(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    upstreams = {}
    for node in (1, 2, 3):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        upstreams[node] = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        await nursery.start(trio.serve_listeners, echo, listeners)
    mesh = ProxyMesh(upstreams, seed=1)
    await nursery.start(mesh.run)
    assert set(mesh.links) == {(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)}
    ports = {p.port for p in mesh.links.values()}
    assert len(ports) == 6
    assert mesh.peer_map(1) == {2: mesh.address(1, 2), 3: mesh.address(1, 3)}
    assert mesh.links[1, 2].upstream == upstreams[2]

    await mesh.cut({(1, 2), (2, 1)})
    assert {lk for lk, p in mesh.links.items() if p.blocked} == {(1, 2), (2, 1)}
    await mesh.cut({(3, 1)})  # a new cut replaces the old one
    assert {lk for lk, p in mesh.links.items() if p.blocked} == {(3, 1)}
    await mesh.slow({(1, 3)}, 0.5, 0.1)
    assert (mesh.links[1, 3].delay, mesh.links[1, 3].jitter) == (0.5, 0.1)
    await mesh.heal()
    assert not any(p.blocked or p.delay or p.jitter for p in mesh.links.values())

    # Bytes really flow through the named proxy to the right node.
    host, port = mesh.address(2, 3).split(":")
    s = await trio.open_tcp_stream(host, int(port))
    await s.send_all(b"via 2->3")
    assert await receive_exactly(s, 8) == b"via 2->3"
    await trio.testing.wait_all_tasks_blocked()
    assert mesh.links[2, 3].bytes == 16
