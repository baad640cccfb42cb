"""TLS on the client port (``--tls-cert/--tls-key/--tls-ca/--tls-client-auth``, issue 13).

With a certificate the client port speaks TLS only (1.2 or later), as ``redis-cli --tls``
and ``redis.Redis(ssl=True)`` expect. ``--tls-client-auth`` also requires a client
certificate signed by ``--tls-ca`` (Redis's ``tls-auth-clients yes``); without it the CA is
not needed. Hostnames are the client's business (it checks ours against its CA).

The handshake runs inside the connection's slot (it counts against ``--max-new-clients``)
and must finish within ``HANDSHAKE_TIMEOUT``: a client that opens a connection and stalls
(slowloris), sends plain text or garbage, or offers a certificate of another CA is cut off
with a closed socket and one log line per remote host and reason per 10 s.

The client port then reads and writes a ``raftkv.node.tls_stream.TLSStream`` (OpenSSL over
memory BIOs on a non-blocking socket; trio's SSLStream cost about 30% of SET throughput),
and sends replies without its writer task as on plain text (``DirectReply``, through
``TLSStream.send_nowait``): TLS has no half-close
(``send_eof`` does nothing), and closing sends ``close_notify`` with a deadline
(``CLOSE_TIMEOUT``), so a client that never reads cannot hold the connection open past it.
``TLSClientStream`` is the same shape over a ``trio.SSLStream``, for the metrics port.
"""

from __future__ import annotations

import logging
import ssl

import attrs
import trio

from raftkv.node.log_throttle import LogThrottle
from raftkv.node.settings import NodeSettings
from raftkv.node.tls import tls_context
from raftkv.node.tls_stream import CLOSE_TIMEOUT, TLSStream, handshake

log = logging.getLogger("raftkv.server")

HANDSHAKE_TIMEOUT = 5.0  # seconds from accept to a finished handshake


class ClientTLSError(ValueError):
    """A client-TLS setting that cannot work; the text names the flag."""


def client_tls_context(cert: str, key: str, ca: str = "",
                       client_auth: bool = False) -> ssl.SSLContext:
    """The server context; ClientTLSError names the file or flag that failed."""
    if not cert or not key:
        missing = "--tls-cert" if not cert else "--tls-key"
        raise ClientTLSError(f"client TLS needs --tls-cert and --tls-key; missing {missing}")
    if client_auth and not ca:
        raise ClientTLSError("--tls-client-auth needs --tls-ca (the CA that signs client "
                             "certificates)")
    ctx = tls_context(ssl.PROTOCOL_TLS_SERVER, cert, key, ca,
                      labels=("--tls-cert", "--tls-key", "--tls-ca"), error=ClientTLSError)
    ctx.verify_mode = ssl.CERT_REQUIRED if client_auth else ssl.CERT_NONE
    # No TLS 1.3 session tickets: nothing to resume (clients keep their connections), and
    # tickets arriving unasked would make an idle client think the node spoke out of turn.
    ctx.num_tickets = 0
    return ctx


class TLSClientStream:
    """An established ``trio.SSLStream``, shaped like the SocketStream a port expects (the
    metrics port's; the client port uses ``TLSStream``)."""

    def __init__(self, tls: trio.SSLStream[trio.SocketStream]) -> None:
        self.tls = tls
        self.socket = tls.transport_stream.socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.tls.receive_some(max_bytes)

    async def send_eof(self) -> None:
        """TLS has no half-close: the connection's end comes with aclose."""
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self.tls.aclose()
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        await self.tls.transport_stream.aclose()

    async def __aenter__(self) -> TLSClientStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def failure_reason(exc: BaseException | None) -> str:
    """A short reason for the log: plain text on a TLS port is told apart from the rest."""
    if exc is None:
        return f"no handshake within {HANDSHAKE_TIMEOUT:g} s"
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or cause.__class__.__name__
        detail = getattr(cause, "verify_message", None)  # "certificate has expired", ...
        if detail:
            return f"{reason}: {detail}"
        if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL",
                      "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            return f"not a TLS handshake (plain text?): {reason}"
        return reason
    return f"connection closed during the handshake ({type(cause).__name__})"


LOG_LINES = 30  # handshake failure lines per 10 s over every address (attack17's rule)


@attrs.define
class ClientTLS:
    """The client port's TLS: the context, failure counters and the rate-limited log."""

    context: ssl.SSLContext
    failures: int = 0
    # One line per address and reason a 10 s, and LOG_LINES in all: a scanner that takes a
    # new address (of its IPv6 /64) for every connection writes no line per connection.
    throttle: LogThrottle = attrs.Factory(lambda: LogThrottle(log, 10.0, max_lines=LOG_LINES))

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> ClientTLS | None:
        """None without --tls-cert/--tls-key (a plain-text port)."""
        if not settings.tls_cert and not settings.tls_key:
            return None
        return cls(client_tls_context(settings.tls_cert, settings.tls_key, settings.tls_ca,
                                      settings.tls_client_auth))

    async def accept(self, stream: trio.SocketStream, addr: str) -> TLSStream | None:
        """Finish the handshake within the deadline, or close ``stream`` and return None."""
        error: BaseException | None = None
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            try:
                return await handshake(stream, self.context, server_side=True,
                                       close_timeout=CLOSE_TIMEOUT)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                error = exc
        self.failures += 1
        host, reason = addr.rpartition(":")[0], failure_reason(error)
        self.throttle.log(("tls", host, reason), logging.WARNING,
                          "client TLS handshake failed", addr=addr, reason=reason)
        await stream.aclose()  # (handshake closed the socket: no close_notify)
        return None
