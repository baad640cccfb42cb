"""raftkv/node/tls_stream.py: TLS over memory BIOs on a non-blocking socket, as a trio Stream.

trio's own stream conformance checks, then what a hostile or slow peer can do: writes that
block half-way (both directions at once), a record that arrives in pieces, an oversized
record header, a cut without close_notify, a renegotiation attempt, a handshake with a
certificate of another CA or that never finishes, and a send cancelled half-way."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from raftkv import certs
from raftkv.node import tls_stream
from raftkv.node.tls import peer_tls
from raftkv.node.tls_stream import RECORD_SIZE, TLSStream, handshake
from raftkv.server.client_tls import client_tls_context

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    good, rogue = tmp_path_factory.mktemp("good"), tmp_path_factory.mktemp("rogue")
    certs.create(good)
    certs.create(rogue)
    return {"good": good, "rogue": rogue}


def server_context(d: Path) -> ssl.SSLContext:
    return client_tls_context(str(d / "node.crt"), str(d / "node.key"))


def client_context(ca_dir: Path) -> ssl.SSLContext:
    """What redis-cli --tls --cacert does: verify the server against the CA, by name."""
    return ssl.create_default_context(cafile=str(ca_dir / "ca.crt"))


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    return (trio.SocketStream(trio.socket.from_stdlib_socket(a)),
            trio.SocketStream(trio.socket.from_stdlib_socket(b)))


async def tls_pair(server_ctx: ssl.SSLContext,
                   client_ctx: ssl.SSLContext) -> tuple[TLSStream, TLSStream]:
    """(server, client), both handshaken."""
    a, b = socket_pair()
    done: dict[str, TLSStream] = {}

    async def serve() -> None:
        done["server"] = await handshake(a, server_ctx, server_side=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        done["client"] = await handshake(b, client_ctx, server_side=False,
                                         server_hostname="localhost")
    return done["server"], done["client"]


class HandmadeTLSClient:
    """A TLS client driving OpenSSL by hand (memory BIOs), so that a test decides exactly
    which bytes reach the server and when: half a record, a forged record header."""

    def __init__(self, stream: trio.SocketStream, ctx: ssl.SSLContext) -> None:
        self.stream = stream
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                self.incoming.write(await self.stream.receive_some())
        await self.flush()

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.stream.send_all(data)

    def record(self, data: bytes) -> bytes:
        """``data`` encrypted, not sent."""
        self.tls.write(data)
        return self.outgoing.read()


async def handmade_pair(pki: dict[str, Path]) -> tuple[TLSStream, HandmadeTLSClient]:
    a, b = socket_pair()
    client = HandmadeTLSClient(b, client_context(pki["good"]))
    done: dict[str, TLSStream] = {}

    async def serve() -> None:
        done["server"] = await handshake(a, server_context(pki["good"]), server_side=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await client.handshake()
    return done["server"], client


async def test_trio_stream_conformance(pki, monkeypatch) -> None:
    """trio's checks, with a yield on every call (they check that each call is a
    checkpoint); the stream's pacing is checked on its own below."""
    monkeypatch.setattr(tls_stream, "YIELD_EVERY", 1)

    async def maker() -> tuple[TLSStream, TLSStream]:
        return await tls_pair(server_context(pki["good"]), client_context(pki["good"]))

    with trio.fail_after(20):
        await trio.testing.check_two_way_stream(maker, None)


async def test_large_transfers_both_ways_at_once(pki) -> None:
    """8 MiB each way, each side sending while it receives: the sends block half-way in
    OpenSSL (SSLWantWriteError) until the other side reads, and neither side's blocked
    send stops its own receive."""
    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))
    payload = {s: bytes([i]) * 8 * 1024 * 1024 + hashlib.sha256(bytes([i])).digest()
               for i, s in enumerate((server, client))}
    got: dict[TLSStream, bytearray] = {server: bytearray(), client: bytearray()}

    async def receive(s: TLSStream, n: int) -> None:
        while len(got[s]) < n:
            got[s] += await s.receive_some(1024 * 1024)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, payload[server])
            nursery.start_soon(client.send_all, memoryview(payload[client]))
            nursery.start_soon(receive, server, len(payload[client]))
            nursery.start_soon(receive, client, len(payload[server]))
    assert got[server] == payload[client] and got[client] == payload[server]
    await server.aclose()
    await client.aclose()


async def test_a_receive_gathers_the_full_records_already_there(pki) -> None:
    """64 KiB sent (four full records) comes back in one receive_some, not one per record."""
    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))
    data = bytes(range(256)) * 256  # 64 KiB
    await client.send_all(data)  # all of it is in the socket buffer now
    got = await server.receive_some(len(data))
    assert len(got) > RECORD_SIZE and data.startswith(got)
    while len(got) < len(data):
        got += await server.receive_some(len(data))
    assert got == data
    await server.aclose()
    await client.aclose()


async def test_close_notify_ends_the_stream_and_a_cut_is_an_error(pki) -> None:
    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))
    await client.send_all(b"last words")
    await client.aclose()
    assert await server.receive_some() == b"last words"
    assert await server.receive_some() == b""
    await server.aclose()

    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))
    client.socket.close()  # no close_notify: a truncation attacker or a crash
    with pytest.raises(trio.BrokenResourceError) as info:
        await server.receive_some()
    assert isinstance(info.value.__cause__, ssl.SSLError)
    with pytest.raises(trio.BrokenResourceError):  # and it stays broken
        await server.receive_some()
    await server.aclose()


async def test_an_end_arriving_with_the_last_data_is_not_lost(pki) -> None:
    """Data and then close_notify (or a forged record) in one TCP read, the socket left
    open: the receive after the data ends the stream (b"", every time) or raises. tlsatk:
    the receive gathering records consumed the end and dropped it, so the next one waited
    on the socket: a client that sent its last command with close_notify and waited for
    ours kept the connection open, one that sent garbage got the alert but no close."""
    server, client = await handmade_pair(pki)
    client.tls.write(b"PING")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.tls.unwrap()  # close_notify, made and not yet sent
    await client.stream.send_all(client.outgoing.read())
    got: list[bytes] = []

    async def receive() -> None:
        got.append(await server.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # (on main the second receive waits forever)
    assert got == [b"PING", b"", b""]
    await server.aclose()

    server, client = await handmade_pair(pki)
    await client.stream.send_all(client.record(b"PING") + b"\x17\x03\x03\x00\x40" + b"\x00" * 64)
    assert await server.receive_some() == b"PING"
    raised: list[BaseException] = []

    async def receive_error() -> None:
        with pytest.raises(trio.BrokenResourceError) as info:
            await server.receive_some()
        raised.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_error)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(raised) == 1 and isinstance(raised[0].__cause__, ssl.SSLError)
    await server.aclose()


def _libssl_key_update(tls: ssl.SSLObject) -> Callable[[], None]:
    """Python's ssl cannot ask for a KeyUpdate: call OpenSSL's SSL_key_update on the
    SSL* of ``tls`` (CPython's _ssl object: PyObject_HEAD, the socket, then the SSL*),
    checked by SSL_version before use."""
    libssl = ctypes.CDLL(ctypes.util.find_library("ssl"))
    libssl.SSL_version.argtypes = [ctypes.c_void_p]
    libssl.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
    ptr = ctypes.c_void_p.from_address(id(tls._sslobj) + 24).value  # type: ignore[attr-defined]
    assert libssl.SSL_version(ptr) == 0x0304  # TLS 1.3: it is the SSL*

    def request() -> None:
        assert libssl.SSL_key_update(ptr, 1) == 1  # SSL_KEY_UPDATE_REQUESTED
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()  # writes the KeyUpdate
    return request


async def test_a_peer_asking_for_answers_it_never_reads_is_cut_off(pki) -> None:
    """Each KeyUpdate request makes us answer with a KeyUpdate; a peer that requests them
    without reading made those answers wait in the stream without bound (tlsatk: 400,000
    requests grew a node by 10 MiB, counted in no output-buffer limit). Past
    MAX_UNREAD_ANSWERS waiting, the stream is broken."""
    server, client = await handmade_pair(pki)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    request = _libssl_key_update(client.tls)
    with pytest.raises(trio.BrokenResourceError) as info:
        for _ in range(40):  # 20,000 requests: about 440 KB of answers never read
            for _ in range(500):
                request()
            await client.stream.send_all(client.outgoing.read() + client.record(b"x"))
            got = b""
            while not got.endswith(b"x"):
                got += await server.receive_some()
    assert "unread" in str(info.value.__cause__)
    assert len(server._unsent) < 2 * tls_stream.MAX_UNREAD_ANSWERS
    await server.aclose()


async def test_a_record_arriving_in_pieces_is_waited_for(pki) -> None:
    """A peer that stalls in the middle of a record: the receive blocks (it neither
    returns part of a record nor spins), then returns the whole once the rest arrives."""
    server, client = await handmade_pair(pki)
    record = client.record(b"hello")
    got: list[bytes] = []

    async def receive() -> None:
        got.append(await server.receive_some())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await client.stream.send_all(record[:-3])
            await trio.testing.wait_all_tasks_blocked()  # never, if the receive spun
            assert got == []
            await client.stream.send_all(record[-3:])
    assert got == [b"hello"]
    await server.aclose()


async def test_an_oversized_record_breaks_that_stream_at_its_header(pki) -> None:
    """A record header claiming 64 KiB (TLS allows 16 KiB + 256): refused on the header,
    without waiting for (or buffering) the body."""
    server, client = await handmade_pair(pki)
    await client.stream.send_all(b"\x17\x03\x03\xff\xff" + b"\x00" * 100)
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as info:
        await server.receive_some()
    assert isinstance(info.value.__cause__, ssl.SSLError)
    await server.aclose()


async def test_a_send_cancelled_half_way_breaks_the_stream(pki) -> None:
    """A send that OpenSSL took in part cannot be taken back: cancelled, the stream is
    broken, and a later send says so even while the peer reads again (OpenSSL would
    otherwise finish the old record from the new buffer: corrupt data, no error). A
    second concurrent sender is refused rather than interleaved."""
    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))

    async def drain() -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            while await server.receive_some():
                pass

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"x" * 8 * 1024 * 1024)  # nobody reads
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await client.send_all(b"y")
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            with pytest.raises(trio.BrokenResourceError):
                await client.send_all(b"z" * 16 * 1024 * 1024)
            await client.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"more")
    await server.aclose()


async def test_a_certificate_of_another_ca_fails_both_sides_and_closes_the_sockets(
    pki,
) -> None:
    """The client checks the server's certificate against its CA: both handshakes fail
    with the SSL error as the cause, and each socket is closed (the peer sees the end)."""
    a, b = socket_pair()
    errors: dict[str, BaseException] = {}

    async def side(name: str, coro) -> None:
        try:
            await coro
        except trio.BrokenResourceError as exc:
            errors[name] = exc

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "server", handshake(a, server_context(pki["rogue"]),
                                                         server_side=True))
            nursery.start_soon(side, "client", handshake(b, client_context(pki["good"]),
                                                         server_side=False,
                                                         server_hostname="localhost"))
    assert isinstance(errors["client"].__cause__, ssl.SSLCertVerificationError)
    assert isinstance(errors["server"].__cause__, ssl.SSLError)  # the client's alert
    assert a.socket.fileno() == b.socket.fileno() == -1  # the handshake owned and closed them


async def test_a_failed_or_timed_out_handshake_closes_the_socket_at_once(pki) -> None:
    """Plain text instead of a ClientHello gets nothing but a closed socket (no alert),
    and a client that connects and never speaks is closed when the caller's deadline
    cancels the handshake. Closed by the handshake itself, while its error is still
    alive (and refers to the socket): not whenever the garbage collector gets to it."""
    a, b = socket_pair()
    await b.send_all(b"*1\r\n$4\r\nPING\r\n")
    with trio.fail_after(10):
        with pytest.raises(trio.BrokenResourceError) as failed:
            await handshake(a, server_context(pki["good"]), server_side=True)
        assert "WRONG_VERSION_NUMBER" in str(failed.value.__cause__)
        assert await b.receive_some() == b""

    a, b = socket_pair()
    with trio.fail_after(10):
        with pytest.raises(trio.TooSlowError) as timed_out:
            with trio.fail_after(0.2):
                await handshake(a, server_context(pki["good"]), server_side=True)
        assert await b.receive_some() == b""
    assert timed_out.value is not None


async def test_a_handshake_on_a_closed_connection_says_so(pki) -> None:
    a, b = socket_pair()
    await a.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await handshake(a, server_context(pki["good"]), server_side=True)
    await b.aclose()


def test_contexts_refuse_renegotiation(pki) -> None:
    good = pki["good"]
    peer = peer_tls(str(good / "node.crt"), str(good / "node.key"), str(good / "ca.crt"))
    for ctx in (server_context(good), peer.server, peer.client):
        assert ctx.options & ssl.OP_NO_RENEGOTIATION
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert peer.server.num_tickets == 0


async def test_a_renegotiation_attempt_is_refused(pki) -> None:
    """openssl s_client on TLS 1.2 asks to renegotiate ('R'): refused (no_renegotiation:
    OpenSSL 3 refuses a client's renegotiation by default, and the contexts set
    OP_NO_RENEGOTIATION whatever the library's default); the data before it arrived, and
    the stream then ends with an error rather than a second handshake."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    received = bytearray()
    ended: list[BaseException] = []
    got_first_line = trio.Event()
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
           "-CAfile", str(pki["good"] / "ca.crt"), "-servername", "localhost"]

    async def serve() -> None:
        tcp = await listeners[0].accept()
        stream = await handshake(tcp, server_context(pki["good"]), server_side=True)
        async with stream:
            try:
                while data := await stream.receive_some():
                    received.extend(data)
                    if received.endswith(b"\n"):
                        got_first_line.set()
            except trio.BrokenResourceError as exc:
                ended.append(exc)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            proc = await trio.lowlevel.open_process(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdin is not None and proc.stdout is not None
            await proc.stdin.send_all(b"before\n")
            await got_first_line.wait()
            await proc.stdin.send_all(b"R\n")
            output = bytearray()
            async with proc.stdout:
                while chunk := await proc.stdout.receive_some():
                    output += chunk
            await proc.wait()
    for listener in listeners:
        await listener.aclose()
    assert b"RENEGOTIATING" in output and b"no renegotiation" in output, output
    assert received == b"before\n"
    assert len(ended) == 1 and isinstance(ended[0].__cause__, ssl.SSLError)


async def test_records_a_direct_write_left_unsent_go_out_first_and_once(pki) -> None:
    """send_nowait (a reply or peer frame written without the writer task) on a full
    socket: False, its records wait in the stream, and the next send (even of nothing)
    sends them before its own; the peer reads every byte once, in order."""
    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))
    sent = bytearray()
    n = 0
    while True:  # nobody reads yet: the socket buffers fill up
        chunk = b"%08d" % n * 512
        n += 1
        sent += chunk
        if not client.send_nowait(chunk):
            break
    assert client.unsent
    got = bytearray()

    async def receive(n: int) -> None:
        while len(got) < n:
            got.extend(await server.receive_some())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, len(sent))
            await client.send_all(b"")  # flushes what send_nowait left
        assert got == sent and not client.unsent
        assert client.send_nowait(b"after")  # an emptied socket takes a small one at once
        await client.send_all(b" and more")
        got.clear()
        await receive(len(b"after and more"))
    assert got == b"after and more"
    await server.aclose()
    await client.aclose()


async def test_calls_that_need_not_wait_yield_only_every_yield_every(pki) -> None:
    """No scheduler pass per call when the socket is ready (as PlainStream); but a peer
    that keeps it ready still lets other tasks run."""
    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))
    ran = 0

    async def other() -> None:
        nonlocal ran
        while True:
            ran += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()  # it runs once per pass through the scheduler
        start = ran
        calls = 4 * tls_stream.YIELD_EVERY
        for _ in range(calls):
            await client.send_all(b"x")
        assert 1 <= ran - start <= calls // tls_stream.YIELD_EVERY + 1
        nursery.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()


class CountingSocket(socket.socket):
    """A socket that counts its recv calls."""

    recvs = 0

    def recv(self, *args):  # type: ignore[no-untyped-def, override]
        self.recvs += 1
        return super().recv(*args)


async def test_a_record_takes_one_recv_and_a_drained_socket_is_waited_on_first(pki) -> None:
    """One recv per arrival of records (not a header and a body read each, plus one that
    fails with EAGAIN); after a recv that drained the socket the next receive waits for
    readiness before its recv."""
    server, client = await tls_pair(server_context(pki["good"]), client_context(pki["good"]))
    sock = server.socket = CountingSocket(fileno=server.socket.detach())
    got: list[bytes] = []

    async def receive() -> None:
        got.append(await server.receive_some(100))

    before = sock.recvs
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await client.send_all(b"short")
    assert got == [b"short"]
    after_first = sock.recvs
    assert after_first - before <= 2  # (at most one EAGAIN: the socket was not known drained)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        assert sock.recvs == after_first  # waiting for readiness, no recv that would fail
        await client.send_all(b"next")
    assert got == [b"short", b"next"] and sock.recvs == after_first + 1
    await server.aclose()
    await client.aclose()
