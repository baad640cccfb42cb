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
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from raftkv.log import event
from raftkv.node.node import Node
from raftkv.server.health import liveness, readiness
from wire.addr import parse_addr

log = logging.getLogger("raftkv.http")

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0
MAX_CONNECTIONS = 32
TEXT = "text/plain; charset=utf-8"


class HttpServer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.active = 0
        # Connections still sending their request head, oldest first (dicts keep order):
        # the ones a newcomer may evict when the port is full.
        self.waiting: dict[int, trio.CancelScope] = {}
        self._next_id = 0

    def _evict_oldest_waiting(self) -> bool:
        """Close the oldest connection that has not sent a complete head; False if none."""
        if not self.waiting:
            return False
        oldest = next(iter(self.waiting))
        self.waiting.pop(oldest).cancel()
        return True

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self.active >= MAX_CONNECTIONS and not self._evict_oldest_waiting():
                await self._send(stream, 503, TEXT, b"too many connections\n", head_only=False)
                return
            self.active += 1
            try:
                await self._serve_one(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                event(log, logging.DEBUG, "http connection lost", error=exc)
            finally:
                self.active -= 1

    async def _read_head(self, stream: trio.SocketStream) -> bytes | None:
        """The request head as received (maybe incomplete after the deadline), or None if
        the peer closed or a newcomer evicted this connection (then nothing is answered)."""
        head = b""
        key = self._next_id
        self._next_id += 1
        scope = trio.move_on_after(HEAD_TIMEOUT)
        self.waiting[key] = scope
        try:
            with scope:
                while not _complete(head) and len(head) <= MAX_HEAD:
                    data = await stream.receive_some(4096)
                    if not data:
                        return None
                    head += data
        finally:
            evicted = self.waiting.pop(key, None) is None
        if evicted and not _complete(head):  # (a head that made it in time is answered)
            return None
        return head

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        head = await self._read_head(stream)
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
            await self._send(stream, 405, TEXT, b"only GET and HEAD\n", allow=True)
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

    async def _send(self, stream: trio.SocketStream, status: int, ctype: str, body: bytes,
                    head_only: bool = False, allow: bool = False) -> None:
        reason = REASONS.get(status, "")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                + ("Allow: GET, HEAD\r\n" if allow else "") + "\r\n").encode()
        with trio.move_on_after(SEND_TIMEOUT), contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.send_all(head if head_only else head + body)


def _complete(head: bytes) -> bool:
    """True once the request head's blank line has arrived."""
    return b"\r\n\r\n" in head or b"\n\n" in head


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 431: "Request Header Fields Too Large",
           503: "Service Unavailable"}


async def serve_http(node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``--metrics-addr``; ``task_status`` gets the bound port."""
    host, port = parse_addr(node.settings.metrics_addr)
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = HttpServer(node)
    async with trio.open_nursery() as nursery:
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(server.handle, listeners, handler_nursery=nursery)
