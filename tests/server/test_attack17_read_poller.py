"""attack17 against cpoll's shared read poller (raftkv/node/read_poller.py).

Held (not kept here, each took seconds): 60 connections ended in every way a client can
end one (QUIT, reset with a parked reader, half-close after a pipeline, idle timeout, no
first command, a command cut in the middle) left no registration, parked reader or
remembered edge; 40 resets each followed at once by a new connection (fd reuse) got only
their own replies; redis-benchmark -k 0 -c 100 (a connection per request) on a live
3-node cluster, connected_clients back to 1 after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from chaos.cluster import free_ports
from raftkv.node.read_poller import ReadPoller
from raftkv.server.client_port import OWN_WAITS_UP_TO
from raftkv.testing import connect_and_ping, one_node_leader, read_line

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    peer, client = free_ports(2)
    async with one_node_leader(tmp_path / "data", peer, client, fsync="never",
                               idle_timeout=0.3, first_command_timeout=0.3):
        yield client


async def test_a_client_connecting_after_the_poller_failed_is_served(port: int) -> None:
    """cpoll: a poller that fails "falls back to trio's waits" (its log line), and its
    parked readers do; but the run keeps the stopped poller (``ReadPoller.current``), whose
    epoll is closed, so every connection accepted afterwards fails in ``register`` with a
    ValueError (not the OSError ``PlainStream`` falls back on) and is dropped unanswered:
    the node serves no new plain-text client until it restarts."""
    # (The first connections wait with trio's own waits, OWN_WAITS_UP_TO: ``first`` is the
    # one after them, on the poller.)
    before = [await connect_and_ping(port) for _ in range(OWN_WAITS_UP_TO)]
    first = await connect_and_ping(port)
    poller = ReadPoller.current()
    assert poller.registered

    def broken() -> None:  # (a bug in wake(): the hook is dropped, the task ends)
        raise RuntimeError("injected")

    poller.wake = broken  # type: ignore[method-assign]
    await first.send_all(b"PING\r\n")  # an event: the hook and the task call wake()
    with trio.fail_after(5):
        assert await read_line(first) == b"+PONG\r\n"  # (parked: trio's wait now)
    await trio.testing.wait_all_tasks_blocked()
    assert poller.closed  # (its task logged the failure and ended)
    with trio.move_on_after(2) as waited:
        late = await connect_and_ping(port)  # (before the fix: never answered)
    assert not waited.cancelled_caught, "a new client after the poller failed: no reply in 2 s"
    await first.aclose()
    await late.aclose()
    for c in before:
        await c.aclose()
