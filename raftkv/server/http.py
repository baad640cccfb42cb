"""The ops HTTP port (``--metrics-addr``): ``GET /metrics``, ``/livez``, ``/readyz``.

A tiny HTTP/1.1 server on trio streams in the node's own event loop, so ``/livez`` proves
that loop turns and scrapes read the node's state without locks. One request per
connection (``Connection: close``), which is what Prometheus, Kubernetes probes and curl
are happy with. Every input is bounded: the request head (8 KiB), the time to send it
(5 s), and the number of connections at once (32). When all 32 are taken, a new
connection closes the oldest one that has not yet sent its whole request head: otherwise
32 idle sockets from anyone who can reach the port would make ``/livez`` answer 503 and get
a healthy node restarted (attack2). Only when all 32 are being answered does a newcomer get
a 503. The exposition text is ``prometheus_client.generate_latest`` (never hand-written).

With TLS (raftkv.server.http_auth decides when) the handshake happens inside the same
5 s window as the request head and counts as "still sending its head", so a stalled
handshake is cut at the deadline and can be evicted like a slow head. With a token,
``/metrics`` answers 401 without it; ``/livez`` and ``/readyz`` stay open to probes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from raftkv.log import event
from raftkv.node.node import Node
from raftkv.server.client_tls import TLSClientStream, failure_reason
from raftkv.server.health import liveness, readiness
from raftkv.server.http_auth import MetricsSecurity, parse_headers
from wire.addr import parse_addr

log = logging.getLogger("raftkv.http")

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0
STALLED_AFTER = 0.5  # an answer not taken by then: its connection may be evicted
MAX_CONNECTIONS = 32
TEXT = "text/plain; charset=utf-8"

Stream = trio.SocketStream | TLSClientStream


class HttpServer:
    def __init__(self, node: Node, security: MetricsSecurity | None = None) -> None:
        self.node = node
        self.security = security if security is not None else MetricsSecurity()
        self.active = 0
        # Connections still sending their request head, oldest first (dicts keep order):
        # the ones a newcomer may evict when the port is full.
        self.waiting: dict[int, trio.CancelScope] = {}
        # Connections being answered, oldest first: (when the answer began, its scope). One
        # whose client has not taken its answer in STALLED_AFTER (it does not read) may be
        # evicted for a newcomer.
        self.sending: dict[int, tuple[float, trio.CancelScope]] = {}
        self._next_id = 0
        self.evicted_stalled = 0

    def _evict_oldest(self, connections: dict[int, trio.CancelScope]) -> bool:
        """Close the oldest of ``connections``; False if there is none."""
        if not connections:
            return False
        oldest = next(iter(connections))
        connections.pop(oldest).cancel()
        return True

    def _evict_oldest_waiting(self) -> bool:
        """Close the oldest connection that has not sent a complete head; False if none."""
        return self._evict_oldest(self.waiting)

    def _evict_for_newcomer(self) -> bool:
        """Make room: the oldest connection still sending its head, else the oldest whose
        client does not read its answer (32 of them, ``GET /metrics`` and never a read,
        held every slot for SEND_TIMEOUT, and /livez answered 503 meanwhile)."""
        if self._evict_oldest(self.waiting):
            return True
        if self.sending:
            oldest = next(iter(self.sending))
            began, scope = self.sending[oldest]
            if trio.current_time() - began >= STALLED_AFTER:
                del self.sending[oldest]
                scope.cancel()
                self.evicted_stalled += 1
                return True
        return False

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self.active >= MAX_CONNECTIONS and not self._evict_for_newcomer():
                if self.security.context is None:  # (a TLS client could not read it)
                    await self._send(stream, 503, TEXT, b"too many connections\n")
                return
            self.active += 1
            try:
                await self._serve_one(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                event(log, logging.DEBUG, "http connection lost", error=exc)
            finally:
                self.active -= 1

    async def _open(self, stream: trio.SocketStream) -> tuple[Stream, bytes | None] | None:
        """The connection to answer on (TLS or plain) and the request head as received
        (maybe incomplete after the deadline; None if the peer closed or a newcomer
        evicted this connection: then nothing is answered). None if the TLS handshake
        failed or did not finish in time (logged)."""
        head = b""
        key = self._next_id
        self._next_id += 1
        scope = trio.move_on_after(HEAD_TIMEOUT)
        self.waiting[key] = scope
        conn: Stream | None = stream if self.security.context is None else None
        try:
            with scope:
                if conn is None:
                    conn = await self._handshake(stream)
                    if conn is None:
                        return None
                while not _complete(head) and len(head) <= MAX_HEAD:
                    data = await conn.receive_some(4096)
                    if not data:
                        return conn, None
                    head += data
        finally:
            evicted = self.waiting.pop(key, None) is None
        if conn is None:  # the deadline or an eviction cut the handshake
            self._tls_failed(stream, None, "evicted for a newcomer (port full)" if evicted
                             else None)
            return None
        if evicted and not _complete(head):  # (a head that made it in time is answered)
            return conn, None
        return conn, head

    async def _handshake(self, stream: trio.SocketStream) -> TLSClientStream | None:
        tls = trio.SSLStream(stream, self.security.context, server_side=True)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._tls_failed(stream, exc)
            return None
        return TLSClientStream(tls)

    def _tls_failed(self, stream: trio.SocketStream, exc: BaseException | None,
                    reason: str | None = None) -> None:
        self.security.tls_failures += 1
        addr, reason = _peer(stream), reason or failure_reason(exc)
        self.security.throttle.log(("tls", addr.rpartition(":")[0], reason), logging.WARNING,
                                   "metrics port TLS handshake failed", addr=addr,
                                   reason=reason)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        opened = await self._open(stream)
        if opened is None:
            return
        conn, head = opened
        if isinstance(conn, TLSClientStream):
            async with conn:  # close_notify, with its own deadline
                await self._answer(conn, head)
        else:
            await self._answer(conn, head)

    async def _answer(self, stream: Stream, head: bytes | None) -> None:
        if head is None:
            return
        if not _complete(head):
            if len(head) > MAX_HEAD:
                await self._send(stream, 431, TEXT, b"request head too large\n")
            else:
                await self._send(stream, 408, TEXT, b"request timeout\n")
            return
        line = head.split(b"\n", 1)[0].strip()
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            await self._send(stream, 400, TEXT, b"bad request\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            await self._send(stream, 405, TEXT, b"only GET and HEAD\n",
                             headers=("Allow: GET, HEAD",))
            return
        if target == b"/metrics" and not self.security.authorized(parse_headers(head)):
            self.security.auth_failures += 1
            addr = _peer(stream)
            self.security.throttle.log(("auth", addr.rpartition(":")[0]), logging.WARNING,
                                       "metrics request unauthorized", addr=addr)
            await self._send(stream, 401, TEXT, b"unauthorized: /metrics needs the token\n",
                             head_only=method == b"HEAD", headers=self.security.challenge())
            return
        status, ctype, body = await self.route(target)
        await self._send(stream, status, ctype, body, head_only=method == b"HEAD")

    async def route(self, path: bytes) -> tuple[int, str, bytes]:
        node = self.node
        if path == b"/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(node.metrics.registry)
        if path == b"/livez":
            ok, why = await liveness(node)
            return (200 if ok else 503), TEXT, f"{why}\n".encode()
        if path == b"/readyz":
            ok, why = readiness(node)
            return (200 if ok else 503), TEXT, f"{why}\n".encode()
        if path == b"/":
            return 200, TEXT, b"raftkv: /metrics /livez /readyz\n"
        return 404, TEXT, b"not found: try /metrics /livez /readyz\n"

    async def _send(self, stream: Stream, status: int, ctype: str, body: bytes,
                    head_only: bool = False, headers: tuple[str, ...] = ()) -> None:
        reason = REASONS.get(status, "")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()
        key = self._next_id
        self._next_id += 1
        scope = trio.move_on_after(SEND_TIMEOUT)
        self.sending[key] = (trio.current_time(), scope)
        try:
            with scope, contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.send_all(head if head_only else head + body)
        finally:
            self.sending.pop(key, None)


def _complete(head: bytes) -> bool:
    """True once the request head's blank line has arrived."""
    return b"\r\n\r\n" in head or b"\n\n" in head


def _peer(stream: Stream) -> str:
    """The remote address as HOST:PORT, for the log."""
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, ValueError, TypeError):
        return "?"
    return f"{host}:{port}"


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed",
           408: "Request Timeout", 431: "Request Header Fields Too Large",
           503: "Service Unavailable"}


async def serve_http(node: Node, security: MetricsSecurity | None = None, *,
                     task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``--metrics-addr``; ``task_status`` gets the bound port."""
    host, port = parse_addr(node.settings.metrics_addr)
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = HttpServer(node, security)
    async with trio.open_nursery() as nursery:
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(server.handle, listeners, handler_nursery=nursery)
