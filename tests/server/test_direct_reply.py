"""A reply answered at once is sent by the reader that parsed it (client_port.DirectReply).

Handing every reply to the connection's writer task cost a task switch per round trip;
these tests pin down (on plain-text and TLS ports) that an unpipelined client's PINGs no
longer wake the writer, that
replies stay in order when a large reply (sent by the writer) comes between small ones,
and what ``try_send`` does with a socket that takes all, part or none of a reply."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

from chaos.cluster import free_ports
from raftkv import certs
from raftkv.kv.sliced import KeysJob, SlicedRead
from raftkv.node.tls_stream import TLSStream
from raftkv.node.tls_stream import handshake as tls_handshake
from raftkv.server.client_port import DIRECT_ENCODED, SEND_CHUNK, DirectReply
from raftkv.server.client_tls import client_tls_context
from raftkv.testing import one_node_leader
from wire.reply import Encoded, ErrorReply, SimpleString
from wire.resp import encode_command, encode_reply


class WriterSteps(trio.abc.Instrument):
    """Counts the steps of the client port's writer tasks."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("._writer"):
            self.steps += 1


@pytest.fixture(params=["plain", "tls"])
async def client_port(request: pytest.FixtureRequest,
                      tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A one-node cluster's client port, plain text or TLS (``open_client`` connects)."""
    peer, client = free_ports(2)
    tls: dict[str, str] = {}
    if request.param == "tls":
        certs.create(tmp_path / "pki")
        tls = {"tls_cert": str(tmp_path / "pki" / "node.crt"),
               "tls_key": str(tmp_path / "pki" / "node.key")}
        _client_contexts[client] = ssl.create_default_context(
            cafile=str(tmp_path / "pki" / "ca.crt"))
    try:
        async with one_node_leader(tmp_path / "data", peer, client, fsync="never", **tls):
            yield "127.0.0.1", client
    finally:
        _client_contexts.pop(client, None)


_client_contexts: dict[int, ssl.SSLContext] = {}  # port -> how to connect to a TLS one


async def open_client(host: str, port: int) -> trio.abc.HalfCloseableStream:
    """A connection to the fixture's port: TCP, or TLS (verified against the test CA)."""
    tcp = await trio.open_tcp_stream(host, port)
    ctx = _client_contexts.get(port)
    if ctx is None:
        return tcp
    tls = trio.SSLStream(tcp, ctx, server_hostname="localhost")
    await tls.do_handshake()
    return _NoHalfClose(tls)


class _NoHalfClose(trio.abc.HalfCloseableStream):
    """A client TLS stream whose ``send_eof`` does nothing (TLS has no half-close)."""

    def __init__(self, tls: trio.SSLStream[trio.SocketStream]) -> None:
        self.tls = tls

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.tls.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.tls.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.tls)


async def read_replies(stream: trio.abc.ReceiveStream, n: int) -> list[object]:
    """The next ``n`` replies: simple lines (status, error, integer) and bulk strings."""
    buf = b""
    out: list[object] = []
    while len(out) < n:
        with trio.fail_after(20):
            data = await stream.receive_some(1 << 20)
        assert data, "connection closed"
        buf += data
        while True:
            end = buf.find(b"\r\n")
            if end < 0:
                break
            if buf[:1] == b"$":
                size = int(buf[1:end])
                if len(buf) < end + 2 + size + 2:
                    break
                out.append(buf[end + 2:end + 2 + size])
                buf = buf[end + 2 + size + 2:]
            else:
                out.append(buf[:end])
                buf = buf[end + 2:]
    assert len(out) == n and not buf
    return out


async def test_unpipelined_pings_do_not_wake_the_writer(client_port: tuple[str, int]) -> None:
    stream = await open_client(*client_port)
    async with stream:
        await stream.send_all(encode_command(b"PING"))
        assert await read_replies(stream, 1) == [b"+PONG"]
        steps = WriterSteps()
        trio.lowlevel.add_instrument(steps)
        try:
            for i in range(50):
                await stream.send_all(encode_command(b"ECHO", b"%d" % i))
                assert await read_replies(stream, 1) == [b"%d" % i]
        finally:
            trio.lowlevel.remove_instrument(steps)
        # Through the writer, each reply took at least one writer step (50 or more).
        assert steps.steps < 5, steps.steps


async def test_replies_stay_in_order_around_a_large_one(client_port: tuple[str, int]) -> None:
    big = b"x" * (4 * SEND_CHUNK)  # sent by the writer, in pieces
    stream = await open_client(*client_port)
    async with stream:
        await stream.send_all(encode_command(b"SET", b"big", big))
        assert await read_replies(stream, 1) == [b"+OK"]
        for _ in range(3):
            pipeline = [encode_command(b"ECHO", b"a"), encode_command(b"GET", b"big"),
                        encode_command(b"ECHO", b"b"), encode_command(b"PING"),
                        encode_command(b"GET", b"big"), encode_command(b"ECHO", b"c")]
            await stream.send_all(b"".join(pipeline))
            assert await read_replies(stream, 6) == [b"a", big, b"b", b"+PONG", big, b"c"]


def test_try_send_whole_part_and_none() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        direct = DirectReply(a)
        assert direct.try_send(b"hello", 2) == (True, None)
        assert b.recv(100) == encode_reply(b"hello", 2)
        # Too large for one piece, or a read in slices: left to the writer, not tried.
        assert direct.try_send(b"x" * (SEND_CHUNK + 1), 2) == (False, None)
        assert direct.try_send(SlicedRead.__new__(SlicedRead), 2) == (False, None)
        assert direct.try_send(KeysJob.__new__(KeysJob), 2) == (False, None)  # (subclasses)
        # A status or error text as large (a script's {ok=...}): left to the writer, which
        # weighs it, not handed whole to the socket or a TLS stream (attack18).
        assert direct.try_send(SimpleString("s" * SEND_CHUNK), 2) == (False, None)
        assert direct.try_send(ErrorReply("ERR " + "e" * SEND_CHUNK), 2) == (False, None)
        assert direct.try_send(SimpleString("OK"), 2) == (True, None)
        assert b.recv(100) == b"+OK\r\n"
        # A reply already encoded and answered later (a watcher's XREAD reply, often over
        # 64 KB on a busy node) is sent at once up to DIRECT_ENCODED: no writer-task hop a
        # round trip. (Answered at once, SEND_CHUNK still: its reader's task sends it.)
        feed_reply = Encoded(b"e" * (2 * SEND_CHUNK))
        assert direct.try_send(feed_reply, 2) == (False, None)
        assert direct.try_send(feed_reply, 2, DIRECT_ENCODED) == (True, None)
        got = b""
        while len(got) < len(feed_reply.data):
            got += b.recv(1 << 20)
        assert got == feed_reply.data
        assert direct.try_send(Encoded(b"e" * (DIRECT_ENCODED + 1)), 2,
                               DIRECT_ENCODED) == (False, None)
        # A full socket: the whole encoding (or what is left of it) is owed.
        sent_any = False
        rests = []
        while True:
            sent, rest = direct.try_send(b"y" * 1000, 2)
            if sent:
                sent_any = True
                continue
            rests.append(rest)
            break
        assert sent_any
        whole = encode_reply(b"y" * 1000, 2)
        assert rests[0] is not None and whole.endswith(rests[0]) and rests[0]
        b.close()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(1000):  # the peer is gone: broken, as the writer would raise
                direct.try_send(b"z", 2)


async def test_try_send_on_tls_leaves_unsent_records_in_the_stream(tmp_path: Path) -> None:
    """On TLS the stream encrypts at once: a full socket leaves records in it (never the
    plaintext, which would be encrypted twice), and the rest owed is empty: the writer's
    next send sends them, first."""
    certs.create(tmp_path)
    x, y = socket.socketpair()
    a = trio.SocketStream(trio.socket.from_stdlib_socket(x))
    b = trio.SocketStream(trio.socket.from_stdlib_socket(y))
    done: dict[str, trio.abc.Stream] = {}

    async def serve() -> None:
        ctx = client_tls_context(str(tmp_path / "node.crt"), str(tmp_path / "node.key"))
        done["server"] = await tls_handshake(a, ctx, server_side=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        client = trio.SSLStream(b, ssl.create_default_context(cafile=str(tmp_path / "ca.crt")),
                                server_hostname="localhost")
        await client.do_handshake()
    server = done["server"]
    assert isinstance(server, TLSStream)
    direct = DirectReply(None, server)
    assert direct.try_send(b"hello", 2) == (True, None)
    assert await client.receive_some() == encode_reply(b"hello", 2)
    assert direct.try_send(b"x" * (SEND_CHUNK + 1), 2) == (False, None)
    sent = 0
    while (result := direct.try_send(b"y" * 1000, 2)) == (True, None):
        sent += 1
    assert result == (False, b"") and server.unsent
    got = bytearray()
    whole = encode_reply(b"y" * 1000, 2) * (sent + 1) + encode_reply(b"end", 2)

    async def drain() -> None:
        while len(got) < len(whole):
            got.extend(await client.receive_some())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await server.send_all(encode_reply(b"end", 2))  # the writer's next send
    assert got == whole
    await server.aclose()
    await trio.aclose_forcefully(client)


async def test_a_read_index_get_is_sent_without_the_writer(
        client_port: tuple[str, int]) -> None:
    """A linearizable GET is answered later (a ReadIndex round): its reply is sent from
    the task that answers it, the writer is not woken for it either."""
    stream = await open_client(*client_port)
    async with stream:
        await stream.send_all(encode_command(b"SET", b"k", b"v"))
        assert await read_replies(stream, 1) == [b"+OK"]
        steps = WriterSteps()
        trio.lowlevel.add_instrument(steps)
        try:
            for _ in range(30):
                await stream.send_all(encode_command(b"GET", b"k"))
                assert await read_replies(stream, 1) == [b"v"]
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.steps < 5, steps.steps


async def test_commands_behind_an_unanswered_get_wait_for_it(
        client_port: tuple[str, int]) -> None:
    """GET then, before it is answered, pipelined PINGs and ECHOs (sent by the writer):
    the GET's reply still comes first, and a client that half-closes right after its GET
    still gets the reply."""
    stream = await open_client(*client_port)
    async with stream:
        await stream.send_all(encode_command(b"SET", b"k", b"v"))
        assert await read_replies(stream, 1) == [b"+OK"]
        for i in range(20):
            await stream.send_all(encode_command(b"GET", b"k"))
            if i % 2:  # half the time the reader has taken the GET before the rest comes
                with trio.fail_after(10):
                    await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(encode_command(b"PING") + encode_command(b"ECHO", b"e")
                                  + encode_command(b"GET", b"k"))
            assert await read_replies(stream, 4) == [b"v", b"+PONG", b"e", b"v"]
    value = b"v"
    for i in range(10):  # GET, SET (answered once committed: after the reader ended)...
        command, expected = ((b"SET", b"k", b"%d" % i), b"+OK") if i % 2 else ((b"GET", b"k"),
                                                                                 value)
        stream = await open_client(*client_port)
        async with stream:
            await stream.send_all(encode_command(*command))
            await stream.send_eof()
            assert await read_replies(stream, 1) == [expected]
        value = b"%d" % i


async def test_replies_computed_in_slices_go_through_the_writer(
        client_port: tuple[str, int]) -> None:
    """KEYS, SCAN and the feed's XRANGE answer a job run a slice at a time (SlicedRead
    subclasses): the writer runs it; sent directly, it could not be encoded at all."""
    stream = await open_client(*client_port)
    async with stream:
        await stream.send_all(encode_command(b"SET", b"k", b"v"))
        assert await read_replies(stream, 1) == [b"+OK"]
        await stream.send_all(encode_command(b"KEYS", b"*"))
        assert await read_replies(stream, 2) == [b"*1", b"k"]
        await stream.send_all(encode_command(b"XRANGE", b"__raftkv:changes", b"-", b"+",
                                             b"COUNT", b"1"))
        data = b""
        with trio.fail_after(10):
            while not data.endswith(b"$1\r\nv\r\n"):
                data += await stream.receive_some(65536)
        assert data.startswith(b"*1\r\n*2\r\n") and b"$2\r\nop\r\n$3\r\nset\r\n" in data
        await stream.send_all(encode_command(b"PING"))
        assert await read_replies(stream, 1) == [b"+PONG"]
