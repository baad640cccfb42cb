"""TLS over a non-blocking ``ssl.SSLSocket``, driven by trio's ``wait_readable/wait_writable``.

Why not ``trio.SSLStream``: it runs OpenSSL over memory BIOs, so every receive calls
``SSLObject.read`` (which raises ``SSLWantReadError`` when the BIO is empty), receives
through the inner ``SocketStream`` (its own conflict detector, lock and checkpoint), copies
the bytes into the BIO and reads again; every send encrypts into the outgoing BIO, copies
it out and sends it through the same layers. A SET at the leader of a TLS cluster crosses
that machinery on the client port and twice per peer link, and it cost about 30% of the
throughput (issue 13). Here OpenSSL reads and writes the socket itself: a receive is one
``SSL_read`` (plus a wait when nothing is there), a send one ``SSL_write`` per call.

What is kept from trio's stream: the same errors (``trio.BrokenResourceError`` whose
``__cause__`` is the ``ssl.SSLError`` or ``OSError``; ``trio.ClosedResourceError`` after
``aclose``; ``trio.BusyResourceError`` for two concurrent receives or sends), the same
checkpoints, a ragged EOF (no ``close_notify``) is an error rather than an end of stream,
and a send cancelled after OpenSSL took part of it leaves the stream broken (TLS cannot
un-send a record). One task may receive while another sends, as on a socket.

Renegotiation is refused by the contexts (``OP_NO_RENEGOTIATION``, raftkv/node/tls.py).
Should OpenSSL still need the other direction's readiness (a TLS 1.3 KeyUpdate answered
while the send buffer is full), the task waits on the same readiness as the task already
waiting for it, never two waiters on one descriptor.

One difference: TLS alerts now reach the peer. OpenSSL writes them to the socket itself,
where trio's stream left a failed handshake's alert in its BIO: a client of another CA or
TLS-shaped garbage gets the alert before the close (plain text still gets none: OpenSSL
sends no alert to what is not TLS). A failed handshake reads and drops what is left unread
before closing, so the close is a FIN, not a reset.

TLS has no half-close: ``send_eof`` does nothing (the end comes with ``aclose``), and
``aclose`` sends ``close_notify`` for at most ``close_timeout`` seconds before closing the
socket, so a peer that never reads cannot hold the connection open.
"""

from __future__ import annotations

import contextlib
import operator
import socket
import ssl

import trio

RECORD_SIZE = 16 * 1024  # TLS's largest plaintext record: one SSL_read returns at most this
DEFAULT_RECEIVE_SIZE = 64 * 1024
CLOSE_TIMEOUT = 1.0  # seconds to send close_notify before the socket is just closed


class _Readiness:
    """One waiter per direction on the descriptor; a second task needing the same
    readiness waits for the first one's wake-up, then retries its own operation."""

    def __init__(self, sock: ssl.SSLSocket, writable: bool) -> None:
        self._sock = sock
        self._wait = trio.lowlevel.wait_writable if writable else trio.lowlevel.wait_readable
        self._woken: trio.Event | None = None

    async def wait(self) -> None:
        if self._woken is not None:
            await self._woken.wait()
            return
        woken = self._woken = trio.Event()
        try:
            await self._wait(self._sock)
        finally:
            self._woken = None
            woken.set()


class TLSStream(trio.abc.Stream):
    """An established TLS connection (make one with ``handshake``)."""

    def __init__(self, sock: ssl.SSLSocket, close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.socket = sock  # for getpeername, setsockopt, version(), getpeercert(), ...
        self.close_timeout = close_timeout
        self._readable = _Readiness(sock, writable=False)
        self._writable = _Readiness(sock, writable=True)
        self._receiving = False
        self._sending = False
        self._broken = False
        self._closed = False

    async def _wait_for(self, exc: ssl.SSLError) -> None:
        """Wait for what the failed operation asked for (SSLWantRead/WriteError)."""
        if isinstance(exc, ssl.SSLWantWriteError):
            await self._writable.wait()
        else:
            await self._readable.wait()

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._broken:
            raise trio.BrokenResourceError("the TLS stream is broken")

    def _break(self, exc: BaseException) -> trio.BrokenResourceError:
        self._broken = True
        error = trio.BrokenResourceError(f"TLS connection failed: {exc}")
        error.__cause__ = exc
        return error

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of plaintext (b"" after the peer's close_notify). A full
        record (16 KiB) is followed by the records already there, up to ``max_bytes``, so
        a large frame costs one call per read size, not one per record."""
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this TLS stream")
        self._check()
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self.socket
            waited = False
            while True:
                try:
                    data = sock.recv(size)
                    break
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
                    waited = True
                    await self._wait_for(exc)
                    self._check()  # closed or broken while we waited
                except OSError as exc:  # ssl.SSLError included
                    raise self._break(exc) from exc
            if len(data) >= RECORD_SIZE and size > len(data):
                data = self._more(data, size)
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    def _more(self, first: bytes, size: int) -> bytes:
        """The records that are already readable after a full one, without waiting; an
        error is left for the next receive (it recurs: the connection is done)."""
        parts, total = [first], len(first)
        sock = self.socket
        while total < size:
            try:
                data = sock.recv(size - total)
            except OSError:  # SSLWantRead/WriteError: nothing more now; or an error
                break
            if not data:
                break
            parts.append(data)
            total += len(data)
            if len(data) < RECORD_SIZE:
                break
        return b"".join(parts)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``. Cancelled after OpenSSL took part of it, the
        stream is broken (the records it sent cannot be taken back)."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._check()
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self.socket
            waited = False
            with memoryview(data) as view:
                remaining = view.cast("B") if view.ndim != 1 or view.itemsize != 1 else view
                while remaining:
                    try:
                        sent = sock.send(remaining)
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError) as exc:
                        # OpenSSL holds a partly written record: the same bytes must be
                        # offered again, so a cancellation from here on breaks the stream.
                        waited = True
                        try:
                            await self._wait_for(exc)
                        except BaseException:
                            self._broken = True
                            raise
                        self._check()
                        continue
                    except OSError as exc:
                        raise self._break(exc) from exc
                    remaining = remaining[sent:]
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """TLS has no half-close: the connection's end comes with ``aclose``."""
        self._check()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._check()
        self._sending = True
        try:
            await self._writable.wait()
        finally:
            self._sending = False

    async def aclose(self) -> None:
        """Send close_notify (at most ``close_timeout`` seconds, not on a broken stream;
        the peer's is not waited for), then close the socket."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        sock = self.socket
        try:
            if not self._broken and not self._sending:
                with trio.move_on_after(self.close_timeout):
                    await self._close_notify()
        finally:
            self._closed = True
            trio.lowlevel.notify_closing(sock)  # wakes a task waiting on it
            sock.close()
        await trio.lowlevel.checkpoint()

    async def _close_notify(self) -> None:
        while True:
            try:
                self.socket.unwrap()  # both close_notify done
                return
            except ssl.SSLWantReadError:
                return  # ours is sent; the peer's is not waited for
            except ssl.SSLWantWriteError:
                await self._writable.wait()
            except (OSError, ValueError):
                return  # the peer is gone: nothing to say goodbye to


async def handshake(tcp: trio.SocketStream, context: ssl.SSLContext, *, server_side: bool,
                    server_hostname: str | None = None,
                    close_timeout: float = CLOSE_TIMEOUT) -> TLSStream:
    """Run the TLS handshake on ``tcp``'s socket, which the returned stream then owns.

    A failed handshake raises ``trio.BrokenResourceError`` whose ``__cause__`` is the
    ``ssl.SSLError`` (a certificate of another CA, plain text, ...) or ``OSError``; a
    failed or cancelled one has closed the socket already (closing ``tcp`` after it is
    harmless). Deadlines are the caller's (``trio.move_on_after`` around this)."""
    if tcp.socket.fileno() == -1:
        raise trio.ClosedResourceError("the connection was closed before its TLS handshake")
    raw = socket.socket(fileno=tcp.socket.detach())
    try:
        sock = context.wrap_socket(raw, server_side=server_side,
                                   server_hostname=server_hostname,
                                   do_handshake_on_connect=False, suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise
    try:
        sock.setblocking(False)
        await trio.lowlevel.checkpoint()
        readable, writable = _Readiness(sock, False), _Readiness(sock, True)
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                await readable.wait()
            except ssl.SSLWantWriteError:
                await writable.wait()
            except OSError as exc:  # ssl.SSLError (and its CertificateError) included
                error = trio.BrokenResourceError(f"TLS handshake failed: {exc}")
                raise error from exc
    except BaseException:
        _discard_unread(sock)
        trio.lowlevel.notify_closing(sock)
        sock.close()
        raise
    return TLSStream(sock, close_timeout)


def _discard_unread(sock: ssl.SSLSocket) -> None:
    """Read and drop what a failed handshake left unread (OpenSSL stops at the first bad
    record header), so that closing sends a FIN, not a reset: plain text on a TLS port
    gets a plainly closed connection. One non-blocking read, at most 64 KiB."""
    with contextlib.suppress(OSError):
        socket.socket.recv(sock, DEFAULT_RECEIVE_SIZE)  # the raw socket under the TLS
