"""The driver applies a Ready's committed entries in slices of APPLY_SLICE seconds, letting
the loop run between them (raftkv.node.driver ``CoreDriver._apply``).

attack10, live: a batch of costly entries applied in one go held every node's loop for
their sum (300 pipelined APPENDs to an 8 MiB value: 21-23 s; 40 pipelined EVALs that
spend their budget: 7 s), so no heartbeat or tick ran and the leader lost its term. Here
the clock the slices are measured on moves a second per reading, so every entry ends a
slice: another task, given a turn only by the loop, sees the batch half applied.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.node import apply as apply_module
from raftkv.node.node import Node
from raftkv.testing import one_node_leader
from wire.resp import encode_command


@pytest.fixture
async def leader(tmp_path: Path) -> AsyncIterator[Node]:
    """A one-node cluster, its leader elected, its client port open, each write its own
    entry (a pipeline's writes are one otherwise: raftkv.server.write_runs)."""
    async with one_node_leader(tmp_path / "data", *free_ports(2), write_run=1) as node:
        yield node


async def test_the_loop_runs_between_the_entries_of_one_batch(
        leader: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []  # the applied index at each turn of another task

    async def other_task() -> None:
        while True:
            await trio.lowlevel.checkpoint()
            seen.append(leader.applier.applied)

    stream = await trio.open_tcp_stream("127.0.0.1", leader.client_port)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await stream.send_all(encode_command(b"SET", b"warm", b"up"))
            assert await stream.receive_some(100) == b"+OK\r\n"
            syncs, base = leader.stats["wal_syncs"], leader.applier.applied
            seconds = itertools.count()
            monkeypatch.setattr(apply_module, "monotonic", lambda: float(next(seconds)))
            nursery.start_soon(other_task)
            await stream.send_all(b"".join(encode_command(b"SET", b"k%d" % i, b"v")
                                           for i in range(10)))
            got = b""
            while got.count(b"\r\n") < 10:
                got += await stream.receive_some(1000)
            assert got == b"+OK\r\n" * 10
        nursery.cancel_scope.cancel()
    assert leader.stats["wal_syncs"] - syncs == 1  # one batch (test_pipeline_batch)
    assert leader.applier.applied == base + 10
    halfway = {index for index in seen if base < index < base + 10}
    # After the k-th entry (k < 9) another task sees k or k + 1 entries applied: at least
    # four distinct values half way through (none when the batch is applied at once).
    assert len(halfway) >= 4
    await stream.aclose()
