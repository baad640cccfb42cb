"""The ops HTTP port (``--metrics-addr``): ``GET /metrics``, ``/livez``, ``/readyz``.

A tiny HTTP/1.1 server on trio streams in the node's own event loop, so ``/livez`` proves
that loop turns and scrapes read the node's state without locks. One request per
connection (``Connection: close``), which is what Prometheus, Kubernetes probes and curl
are happy with. Every input is bounded: the request head (8 KiB), the time to send it
(5 s), and the number of connections at once (32). When all 32 are taken, a new
connection closes the oldest one that has not yet sent its whole request head: otherwise
32 idle sockets from anyone who can reach the port would make ``/livez`` answer 503 and get
a healthy node restarted (attack2). Only when all 32 are being answered does a newcomer get
a 503. A reconnect flood is refused at accept, at most ADMIT_RATE newcomers a second take
the 32 slots, and probes whose head came with the connection are answered at accept
(``_answer_probe_now``), else in slots of their own (see ACCEPT_BATCH below). The
exposition text is ``prometheus_client.generate_latest`` (never hand-written).

With TLS (raftkv.server.http_auth decides when) the handshake happens inside the same
5 s window as the request head and counts as "still sending its head", so a stalled
handshake is cut at the deadline and can be evicted like a slow head. With a token,
``/metrics`` answers 401 without it (429 to an address that sent too many wrong ones);
``/livez`` and ``/readyz`` stay open to probes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from raftkv.log import event
from raftkv.node.node import Node
from raftkv.server.client_port import ACCEPT_BACKOFF, ACCEPT_CAPACITY_ERRNOS
from raftkv.server.client_tls import TLSClientStream, failure_reason
from raftkv.server.health import liveness, liveness_now, readiness
from raftkv.server.http_auth import MetricsSecurity, parse_headers
from wire.addr import parse_addr

log = logging.getLogger("raftkv.http")

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0
STALLED_AFTER = 0.5  # an answer not taken by then: its connection may be evicted
MAX_CONNECTIONS = 32
TEXT = "text/plain; charset=utf-8"
# A flood that reconnects thousands of times a second kept the kernel's accept queue full
# (4,096 here): one accept a pass of the loop, then a task that evicted another, so a
# probe's connection waited 1-2.5 s in the queue or timed out (attack_metrics_flood.py).
# Now the port accepts up to ACCEPT_BATCH connections a wake-up and looks at what each
# has sent already (``admit``): a complete ``/livez`` or ``/readyz`` head is answered
# there and then (``_answer_probe_now``), or if ``/livez`` must wait for a tick, in one of
# MAX_PROBES slots of its own (its answer is one small write: it cannot hold a slot),
# and when the port is full, a connection with nothing or half a head may evict only one
# that has had STALLED_AFTER to send its head; else it is refused at once, without a task.
ACCEPT_BATCH = 64
# New connections a second the 32 slots take (in bursts of ADMIT_BURST); past it they are
# refused at accept. A scrape every few seconds is the port's usual load; without this
# bound, a flood of complete ``GET /metrics`` accepted as fast as it came cost the node
# most of a core (~0.5 ms each) and its leadership. Probes are not counted.
ADMIT_RATE = 64.0
# Admissions at once before that rate applies: a port-full of stalled connections and a
# port-full of newcomers that evict them (a TLS port cannot look at a probe's head to give
# it a slot of its own; with a burst of one port-full, 40 stalled handshakes left no
# admission for the probe that followed them within 1/ADMIT_RATE s).
ADMIT_BURST = 2.0 * MAX_CONNECTIONS
# Seconds the kernel holds a connection that has sent nothing before handing it over
# (TCP_DEFER_ACCEPT): a probe's head then comes with its connection, so ``admit`` sees it
# (without, a probe accepted before its head arrived found a full port and got a 503),
# and a silent connection takes no slot until it sends or this passes.
DEFER_ACCEPT = 2
MAX_PROBES = 32
# Fresh /metrics renderings a second (bursts of RENDER_BURST); past it a scrape gets the
# last rendering again, at most 1/RENDER_RATE s old. A rendering costs the loop 0.5-10 ms
# of CPU on loaded shared cores; under a flood of `GET /metrics` never read, the 64
# admissions a second rendered 64 times a second, most of the leader's CPU, and its loop
# fell so far behind (ticks at half its followers' rate) that it lost its term in 7 of 11
# runs (harden10; `tests/bench/attack_metrics_flood.py`). Prometheus scrapes every 15 s or so.
RENDER_RATE = 4.0
RENDER_BURST = 8.0
PROBES = (b"/livez", b"/readyz")
FULL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" \
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"

Stream = trio.SocketStream | TLSClientStream


class HttpServer:
    def __init__(self, node: Node, security: MetricsSecurity | None = None) -> None:
        self.node = node
        self.security = security if security is not None else MetricsSecurity()
        self.active = 0
        # Connections still sending their request head, oldest first (dicts keep order):
        # the ones a newcomer may evict when the port is full, with when they began.
        self.waiting: dict[int, tuple[float, trio.CancelScope]] = {}
        self.probes = 0  # probe connections being answered (``admit``)
        self.probes_at_once = 0  # probes answered at accept (``_answer_probe_now``)
        self._tokens = ADMIT_BURST  # admissions ADMIT_RATE allows now
        self._tokens_at = trio.current_time()
        self.refused = 0  # connections closed at accept: the port full, nothing to evict
        # Connections being answered, oldest first: (when the answer began, its scope). One
        # whose client has not taken its answer in STALLED_AFTER (it does not read) may be
        # evicted for a newcomer.
        self.sending: dict[int, tuple[float, trio.CancelScope]] = {}
        self._next_id = 0
        self.evicted_stalled = 0
        self.renders = 0  # fresh /metrics renderings (``_metrics``)
        self._render_tokens = RENDER_BURST
        self._render_tokens_at = trio.current_time()
        self._rendered: bytes | None = None

    def _evict_oldest_waiting(self, since: float = 0.0) -> bool:
        """Close the oldest connection that has not sent a complete head (and has been
        sending it for ``since`` seconds at least); False if none."""
        if not self.waiting:
            return False
        oldest = next(iter(self.waiting))
        began, scope = self.waiting[oldest]
        if trio.current_time() - began < since:
            return False
        del self.waiting[oldest]
        scope.cancel()
        return True

    def _evict_for_newcomer(self) -> bool:
        """Make room: the oldest connection still sending its head, else the oldest whose
        client does not read its answer (32 of them, ``GET /metrics`` and never a read,
        held every slot for SEND_TIMEOUT, and /livez answered 503 meanwhile)."""
        if self._evict_oldest_waiting():
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
        """Serve one connection whose head was not looked at (a TLS port's, or a test's)."""
        async with stream:
            if self.active >= MAX_CONNECTIONS and not self._evict_for_newcomer():
                if self.security.context is None:  # (a TLS client could not read it)
                    await self._send(stream, 503, TEXT, b"too many connections\n")
                return
            self.active += 1
            await self._serve_counted(stream)

    def admit(self, sock: socket.socket, nursery: trio.Nursery) -> None:
        """A plain connection just accepted: start serving it, or refuse it at once (503
        and close, no task: a flood's connection must cost the loop little). Its head so
        far is read without taking it (MSG_PEEK): a probe's came with its connection."""
        try:
            head = sock.recv(MAX_HEAD + 1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            head = b""
        except OSError:
            sock.close()
            return
        complete = _complete(head)
        if complete and _target(head) in PROBES:
            if self._answer_probe_now(sock, head):
                return
            if self.probes < MAX_PROBES:
                self.probes += 1
                nursery.start_soon(self._serve_probe, _stream(sock))
                return
        if not self._admission() or not self._room(complete):
            self.refuse(sock)
            return
        self.active += 1
        nursery.start_soon(self._serve_admitted, _stream(sock))

    def _answer_probe_now(self, sock: socket.socket, head: bytes) -> bool:
        """Answer a probe whose head is in (``head``) here, at accept, and close: True if
        done. ``/readyz`` always; ``/livez`` when the ticker ticked just now, else False
        (it waits for the next tick in a probe slot). Answered at once, a probe costs the
        loop what a refusal does, and a flood of probes never fills the slots a real one
        needs (attack11: complete ``GET /readyz`` heads reconnecting as fast as answered
        held the 32 probe slots and, past them, the admissions and the 32 others: 59 of 76
        real probes got ``503 too many connections``, 62 of 85 for ``/livez``)."""
        parts = head.split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return False  # (``_answer`` says why, in a slot)
        if parts[1].split(b"?", 1)[0] == b"/readyz":
            ok, why = readiness(self.node)
        else:
            live = liveness_now(self.node)
            if live is None:
                return False
            ok, why = live
        answer = _response((200 if ok else 503), TEXT, f"{why}\n".encode(),
                           head_only=parts[0] == b"HEAD")
        self.probes_at_once += 1
        with contextlib.suppress(OSError):  # (gone, or a full buffer: it is closed anyway)
            sock.recv(len(head))  # take what was peeked: closed unread, it would reset
            sock.send(answer)
        sock.close()
        return True

    def _room(self, complete: bool) -> bool:
        """A slot for a newcomer: a free one, else one evicted for it (``complete``: its
        head is in, as ``handle`` evicts; else only a connection that has had
        STALLED_AFTER to send its head, so a flood's newcomers do not evict each other)."""
        if self.active < MAX_CONNECTIONS:
            return True
        return (self._evict_for_newcomer() if complete
                else self._evict_oldest_waiting(STALLED_AFTER))

    def admit_tls(self, sock: socket.socket, nursery: trio.Nursery) -> None:
        """A TLS connection just accepted: served as ``handle`` serves it, within the
        admission rate (its head, encrypted, cannot be looked at)."""
        if not self._admission():
            self.refuse(sock)
            return
        nursery.start_soon(self.handle, _stream(sock))

    def refuse(self, sock: socket.socket) -> None:
        """Close a connection at accept, without a task (on a plain port, a 503 first)."""
        self.refused += 1
        if self.security.context is None:
            with contextlib.suppress(OSError):
                sock.send(FULL)
        sock.close()

    def _admission(self) -> bool:
        """Take one of the admissions ADMIT_RATE allows; False if none is left."""
        now = trio.current_time()
        self._tokens = min(ADMIT_BURST, self._tokens + (now - self._tokens_at) * ADMIT_RATE)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _serve_admitted(self, stream: trio.SocketStream) -> None:
        async with stream:
            await self._serve_counted(stream)

    async def _serve_counted(self, stream: trio.SocketStream) -> None:
        try:
            await self._serve_one(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            event(log, logging.DEBUG, "http connection lost", error=exc)
        finally:
            self.active -= 1

    async def _serve_probe(self, stream: trio.SocketStream) -> None:
        """A ``/livez`` or ``/readyz`` whose whole head is in: answered outside the 32
        slots, never evicted (its head is read at once, its answer is one small write)."""
        try:
            async with stream:
                with trio.move_on_after(HEAD_TIMEOUT + SEND_TIMEOUT):
                    head = b""
                    while not _complete(head) and len(head) <= MAX_HEAD:
                        data = await stream.receive_some(MAX_HEAD + 1)
                        if not data:
                            return
                        head += data
                    await self._answer(stream, head)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            event(log, logging.DEBUG, "http connection lost", error=exc)
        finally:
            self.probes -= 1

    async def _open(self, stream: trio.SocketStream) -> tuple[Stream, bytes | None] | None:
        """The connection to answer on (TLS or plain) and the request head as received
        (maybe incomplete after the deadline; None if the peer closed or a newcomer
        evicted this connection: then nothing is answered). None if the TLS handshake
        failed or did not finish in time (logged)."""
        head = b""
        key = self._next_id
        self._next_id += 1
        scope = trio.move_on_after(HEAD_TIMEOUT)
        self.waiting[key] = (trio.current_time(), scope)
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
        refused = self._metrics_refused(stream, head) if target == b"/metrics" else None
        if refused is not None:
            status, body, headers = refused
            await self._send(stream, status, TEXT, body, head_only=method == b"HEAD",
                             headers=headers)
            return
        status, ctype, body = await self.route(target)
        await self._send(stream, status, ctype, body, head_only=method == b"HEAD")

    def _metrics_refused(self, stream: Stream,
                         head: bytes) -> tuple[int, bytes, tuple[str, ...]] | None:
        """Why ``/metrics`` is refused (status, body, headers), None if it is not: 429 to a
        source that sent too many wrong tokens (its token not even compared), 401 to a
        request without the right token."""
        security = self.security
        if security.token is None:
            return None
        addr = _peer(stream)
        host = addr.rpartition(":")[0]
        wait = security.retry_after(addr)
        if wait:
            security.guessing_refused += 1
            security.throttle.log(("guessing", host), logging.WARNING,
                                  "refusing metrics request: too many wrong tokens from this "
                                  "source", addr=addr, retry_after_s=wait)
            return (429, f"too many wrong tokens from this address; retry in {wait} s\n"
                    .encode(), (f"Retry-After: {wait}",))
        if security.authorized(parse_headers(head), addr):
            return None
        security.auth_failures += 1
        security.throttle.log(("auth", host), logging.WARNING, "metrics request unauthorized",
                              addr=addr)
        return 401, b"unauthorized: /metrics needs the token\n", security.challenge()

    async def route(self, path: bytes) -> tuple[int, str, bytes]:
        node = self.node
        if path == b"/metrics":
            return 200, CONTENT_TYPE_LATEST, self._metrics()
        if path == b"/livez":
            ok, why = await liveness(node)
            return (200 if ok else 503), TEXT, f"{why}\n".encode()
        if path == b"/readyz":
            ok, why = readiness(node)
            return (200 if ok else 503), TEXT, f"{why}\n".encode()
        if path == b"/":
            return 200, TEXT, b"raftkv: /metrics /livez /readyz\n"
        return 404, TEXT, b"not found: try /metrics /livez /readyz\n"

    def _metrics(self) -> bytes:
        """The exposition text: a fresh rendering within RENDER_RATE, else the last one."""
        now = trio.current_time()
        self._render_tokens = min(RENDER_BURST, self._render_tokens
                                  + (now - self._render_tokens_at) * RENDER_RATE)
        self._render_tokens_at = now
        if self._render_tokens < 1 and self._rendered is not None:
            return self._rendered
        self._render_tokens -= 1
        self.renders += 1
        self._rendered = generate_latest(self.node.metrics.registry)
        return self._rendered

    async def _send(self, stream: Stream, status: int, ctype: str, body: bytes,
                    head_only: bool = False, headers: tuple[str, ...] = ()) -> None:
        answer = _response(status, ctype, body, head_only, headers)
        key = self._next_id
        self._next_id += 1
        scope = trio.move_on_after(SEND_TIMEOUT)
        self.sending[key] = (trio.current_time(), scope)
        try:
            with scope, contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.send_all(answer)
        finally:
            self.sending.pop(key, None)


def _response(status: int, ctype: str, body: bytes, head_only: bool = False,
              headers: tuple[str, ...] = ()) -> bytes:
    """A whole HTTP/1.1 answer (its head alone for HEAD), ``Connection: close``."""
    reason = REASONS.get(status, "")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()
    return head if head_only else head + body


def _complete(head: bytes) -> bool:
    """True once the request head's blank line has arrived."""
    return b"\r\n\r\n" in head or b"\n\n" in head


def _target(head: bytes) -> bytes:
    """The path a GET or HEAD request line asks for (b"" for anything else)."""
    parts = head.split(b"\n", 1)[0].split()
    if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
        return b""
    return parts[1].split(b"?", 1)[0]


def _stream(sock: socket.socket) -> trio.SocketStream:
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


def _peer(stream: Stream) -> str:
    """The remote address as HOST:PORT, for the log."""
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, ValueError, TypeError):
        return "?"
    return f"{host}:{port}"


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed",
           408: "Request Timeout", 429: "Too Many Requests",
           431: "Request Header Fields Too Large",
           503: "Service Unavailable"}


async def serve_http(node: Node, security: MetricsSecurity | None = None, *,
                     task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``--metrics-addr``; ``task_status`` gets the bound port."""
    host, port = parse_addr(node.settings.metrics_addr)
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = HttpServer(node, security)
    async with trio.open_nursery() as nursery:
        task_status.started(listeners[0].socket.getsockname()[1])
        for listener in listeners:
            nursery.start_soon(_accept_loop, server, listener, nursery)


async def _accept_loop(server: HttpServer, listener: trio.SocketListener,
                       nursery: trio.Nursery) -> None:
    """Accept up to ACCEPT_BATCH connections a wake-up (trio's listener takes one a pass
    of the loop); a plain port's through ``admit``, a TLS port's each in its own task.
    Out of descriptors or buffers: pause, doubling, as the client port does."""
    trio_sock = listener.socket
    sock = socket.socket(trio_sock.family, trio_sock.type, trio_sock.proto,
                         fileno=trio_sock.detach())
    sock.setblocking(False)
    if hasattr(socket, "TCP_DEFER_ACCEPT"):  # (Linux) hand over a connection once it sent
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)
    first, longest = ACCEPT_BACKOFF
    delay = first
    try:
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(ACCEPT_BATCH):
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                            continue  # (that connection went away: accept the next)
                        raise
                    server.security.throttle.log(
                        "accept", logging.WARNING, "metrics port accept failed: backing off",
                        error=errno.errorcode.get(exc.errno or 0, exc.errno), delay_s=delay)
                    await trio.sleep(delay)
                    delay = min(longest, delay * 2)
                    break
                delay = first
                conn.setblocking(False)  # (accept's socket blocks, whatever the listener)
                if server.security.context is None:
                    server.admit(conn, nursery)
                else:
                    server.admit_tls(conn, nursery)
    finally:
        trio.lowlevel.notify_closing(sock)
        sock.close()
