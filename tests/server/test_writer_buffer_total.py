"""The client writer tells the buffer total (ClientBuffers) once per flush, not once per
reply (~90 ns a pipelined SET): still before it awaits anything, so whenever another task
runs, each connection's share of the total is its output buffer as counted per reply."""

from __future__ import annotations

from pathlib import Path

import trio

from chaos.cluster import free_ports
from raftkv.server.client_port import ClientServer
from raftkv.testing import one_node_port
from wire.resp import encode_command

PIPELINE = 200
ROUNDS = 5


async def test_the_total_matches_every_output_buffer_whenever_another_task_runs(
        tmp_path: Path) -> None:
    peer, port = free_ports(2)
    seen: list[tuple[int, int]] = []  # (output bytes, their share of the total), differing
    checks = 0

    def check(server: ClientServer) -> None:
        nonlocal checks
        checks += 1
        for conn in server.connections.values():
            share = server.buffers._held[conn.id][2]
            if share != conn.out_bytes:
                seen.append((conn.out_bytes, share))

    async with one_node_port(tmp_path, peer, port, fsync="never") as (_node, server):
        done = trio.Event()

        async def watch() -> None:
            while not done.is_set():
                check(server)
                await trio.lowlevel.checkpoint()

        batch = b"".join(encode_command(b"SET", b"k%d" % i, b"v" * (i % 50))
                         for i in range(PIPELINE))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            for _ in range(ROUNDS):
                await stream.send_all(batch)
                got = b""
                while got.count(b"+OK\r\n") < PIPELINE:
                    got += await stream.receive_some(65536)
            await stream.aclose()
            done.set()
        check(server)
    assert checks > ROUNDS and seen == []
    assert server.buffers.total == 0
