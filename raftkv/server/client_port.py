"""The client port: RESP2/RESP3/inline on one TCP port, pipelined and answered in order.

Each connection is two tasks in its own nursery: a reader that parses commands and turns
each into a ``Pending`` (without waiting for earlier ones, so a pipeline of writes is
proposed at once and shares fsyncs), and a writer that awaits the Pendings in order and
coalesces every reply already available into one ``send_all``. The channel between them is
bounded, so a client that pipelines without reading is throttled instead of growing memory.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs
import trio

from raftkv.log import event
from raftkv.node.pending import Pending
from raftkv.node.settings import parse_addr
from raftkv.server.commands import execute, is_write
from raftkv.server.transaction import Transaction
from wire.errors import ProtocolError
from wire.reply import ErrorReply
from wire.resp import CommandParser, encode_reply

if TYPE_CHECKING:
    from raftkv.node.node import Node

log = logging.getLogger("raftkv.server")

PIPELINE_WINDOW = 1024  # replies owed per connection before the reader stops reading
READ_CHUNK = 64 * 1024
MAX_CLIENTS_REACHED = b"-ERR max number of clients reached\r\n"

_connection_ids = itertools.count(1)


@attrs.define
class Connection:
    """Per-connection state that commands may change (HELLO, CLIENT SETNAME, QUIT)."""

    id: int
    addr: str
    proto: int = 2
    name: str = ""
    lib_name: str = ""
    lib_ver: str = ""
    closing: bool = False
    tx: Transaction = attrs.Factory(Transaction)  # MULTI/WATCH state (transaction.py)


@attrs.frozen
class Slot:
    """A reply owed to the client, encoded with the protocol in force when it was asked."""

    pending: Pending
    proto: int
    close_after: bool = False


class ProgramOrder:
    """Per-connection order between writes and reads, as a Redis user expects.

    Consecutive writes are proposed at once (the log orders them) and consecutive reads
    share read-index rounds; but a read after a write waits until the write is answered
    (so it sees it), and a write after a read waits for the read (so the read cannot see
    a later command's effect). Only the switch between the two costs a round trip.
    """

    __slots__ = ("kind", "outstanding")

    def __init__(self) -> None:
        self.kind: bool | None = None
        self.outstanding: deque[Pending] = deque()

    async def before(self, write: bool | None) -> None:
        if write is None:
            return
        if write is not self.kind:
            for pending in self.outstanding:
                await pending.wait()
            self.outstanding.clear()
            self.kind = write

    def track(self, pending: Pending) -> None:
        if self.kind is not None and not pending.done:
            outstanding = self.outstanding
            while outstanding and outstanding[0].done:  # answers come back mostly in order
                outstanding.popleft()
            outstanding.append(pending)


class ClientServer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.connections: dict[int, Connection] = {}

    async def handle(self, stream: trio.SocketStream) -> None:
        settings = self.node.settings
        if len(self.connections) >= settings.max_clients:
            with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError, OSError):
                await stream.send_all(MAX_CLIENTS_REACHED)
            await stream.aclose()
            return
        try:
            peer = stream.socket.getpeername()
            addr = f"{peer[0]}:{peer[1]}"
            _enable_keepalive(stream.socket)
        except OSError:
            addr = "?"
        conn = Connection(next(_connection_ids), addr)
        self.connections[conn.id] = conn
        try:
            async with stream, trio.open_nursery() as nursery:
                send, recv = trio.open_memory_channel[Slot](PIPELINE_WINDOW)
                nursery.start_soon(self._writer, stream, recv, nursery.cancel_scope)
                await self._reader(stream, conn, send)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            # A client that resets or vanishes (trio wraps it in an ExceptionGroup).
            event(log, logging.DEBUG, "client connection lost", conn=conn.id,
                  error=group.exceptions[0])
        except* Exception:
            # A bug in serving one connection must not take the node down with it.
            log.exception("client connection failed", extra={"fields": {"conn": conn.id}})
        finally:
            del self.connections[conn.id]

    async def _reader(
        self, stream: trio.SocketStream, conn: Connection, send: trio.MemorySendChannel[Slot]
    ) -> None:
        settings = self.node.settings
        parser = CommandParser(max_bulk_len=settings.max_bulk_len)
        idle = settings.idle_timeout or float("inf")
        order = ProgramOrder()
        async with send:
            while not conn.closing:
                with trio.move_on_after(idle) as idle_scope:
                    data = await stream.receive_some(READ_CHUNK)
                if idle_scope.cancelled_caught or not data:
                    return
                try:
                    parser.feed(data)
                    while (args := parser.next_command()) is not None:
                        await order.before(is_write(args))
                        pending = execute(self.node, conn, args)
                        self.node.metrics.track(args[0], pending)
                        order.track(pending)
                        await send.send(Slot(pending, conn.proto, conn.closing))
                        if conn.closing:
                            return
                except ProtocolError as exc:
                    # Redis answers a protocol error and closes the connection.
                    event(log, logging.DEBUG, "client protocol error", conn=conn.id, error=exc)
                    await send.send(Slot(Pending.of(ErrorReply(f"ERR {exc}")), conn.proto, True))
                    conn.closing = True
                    return

    async def _writer(
        self,
        stream: trio.SocketStream,
        recv: trio.MemoryReceiveChannel[Slot],
        scope: trio.CancelScope,
    ) -> None:
        out: list[bytes] = []
        async with recv:
            async for slot in recv:
                if not slot.pending.done:
                    if out:  # send what is answered before waiting on a slow reply
                        await stream.send_all(b"".join(out))
                        out.clear()
                    await slot.pending.wait()
                out.append(encode_reply(slot.pending.value, slot.proto))
                if slot.close_after:
                    break
                if recv.statistics().current_buffer_used == 0:
                    await stream.send_all(b"".join(out))
                    out.clear()
            if out:
                await stream.send_all(b"".join(out))
        scope.cancel()


def _enable_keepalive(sock: trio.socket.SocketType) -> None:
    """Find half-open connections (a client host that vanished) in about two minutes, as
    Redis's tcp-keepalive does; idle but live clients are never closed unless --idle-timeout."""
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(trio.socket, name):
            sock.setsockopt(trio.socket.IPPROTO_TCP, getattr(trio.socket, name), value)


async def serve_clients(node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    host, port = parse_addr(node.settings.client_addr)
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = ClientServer(node)
    node.client_server = server
    async with trio.open_nursery() as nursery:
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(server.handle, listeners, handler_nursery=nursery)
