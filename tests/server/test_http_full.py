"""The ops HTTP port when every slot is taken (raftkv.server.http): a probe still gets in.

Clients that send a whole request and never read the answer held the port's 32 slots
for SEND_TIMEOUT (10 s) each: a newcomer could evict only a connection still sending its
head, so ``/livez`` answered ``503 too many connections`` on a healthy node for as long
as someone kept 32 such requests open (tests/bench/attack_metrics_flood.py, ``noread``).
Now a connection whose answer has not been taken for STALLED_AFTER is evicted too. Streams
in lockstep (a send waits for the other side to read) and trio's MockClock: no sockets, no
real time.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from chaos.cluster import free_ports
from raftkv.server.http import MAX_CONNECTIONS, STALLED_AFTER, HttpServer, serve_http

MAX_PROBES = 32  # (raftkv.server.http.MAX_PROBES: written out, so this runs on main too)

ADMIT_RATE = 64.0  # (raftkv.server.http.ADMIT_RATE: written out, so this runs on main too)
ADMIT_BURST = 2 * MAX_CONNECTIONS  # (raftkv.server.http.ADMIT_BURST, likewise)


class FakeNode:
    """What the port's routes read: a metrics registry and the ticker (for /livez)."""

    def __init__(self) -> None:
        self.metrics = SimpleNamespace(registry=CollectorRegistry())
        self.ticks = 0

    async def next_tick(self) -> int:
        await trio.sleep(0.01)
        self.ticks += 1
        return self.ticks

    def ticked_within(self, seconds: float) -> int | None:
        return None  # (not known: /livez waits for the next tick)


async def _answer(client: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await client.receive_some(4096):
        data += chunk
    return data


async def test_clients_that_never_read_their_answer_do_not_lock_a_probe_out(
        autojump_clock: trio.testing.MockClock) -> None:
    server = HttpServer(FakeNode())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        holders = []
        for _ in range(MAX_CONNECTIONS):
            client, end = trio.testing.lockstep_stream_pair()
            nursery.start_soon(server.handle, end)
            await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            holders.append(client)  # ... and never read
        await trio.sleep(STALLED_AFTER)
        assert server.active == MAX_CONNECTIONS
        probe, end = trio.testing.lockstep_stream_pair()
        nursery.start_soon(server.handle, end)
        await probe.send_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await _answer(probe)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer  # (before: 503)
        assert server.evicted_stalled == 1
        # The oldest holder was the one closed (its answer cut short), the others not.
        with trio.fail_after(60):  # (virtual time: a hang fails at once)
            await _answer(holders[0])
        assert server.active == MAX_CONNECTIONS - 1  # (the probe answered and closed too)
        nursery.cancel_scope.cancel()


async def test_an_answer_being_taken_is_not_evicted_before_it_stalls(
        autojump_clock: trio.testing.MockClock) -> None:
    """Within STALLED_AFTER an answer counts as being read: a newcomer finding every slot
    busy answering gets the 503, as before."""
    server = HttpServer(FakeNode())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        for _ in range(MAX_CONNECTIONS):
            client, end = trio.testing.lockstep_stream_pair()
            nursery.start_soon(server.handle, end)
            await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        probe, end = trio.testing.lockstep_stream_pair()
        nursery.start_soon(server.handle, end)
        assert (await _answer(probe)).startswith(b"HTTP/1.1 503")
        assert server.evicted_stalled == 0
        nursery.cancel_scope.cancel()


class _QuickNode(FakeNode):
    """A node on ``--metrics-addr addr`` whose ticker has always just ticked: /livez
    answers without waiting, so the tests below run with the clock stopped."""

    def __init__(self, addr: str) -> None:
        super().__init__()
        self.settings = SimpleNamespace(metrics_addr=addr)

    async def next_tick(self) -> int:
        await trio.lowlevel.checkpoint()
        self.ticks += 1
        return self.ticks

    def ticked_within(self, seconds: float) -> int | None:
        return self.ticks


@pytest.fixture
def stopped_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # (rate 0: time moves only when a test says so)


async def _serve(nursery: trio.Nursery) -> int:
    """The ops port on a free loopback port; its port."""
    port = free_ports(1)[0]
    await nursery.start(serve_http, _QuickNode(f"127.0.0.1:{port}"))
    return port


async def _until(condition: Callable[[], object]) -> None:
    """Let the port run (loopback delivers at once) until ``condition`` holds."""
    for _ in range(100_000):
        if condition():
            return
        await trio.lowlevel.checkpoint()
    raise AssertionError("the port never got there")


def _client(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head)
    sock.setblocking(False)
    return sock


def _received(sock: socket.socket) -> bytes:
    """What ``sock`` has received (b"" at its end), or b"(nothing)" if nothing yet."""
    try:
        return sock.recv(4096)
    except BlockingIOError:
        return b"(nothing)"
    except ConnectionResetError:  # (closed with our unread bytes: a reset)
        return b""


async def _answer_of(sock: socket.socket) -> bytes:
    """The first bytes ``sock`` receives, once it has any (b"" if closed unanswered)."""
    got: list[bytes] = []
    await _until(lambda: got.append(_received(sock)) or got[-1] != b"(nothing)")
    return got[-1]


HALF = b"GET /livez HTTP/1.1\r\nX-Slow: "
LIVEZ = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
ROOT = b"GET / HTTP/1.1\r\n\r\n"
READYZ = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_reconnect_flood_is_refused_at_accept_and_a_probe_still_gets_in(
        stopped_clock: trio.testing.MockClock) -> None:
    """attack_metrics_flood.py: connections sending half a head, reconnecting thousands of
    times a second, kept the kernel's accept queue full, and each one accepted evicted an
    older one in a task of its own, so a probe waited 1-2.5 s or timed out. Now a newcomer
    that has not sent a whole head evicts nobody younger than STALLED_AFTER: past the 32
    slots it gets a 503 at accept, without a task; a probe whose head is in has slots of
    its own."""
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery)
        half = [_client(port, HALF) for _ in range(MAX_CONNECTIONS + 8)]
        for late in half[MAX_CONNECTIONS:]:  # (before: each evicted an older one)
            assert (await _answer_of(late)).startswith(b"HTTP/1.1 503")
        assert all(_received(s) == b"(nothing)" for s in half[:MAX_CONNECTIONS])  # kept
        probe = _client(port, LIVEZ)
        assert (await _answer_of(probe)).startswith(b"HTTP/1.1 200 OK")
        assert all(_received(s) == b"(nothing)" for s in half[:MAX_CONNECTIONS])
        stopped_clock.jump(STALLED_AFTER)  # now the oldest may be evicted for a newcomer
        newcomer = _client(port, HALF)
        ends = [b"(nothing)"] * MAX_CONNECTIONS

        def one_evicted() -> bool:
            ends[:] = [end if end != b"(nothing)" else _received(s)
                       for end, s in zip(ends, half, strict=False)]
            return any(end != b"(nothing)" for end in ends)
        await _until(one_evicted)
        assert sorted(ends)[:2] == [b"", b"(nothing)"]  # one closed unanswered, no more
        for s in (*half, probe, newcomer):
            s.close()
        nursery.cancel_scope.cancel()


async def test_new_connections_are_admitted_at_a_bounded_rate(
        stopped_clock: trio.testing.MockClock) -> None:
    """Complete ``GET /metrics`` requests reconnecting as fast as the node answered cost it
    0.5 ms each, a core in all, and its leadership (attack_metrics_flood.py ``noread``).
    The 32 slots take ADMIT_RATE new connections a second, in bursts of ADMIT_BURST; past
    that a newcomer gets a 503 at accept, and probes are not counted."""
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery)
        for _ in range(ADMIT_BURST):  # one after another: never more than one slot
            with _client(port, ROOT) as sock:
                assert (await _answer_of(sock)).startswith(b"HTTP/1.1 200 OK")
        with _client(port, ROOT) as over:  # (before: 200)
            assert (await _answer_of(over)).startswith(b"HTTP/1.1 503")
        with _client(port, LIVEZ) as probe:  # (not counted)
            assert (await _answer_of(probe)).startswith(b"HTTP/1.1 200 OK")
        stopped_clock.jump(1 / ADMIT_RATE)
        with _client(port, ROOT) as again:
            assert (await _answer_of(again)).startswith(b"HTTP/1.1 200 OK")
        nursery.cancel_scope.cancel()


class _CountingCollector:
    """A collector that counts how often the registry is rendered."""

    def __init__(self) -> None:
        self.collected = 0

    def collect(self) -> list[object]:
        self.collected += 1
        return []


async def test_a_scrape_flood_renders_metrics_a_few_times_a_second(
        stopped_clock: trio.testing.MockClock) -> None:
    """harden10: under a flood of ``GET /metrics`` never read, the 64 admissions a second
    rendered the registry 64 times a second (0.5-10 ms of the loop each on loaded cores)
    and the leader lost its term in 7 of 11 runs. Past a few renderings a second, a scrape
    gets the last one again (at most a quarter of a second old)."""
    node, counter = FakeNode(), _CountingCollector()
    node.metrics.registry.register(counter)  # type: ignore[arg-type]
    server = HttpServer(node)  # type: ignore[arg-type]
    bodies = [await server.route(b"/metrics") for _ in range(40)]
    assert 1 <= counter.collected <= 8  # a burst, then the last rendering again
    assert len({body for _, _, body in bodies}) == 1 and bodies[0][0] == 200
    stopped_clock.jump(0.25)  # a quarter of a second later: a fresh one
    before = counter.collected
    await server.route(b"/metrics")
    assert counter.collected == before + 1


class _TickingNode(FakeNode):
    """A node on ``addr`` whose ticker ticked just now, and whose next tick comes only when
    the (stopped) clock moves: a probe that waits for it holds its slot meanwhile."""

    def __init__(self, addr: str) -> None:
        super().__init__()
        self.settings = SimpleNamespace(metrics_addr=addr)

    def ticked_within(self, seconds: float) -> int | None:
        return self.ticks


async def test_a_flood_of_probes_does_not_crowd_out_a_probe(
        stopped_clock: trio.testing.MockClock) -> None:
    """attack11 (attack_metrics_flood.py ``readyz``, ``livez``): complete probe heads that
    reconnect as fast as they are answered took the MAX_PROBES probe slots, then the
    admissions and the 32 other slots, each waiting for the next tick: 59 of 76 real
    ``/readyz`` probes (62 of 85 ``/livez``) got ``503 too many connections``. Now a probe
    is answered at accept when the ticker ticked just now (``/readyz`` always)."""
    async with trio.open_nursery() as nursery:
        port = free_ports(1)[0]
        await nursery.start(serve_http, _TickingNode(f"127.0.0.1:{port}"))
        flood = [_client(port, LIVEZ) for _ in range(MAX_PROBES + MAX_CONNECTIONS)]
        await trio.testing.wait_all_tasks_blocked()  # (the port took the flood in)
        for head in (LIVEZ, READYZ):
            with _client(port, head) as probe:  # (before: 503 too many connections)
                answer = await _answer_of(probe)
                assert b"too many connections" not in answer, answer
        for s in flood:
            s.close()
        nursery.cancel_scope.cancel()

