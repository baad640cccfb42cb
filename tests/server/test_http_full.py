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

from types import SimpleNamespace

import trio
import trio.testing
from prometheus_client import CollectorRegistry

from raftkv.server.http import MAX_CONNECTIONS, STALLED_AFTER, HttpServer


class FakeNode:
    """What the port's routes read: a metrics registry and the ticker (for /livez)."""

    def __init__(self) -> None:
        self.metrics = SimpleNamespace(registry=CollectorRegistry())
        self.ticks = 0

    async def next_tick(self) -> int:
        await trio.sleep(0.01)
        self.ticks += 1
        return self.ticks


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
