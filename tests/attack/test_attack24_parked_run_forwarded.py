"""attack24: a write run parked behind a leadership transfer is forwarded to the new
leader as the EXEC it was proposed as, and the new leader checks it as a client's EXEC.

A leader (``--max-keys-per-command`` at its default) gets ``RAFT TRANSFER 2`` and, in the
same pipeline, eight plain SETs (write_runs.py builds one run of them, a ``[EXEC payload]``
entry). The core refuses proposals while the transfer runs, so the run parks
(``Node._dispatch``); node 2 takes over and the parked run is forwarded there. Node 2 runs
``--max-keys-per-command 4`` (a legal per-node setting): its ``_check_forwarded`` weighs
the EXEC as a transaction of 8 keys and refuses it, so every SET is answered
``-ERR transaction of 8 keys exceeds max-keys-per-command 4``, a reply none of them gets
alone (each names one key), and none is applied. ``Node.submit_run``'s docstring says the
run is "not checked again as an EXEC": that holds only while it is proposed where it was
built. With ``write_run 1`` the same pipeline gets ``+OK`` eight times. The same with a lower
``--max-request-bytes`` on node 2: eight 1 KB SETs pass its 4 KiB bound one by one, their
run (up to 64 KiB, the bound of the node that built it) gets ``-ERR request of ... bytes
exceeds max-request-bytes 4096`` eight times. (Both flags are per node, documented as to
be "set alike on every node"; a rolling change of them passes through this state.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients
from wire.resp import encode_command

pytestmark = pytest.mark.timeout(60)

@asynccontextmanager
async def _cluster(tmp: Path, per_node: list[dict[str, Any]]) -> AsyncIterator[list[Node]]:
    """``raftkv.testing.in_process_cluster`` with each node's own settings."""
    n = len(per_node)
    ports = free_ports(2 * n)
    peers = {i + 1: f"127.0.0.1:{ports[i]}" for i in range(n)}
    nodes = [Node(NodeSettings(node_id=i, client_addr=f"127.0.0.1:{ports[n + i - 1]}",
                               peer_addr=peers[i], cluster=peers, data_dir=str(tmp / str(i)),
                               snapshot_entries=0, fsync="never", tick_ms=5.0,
                               **per_node[i - 1]),
                  admin=Pending.of)
             for i in peers]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(partial(node.run, partial(serve_clients, ClientServer(node))))
        yield nodes
        nursery.cancel_scope.cancel()


def _leader(nodes: list[Node]) -> Node | None:
    return next((n for n in nodes if getattr(n, "core", None) is not None
                 and n.core.role is Role.LEADER), None)


async def _pipeline(port: int, commands: list[list[bytes]]) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    end = b"$3\r\nend\r\n"
    got = b""
    with trio.fail_after(20):
        await stream.send_all(b"".join(encode_command(*c) for c in commands)
                              + encode_command(b"ECHO", b"end"))
        while not got.endswith(end):
            data = await stream.receive_some(65536)
            assert data, got
            got += data
    await stream.aclose()
    return got


async def _lead_with(nodes: list[Node], node: Node) -> None:
    """Make ``node`` the leader (transfers to it until one takes), everyone caught up."""
    with trio.fail_after(30):
        while (leader := _leader(nodes)) is not node:
            if leader is not None:
                await _pipeline(leader.client_port,
                                [[b"RAFT", b"TRANSFER", b"%d" % node.id]])
            with trio.move_on_after(1):
                while _leader(nodes) is leader:
                    await nodes[0].next_tick()
        while any(n.applied != node.applied for n in nodes):
            await nodes[0].next_tick()


# 32 SETs of 16 bytes of arguments each (``SET k<i> v NX NX NX NX NX``, which Redis
# accepts): 512 bytes, ``run_bytes(1024)``, but 1,084 bytes as an ``EXEC payload`` request
# (each argument takes two bytes of msgpack framing): over --max-request-bytes 1024.
PADDED = [[b"SET", b"k%d" % (i % 10), b"v", *[b"NX"] * 5] for i in range(32)]


@pytest.mark.parametrize("write_run", [1, 32])
@pytest.mark.parametrize(("small", "everywhere", "sets"), [
    # each SET: 1 key; the run: 8
    ({"max_keys_per_command": 4}, False, [[b"SET", b"k%d" % i, b"v"] for i in range(8)]),
    # each SET: ~1 KB; the run: ~8 KB
    ({"max_request_bytes": 4096}, False,
     [[b"SET", b"k%d" % i, b"x" * 1000] for i in range(8)]),
    # the same bound on every node: the run is within run_bytes, its EXEC is not
    ({"max_request_bytes": 1024}, True, PADDED),
], ids=["key-cap", "request-bytes", "request-bytes-everywhere"])
async def test_a_run_parked_by_a_transfer_gets_each_sets_own_reply(
        tmp_path: Path, write_run: int, small: dict[str, int], everywhere: bool,
        sets: list[list[bytes]]) -> None:
    small = {**small, "write_run": write_run}
    per_node = [small if everywhere else {"write_run": write_run}, small, small]
    async with _cluster(tmp_path, per_node) as nodes:
        first, second = nodes[0], nodes[1]
        await _lead_with(nodes, first)
        alone = await _pipeline(first.client_port, sets)  # (with nobody's transfer)
        fresh = [[c[0], b"t" + c[1], *c[2:]] for c in sets]  # the same on fresh keys
        got = await _pipeline(first.client_port, [[b"RAFT", b"TRANSFER", b"2"], *fresh])
        assert _leader(nodes) is second  # the transfer happened behind the run
        # Each SET is answered as alone, never with a transaction's refusal.
        assert b"-ERR" not in alone, alone
        assert got == b"+OK\r\n" + alone, got
