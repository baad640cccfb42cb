"""attack24: with write runs, a client that pipelines before reading is disconnected for
its output buffer where it was only held before.

The client port stops reading a connection's commands at ``PIPELINE_WINDOW`` (1,024)
reply slots owed, with no deadline, and at half of ``--client-output-buffer-limit`` of
unsent replies, where a client that reads nothing for ``--client-output-stall-timeout``
is disconnected. One reply slot held one reply, so with INCRBY's 22-byte replies the
window stopped the reader at ~22 KB owed, far under half of any limit over 45 KB: a
client that sends a long pipeline before reading (send everything, then read) was held,
connected, however late it read. A run's slot holds up to 32 replies: the window now
lets ~720 KB of replies be owed, past half of a 256 KiB limit, and the same client is
disconnected once the stall timeout passes (here 0.5 s; 10 s by default), with its
replies lost. (Redis buffers up to the hard limit; the point is the change from before.)
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.testing import one_node_port
from wire.resp import encode_command

pytestmark = pytest.mark.timeout(90)

LIMIT = 256 * 1024
COMMANDS = 50_000
STALL = 0.5  # --client-output-stall-timeout
WATCHED = 10 * STALL  # how long the test looks for a disconnect


@pytest.mark.parametrize("write_run", [1, 32])
async def test_a_client_that_reads_late_is_held_not_disconnected(
        tmp_path: Path, write_run: int) -> None:
    async with one_node_port(tmp_path / "n", *free_ports(2), write_run=write_run,
                             fsync="never", client_output_buffer_limit=LIMIT,
                             client_output_stall_timeout=STALL) as (node, server):
        stream = await trio.open_tcp_stream("127.0.0.1", node.client_port)
        pipeline = encode_command(b"INCRBY", b"k", b"100000000000000") * COMMANDS

        async def send() -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(pipeline)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with trio.move_on_after(WATCHED):  # (a disconnect comes within ~2 stalls)
                while not server.stats["client_output_buffer_disconnects"]:
                    await node.next_tick()
            nursery.cancel_scope.cancel()
        assert server.stats["client_output_buffer_disconnects"] == 0
        await stream.aclose()
