"""attack24: a protocol error parsed right behind a write run drops the run unanswered.

``ClientServer._gather_run`` parses the commands after a run's first one with
``parser.next_command()``; when that raises ``ProtocolError`` (a bad multibulk length,
unbalanced quotes, a bulk over the limit) the exception leaves the reader loop before
``node.submit_run``: the writes already gathered are never proposed and never answered, and
the client's only reply is the protocol error, which it reads as the answer to its first
write. Redis (and this port with ``write_run 1``) runs and answers every command before the
bad one, then answers the error and closes: ``+OK +OK -ERR Protocol error...``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.testing import one_node_leader
from wire.resp import encode_command

pytestmark = pytest.mark.timeout(60)


async def _until_closed(port: int, data: bytes) -> bytes:
    """What the node answers ``data`` with, up to closing the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    got = b""
    with trio.fail_after(20):
        await stream.send_all(data)
        while chunk := await stream.receive_some(65536):
            got += chunk
    await stream.aclose()
    return got


@pytest.fixture(params=[32, 1], ids=["runs", "alone"])
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Node]:
    async with AsyncExitStack() as stack:
        yield await stack.enter_async_context(
            one_node_leader(tmp_path / "n", *free_ports(2), write_run=request.param))


@pytest.mark.parametrize(("bad", "error"), [
    (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"set k \"unbalanced\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9999999999\r\n",  # over --max-request-bytes
     b"-ERR Protocol error: invalid bulk length\r\n"),
])
async def test_writes_before_a_protocol_error_are_run_and_answered(
        node: Node, bad: bytes, error: bytes) -> None:
    data = encode_command(b"SET", b"a", b"1") + encode_command(b"INCR", b"n") + bad
    got = await _until_closed(node.client_port, data)
    assert got == b"+OK\r\n:1\r\n" + error, got
    assert node.kv.read([b"GET", b"a"]) == b"1" and node.kv.read([b"GET", b"n"]) == b"1"
