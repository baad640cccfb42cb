"""One TCP connection to one node's client port, speaking RESP2 through wire's codecs."""

from __future__ import annotations

import os
import select
from collections.abc import Iterable, Sequence
from typing import Any

import trio

from client.security import HandshakeFailed, Security, check_auth_reply, raw_socket
from wire.addr import parse_addr
from wire.errors import ProtocolError
from wire.resp import encode_command
from wire.resp_reply import NEED_MORE, ReplyParser

DEFAULT_ENDPOINTS = ("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")

# The most bytes one reply may take, whatever its shape: Redis's bound for one bulk
# string (proto-max-bulk-len). The parser bounds each bulk; without a bound on the whole,
# a hostile server's array of big bulks took all the memory an attempt's time allows
# (attack5). A module setting, read when a connection opens.
MAX_REPLY_BYTES = 512 * 1024 * 1024

# What a broken connection raises while sending or receiving.
TRANSPORT_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    ProtocolError, EOFError)


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> ``(host, port)``; ValueError if malformed."""
    host, port = parse_addr(text.strip())
    if port == 0:  # a server may bind port 0; nobody can connect to it
        raise ValueError(f"endpoint must be HOST:PORT with a port > 0, got {text!r}")
    return host, port


def parse_endpoints(endpoints: str | Iterable[str] | None) -> list[str]:
    """A comma-separated string or a list of ``host:port`` -> checked, de-duplicated list."""
    if endpoints is None:
        return list(DEFAULT_ENDPOINTS)
    items: Sequence[str] = endpoints.split(",") if isinstance(endpoints, str) else list(
        endpoints
    )
    out: list[str] = []
    for item in items:
        if not item.strip():
            continue
        parse_endpoint(item)
        if item.strip() not in out:
            out.append(item.strip())
    if not out:
        raise ValueError("no endpoints given")
    return out


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed connect ("Connection refused"), not trio's summary."""
    cause = exc.__cause__
    inner = getattr(cause, "exceptions", None) or ([cause] if cause else [])
    for e in [exc, *inner]:
        if isinstance(e, OSError) and e.errno:
            return os.strerror(e.errno)  # trio's strerror repeats the address
    return str(exc)


class Connection:
    """A socket stream plus its reply parser; one request/reply exchange at a time."""

    def __init__(self, addr: str, stream: Any) -> None:
        self.addr = addr
        self.stream = stream
        self.max_reply_bytes = MAX_REPLY_BYTES
        # RESP2: this client never sends HELLO 3, so a RESP3 type is a protocol error.
        self.parser = ReplyParser(max_bulk_len=MAX_REPLY_BYTES, resp2=True)

    @classmethod
    async def open(cls, addr: str, security: Security | None = None) -> Connection:
        host, port = parse_endpoint(addr)
        return await cls.open_host(host, port, addr, security)

    @classmethod
    async def open_host(cls, host: str, port: int, addr: str = "",
                        security: Security | None = None) -> Connection:
        """Connect; with ``security``, TLS and AUTH first (client/security.py)."""
        stream = await trio.open_tcp_stream(host, port)
        stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
        if security is None:
            return cls(addr or f"{host}:{port}", stream)
        conn = cls(addr or f"{host}:{port}", await security.wrap(stream, host))
        auth = security.auth_args()
        if auth is not None:
            try:
                check_auth_reply(await conn.request(*auth))
            except HandshakeFailed:  # the node's refusal, as it said it (an OSError too)
                await conn.aclose()
                raise
            except TRANSPORT_ERRORS as exc:
                await conn.aclose()
                hint = "" if security.ssl is not None else " (a TLS port? try --tls)"
                raise HandshakeFailed(f"connection lost during AUTH{hint}: {exc}") from exc
            except BaseException:
                await conn.aclose()
                raise
        return conn

    def stale(self) -> bool:
        """True if an idle connection has something to read: the node closed it (or spoke
        out of turn), so a request sent on it would be lost. Checked before each request,
        so a connection to a node that died while idle is replaced before anything is sent.
        """
        if self.parser.buffered:
            return True
        poller = select.poll()  # not select(): it cannot watch descriptors past 1023
        try:
            poller.register(raw_socket(self.stream).fileno(), select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_reply(self) -> Any:
        """The next reply value (an ``ErrorReply`` is returned, not raised);
        ``ProtocolError`` once it takes more than ``max_reply_bytes``."""
        taken = self.parser.buffered
        while True:
            reply = self.parser.next_reply()
            if reply is not NEED_MORE:
                return reply
            if taken > self.max_reply_bytes:
                raise ProtocolError(f"Protocol error: a reply of more than "
                                    f"{self.max_reply_bytes} bytes")
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(f"{self.addr} closed the connection")
            taken += len(data)
            self.parser.feed(data)

    async def request(self, *args: bytes | str | int | float) -> Any:
        await self.send(encode_command(*args))
        return await self.receive_reply()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
