"""Wrong ``/metrics`` tokens are rate-limited per source (raftkv.server.http,
raftkv.server.http_auth): they were counted and their log lines throttled, but a guesser
could try tokens as fast as the port answered. Now each address (and IPv6 /64) has the
client port's bucket of failures (raftkv.server.auth_limit); one with none left gets 429
with ``Retry-After`` before its token is compared, while other addresses are not touched.
In-process streams that report a peer address, and trio's MockClock: no sockets, no real
time."""

from __future__ import annotations

import hmac
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from raftkv.server import http_auth
from raftkv.server.auth_limit import FailedAuths
from raftkv.server.http import HttpServer
from raftkv.server.http_auth import MetricsSecurity

TOKEN = b"0123456789abcdef0123"
BURST = 3


class FakeNode:
    """What ``/metrics`` reads: a registry."""

    def __init__(self) -> None:
        self.metrics = SimpleNamespace(registry=CollectorRegistry())


class FromAddress(trio.abc.Stream):
    """One end of an in-memory stream whose peer is ``host`` (what ``_peer`` reads)."""

    def __init__(self, stream: trio.abc.Stream, host: str) -> None:
        self._stream = stream
        self.socket = SimpleNamespace(getpeername=lambda: (host, 40000))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def scrape(server: HttpServer, host: str, token: bytes | None) -> tuple[int, bytes]:
    """(status, whole answer) of ``GET /metrics`` from ``host`` with ``token``."""
    client, end = trio.testing.memory_stream_pair()
    auth = b"" if token is None else b"Authorization: Bearer " + token + b"\r\n"
    await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
    await server.handle(FromAddress(end, host))  # type: ignore[arg-type]
    answer = b""
    while chunk := await client.receive_some(65536):
        answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


@pytest.fixture
async def server() -> HttpServer:
    security = MetricsSecurity(token=TOKEN,
                               failures=FailedAuths(trio.current_time, burst=BURST, rate=1.0))
    return HttpServer(FakeNode(), security)  # type: ignore[arg-type]


async def test_a_guesser_gets_429_before_its_token_is_compared(
        server: HttpServer, autojump_clock: trio.testing.MockClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    compared = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(http_auth, "hmac", SimpleNamespace(compare_digest=compare_digest))
    for i in range(BURST):
        assert (await scrape(server, "192.0.2.1", b"wrong-token-%04d" % i))[0] == 401
    assert len(compared) == BURST
    # Over the limit: even the right token is refused, and not compared at all.
    status, answer = await scrape(server, "192.0.2.1", TOKEN)
    assert status == 429, answer
    assert b"\r\nRetry-After: 1\r\n" in answer and b"raftkv" not in answer.split(b"\r\n\r\n")[1]
    assert len(compared) == BURST and server.security.guessing_refused == 1
    # Another address with the right token is served; so is the guesser, one try later.
    assert (await scrape(server, "192.0.2.2", TOKEN))[0] == 200
    await trio.sleep(1.0)
    assert (await scrape(server, "192.0.2.1", TOKEN))[0] == 200


async def test_a_missing_token_is_no_guess_and_ipv6_counts_per_64(
        server: HttpServer, autojump_clock: trio.testing.MockClock) -> None:
    for _ in range(2 * BURST):  # a scraper without its token: 401, never locked out
        assert (await scrape(server, "192.0.2.1", None))[0] == 401
    assert (await scrape(server, "192.0.2.1", TOKEN))[0] == 200
    # One machine cycling its /64's addresses drains the subnet's bucket (10 bursts).
    for i in range(10 * BURST):
        assert (await scrape(server, f"2001:db8::{i + 1:x}", b"wrong-token-0000"))[0] == 401
    assert (await scrape(server, "2001:db8::ffff", TOKEN))[0] == 429
    assert (await scrape(server, "2001:db8:0:1::1", TOKEN))[0] == 200  # another /64


def test_the_table_of_sources_is_bounded() -> None:
    now = [100.0]
    security = MetricsSecurity(token=TOKEN, failures=FailedAuths(lambda: now[0], burst=1,
                                                                 max_sources=8))
    wrong = {b"authorization": b"Bearer wrong-token-0000"}
    for i in range(200):
        assert not security.authorized(wrong, f"10.0.{i // 256}.{i % 256}:5000")
    assert len(security.failures._tokens) <= 8 + 1  # (the overflow bucket)
    assert security.retry_after("10.0.0.1:6000") == 1
    assert MetricsSecurity().failures.max_sources == FailedAuths(lambda: 0.0).max_sources
