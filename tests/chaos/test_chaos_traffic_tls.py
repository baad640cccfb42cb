"""The traffic faults of chaos.nemesis speak as the workload does under ``run --tls``:
TLS and AUTH first. tlsatk: they sent plain text, so on a TLS port the handshake refused
every one (huge-value reported "0 client inputs") and slow-reader never held a reply."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import chaos.nemesis
from chaos.fuzz import LiveStats
from chaos.workload import client_security
from raftkv import certs
from raftkv.node.tls_stream import handshake
from raftkv.server.client_tls import client_tls_context

pytestmark = pytest.mark.timeout(60)


async def test_huge_values_and_slow_reader_handshake_and_auth_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certs.create(tmp_path)
    server_ctx = client_tls_context(str(tmp_path / "node.crt"), str(tmp_path / "node.key"))
    monkeypatch.setenv("RAFTKV_CACERT", str(tmp_path / "ca.crt"))  # as run --tls sets
    monkeypatch.setenv("RAFTKV_PASSWORD", "pw")
    client_security.cache_clear()  # (read once per process)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    addr = ("127.0.0.1", listener.socket.getsockname()[1])
    seen: list[bytes] = []

    async def serve_one(expect: bytes) -> None:
        tls = await handshake(await listener.accept(), server_ctx, server_side=True)
        got = b""
        while expect not in got:
            got += await tls.receive_some()
            if b"AUTH" in got and not seen:
                seen.append(b"AUTH")
                await tls.send_all(b"+OK\r\n")
        seen.append(expect)
        await tls.aclose()

    with trio.fail_after(30):  # (a guard: on plain text the handshake fails at once)
        for run, args, expect in (
                (chaos.nemesis._huge_values, (addr, LiveStats()), b"nemesis:huge"),
                (chaos.nemesis._slow_reader, (addr,), b"nemesis:big")):
            seen.clear()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, *args)
                await serve_one(expect)
                nursery.cancel_scope.cancel()
            assert seen == [b"AUTH", expect]
    await listener.aclose()
    client_security.cache_clear()
