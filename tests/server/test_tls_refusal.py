"""A TLS client port over its connection cap closes the connection and writes nothing.

Before, it wrote Redis's plain-text refusal before any handshake, which a TLS client read
as a garbled record ('wrong version number'; tlsatk). Redis closes such a connection too.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trio

from chaos.cluster import free_ports
from raftkv import certs
from raftkv.testing import one_node_port


async def _refusal(tmp_path: Path, tls: bool) -> bytes:
    """What a connection beyond a cap of one reads before the port closes it."""
    peer, port = free_ports(2)
    extra: dict[str, str] = {}
    if tls:
        certs.create(tmp_path / "pki")
        extra = {"tls_cert": str(tmp_path / "pki" / "node.crt"),
                 "tls_key": str(tmp_path / "pki" / "node.key")}
    async with one_node_port(tmp_path / "data", peer, port, max_clients=1, fsync="never",
                             **extra):
        with trio.fail_after(30):
            first = await trio.open_tcp_stream("127.0.0.1", port)
            if tls:
                ctx = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.crt"))
                first = trio.SSLStream(first, ctx, server_hostname="localhost")
                await first.do_handshake()
            await first.send_all(b"PING\r\n")
            assert await first.receive_some(64) == b"+PONG\r\n"  # the one slot is taken
            second = await trio.open_tcp_stream("127.0.0.1", port)
            got = b""
            while chunk := await second.receive_some(1024):
                got += chunk
        await first.aclose()
    return got


async def test_a_full_tls_port_closes_without_writing_plain_text(tmp_path: Path) -> None:
    assert await _refusal(tmp_path, tls=True) == b""


async def test_a_full_plain_port_answers_redis_refusal(tmp_path: Path) -> None:
    assert (await _refusal(tmp_path, tls=False)).startswith(
        b"-ERR max number of clients reached")
