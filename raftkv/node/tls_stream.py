"""TLS as a trio Stream: OpenSSL over memory BIOs (``ssl.SSLObject``) on a non-blocking
socket driven by trio's ``wait_readable/wait_writable``, tried first and waited on only
when it would block (as raftkv/node/plain_stream.py does for plain TCP).

Why not ``trio.SSLStream``: every receive and send crosses its inner ``SocketStream``
(conflict detector, lock, a checkpoint each), about 2.4x plain TCP's CPU per round trip
(``tests/bench/bench_tls_stream.py``). Why not an ``ssl.SSLSocket`` (this module's previous
form): OpenSSL reads its socket itself without read-ahead, two ``recv`` per record (the
header, then the body) and a third that fails with EAGAIN, and every call yields to the
scheduler. Here a receive is one ``recv`` of everything there (then as many records as it
holds are decrypted from memory), a send one ``send`` of the records it made, and a call
that did not wait yields only every ``YIELD_EVERY`` calls.

Encrypted bytes the socket did not take wait in the stream (``unsent``) and go out first
on the next send, so ``send_nowait`` (raftkv's direct writes: a reply or a peer frame
written by the task that has it, without the writer task) never loses or reorders a
record: a caller that gets False only has to make sure a send (``send_all(b"")`` will do)
follows. Records are made in the order the calls come, and a record is never made twice.

What is kept from trio's stream: the same errors (``trio.BrokenResourceError`` whose
``__cause__`` is the ``ssl.SSLError`` or ``OSError``; ``trio.ClosedResourceError`` after
``aclose``, also for a task waiting on the socket; ``trio.BusyResourceError`` for two
concurrent receives or sends), every call raises ``Cancelled`` at its start if its scope is
cancelled and every wait is cancellable, a ragged EOF (no ``close_notify``) is an error
rather than an end of stream, and a send cancelled while records it made wait unsent leaves
the stream broken (TLS cannot un-send a record). One task may receive while another sends.

Renegotiation is refused by the contexts (``OP_NO_RENEGOTIATION``, raftkv/node/tls.py), so
a send never needs to read and a receive never needs to wait to write: what a receive makes
OpenSSL answer (an alert, a TLS 1.3 KeyUpdate) is sent at once if the socket takes it, else
with the next send. TLS alerts reach the peer: a client of another CA or TLS-shaped garbage
gets the alert before the close (plain text gets none: OpenSSL sends no alert to what is
not TLS). A failed handshake reads and drops what is left unread before closing, so the
close is a FIN, not a reset.

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

RECORD_SIZE = 16 * 1024  # TLS's largest plaintext record
DEFAULT_RECEIVE_SIZE = 64 * 1024
CLOSE_TIMEOUT = 1.0  # seconds to send close_notify before the socket is just closed
YIELD_EVERY = 16  # calls that did not wait, between two yields to the scheduler
WRITE_CHUNK = 256 * 1024  # plaintext encrypted at a time: bounds the unsent records
MIN_RAW_RECEIVE = 17 * 1024 + 512  # a whole record and its header
MAX_RAW_RECEIVE = 1024 * 1024
# Records the peer's own records made us write (KeyUpdate answers, alerts refusing a
# renegotiation) that may wait unsent: a peer asking for more without reading is cut off.
MAX_UNREAD_ANSWERS = 64 * 1024


def _raw_size(size: int) -> int:
    """Encrypted bytes to ask the socket for when ``size`` plaintext bytes are wanted:
    the records' headers and tags (22 bytes each in TLS 1.3, 29 in 1.2) on top."""
    return min(max(size + (size >> 8) + 512, MIN_RAW_RECEIVE), MAX_RAW_RECEIVE)


class TLSStream(trio.abc.Stream):
    """An established TLS connection (make one with ``handshake``)."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.socket = sock  # the raw non-blocking socket: getpeername, setsockopt, fileno
        self.ssl_object = tls  # version(), cipher(), getpeercert()
        self.close_timeout = close_timeout
        self._incoming = incoming
        self._outgoing = outgoing
        self._unsent = bytearray()  # records made and not yet taken by the socket
        self._receiving = False
        self._sending = False
        self._broken = False
        self._closed = False
        self._eof = False  # the socket's end was fed to OpenSSL
        # What ``_more`` met after the data it returned (the peer's close_notify: b"", or
        # an SSLError), for the next receive: OpenSSL has taken those bytes already, so
        # the next receive would otherwise wait on a socket the peer may never use again.
        self._ended: bytes | ssl.SSLError | None = None
        self._answers = 0  # bytes of such answers made since the socket last took everything
        self._unyielded = 0
        # The last recv took less than it asked for: the socket was drained, so the next
        # one waits for readiness first instead of trying a recv that fails with EAGAIN.
        self._drained = False

    @property
    def unsent(self) -> bool:
        """Records wait for the socket: a send (``send_all(b"")`` will do) must follow."""
        return bool(self._unsent)

    def fileno(self) -> int:
        return self.socket.fileno()

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._broken:
            raise trio.BrokenResourceError("the TLS stream is broken")

    def _break(self, exc: BaseException) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if self._closed:
            return trio.ClosedResourceError("the TLS stream is closed")
        self._broken = True
        error = trio.BrokenResourceError(f"TLS connection failed: {exc}")
        error.__cause__ = exc
        return error

    async def _pace(self) -> None:
        """After a call that did not wait: yield every YIELD_EVERY such calls."""
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    # -- sending ---------------------------------------------------------------------------

    def _push(self) -> None:
        """Send what the socket takes now of the records OpenSSL made (raises OSError)."""
        made = self._outgoing.read()
        unsent = self._unsent
        if not unsent:
            if not made:
                return
            try:
                n = self.socket.send(made)
            except BlockingIOError:
                n = 0
            if n < len(made):
                unsent += memoryview(made)[n:]
            else:
                self._answers = 0
            return
        if made:
            unsent += made
        while unsent:
            try:
                n = self.socket.send(unsent)
            except BlockingIOError:
                return
            del unsent[:n]
        self._answers = 0  # the peer read everything: its answers too

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        if len(data):
            try:
                self.ssl_object.write(data)
            except ssl.SSLError as exc:
                raise self._break(exc) from exc

    def send_nowait(self, data: bytes | bytearray | memoryview) -> bool:
        """Encrypt all of ``data`` and send what the socket takes now, without waiting.
        True if nothing is left unsent; False if records wait (``unsent``): the next send
        sends them first, so the caller must see that one follows."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._check()
        self._encrypt(data)
        try:
            self._push()
        except OSError as exc:
            raise self._break(exc) from exc
        return not self._unsent

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data`` (after any records still unsent). Cancelled
        while records wait unsent, the stream is broken (they cannot be taken back)."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._check()
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if type(data) is not memoryview and len(data) <= WRITE_CHUNK:
                self._encrypt(data)
                waited = await self._send_unsent()
            else:
                waited = False
                with memoryview(data) as view:
                    view = view.cast("B") if view.ndim != 1 or view.itemsize != 1 else view
                    for offset in range(0, max(len(view), 1), WRITE_CHUNK):
                        self._encrypt(view[offset:offset + WRITE_CHUNK])
                        waited = await self._send_unsent() or waited
            if not waited:
                await self._pace()
        finally:
            self._sending = False

    async def _send_unsent(self) -> bool:
        """Send the records made, waiting as needed; whether it waited. Cancelled while
        some wait, the stream is broken."""
        try:
            self._push()
            if not self._unsent:
                return False
            self._unyielded = 0
            while self._unsent:
                try:
                    await trio.lowlevel.wait_writable(self.socket)
                except BaseException:
                    self._broken = not self._closed
                    raise
                self._check()
                self._push()
        except OSError as exc:
            raise self._break(exc) from exc
        return True

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
            await trio.lowlevel.wait_writable(self.socket)
        finally:
            self._sending = False

    # -- receiving -------------------------------------------------------------------------

    async def _fill(self, size: int) -> bool:
        """Read what the socket has into OpenSSL, waiting if nothing; whether it waited."""
        if self._eof:  # (OpenSSL reports the end itself: never read a closed socket again)
            raise self._break(ssl.SSLEOFError("EOF occurred in violation of protocol"))
        sock = self.socket
        raw_size = _raw_size(size)
        waited = self._drained
        if waited:
            self._unyielded = 0
            await trio.lowlevel.wait_readable(sock)
            self._check()
        while True:
            try:
                raw = sock.recv(raw_size)
                break
            except BlockingIOError:
                waited = True
                self._unyielded = 0
                await trio.lowlevel.wait_readable(sock)
                self._check()
            except OSError as exc:
                raise self._break(exc) from exc
        self._drained = 0 < len(raw) < raw_size
        if raw:
            self._incoming.write(raw)
        else:
            self._eof = True
            self._incoming.write_eof()
        return waited

    def _answer(self) -> None:
        """Send what reading made OpenSSL write (an alert, a KeyUpdate), if the socket
        takes it now; the rest goes with the next send (while a send waits, it is queued
        behind that send's records, which it would follow in OpenSSL's order anyway).
        Raises (breaking the stream) once more than MAX_UNREAD_ANSWERS of them wait: a
        peer sending KeyUpdate requests without reading (tlsatk: 400,000 of them grew the
        node by 10 MiB, outside every output-buffer limit)."""
        made = self._outgoing.pending
        if not made:
            return
        self._answers += made
        if self._sending:  # (every await of a send has moved its own records already)
            self._unsent += self._outgoing.read()
        else:
            with contextlib.suppress(OSError):
                self._push()
        if self._unsent and self._answers > MAX_UNREAD_ANSWERS:
            exc = ssl.SSLError(f"the peer left {self._answers} bytes of answers to its "
                               "own records unread")
            raise self._break(exc) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of plaintext (b"" after the peer's close_notify): every
        whole record already received, up to ``max_bytes``, so a large frame costs one
        call per read size, not one per record."""
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this TLS stream")
        self._check()
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            tls, incoming = self.ssl_object, self._incoming
            if isinstance(self._ended, ssl.SSLError):
                raise self._break(self._ended) from self._ended
            if self._ended is not None:  # the peer's close_notify: the end, every time
                await self._pace()
                return b""
            waited = False
            while True:
                # Nothing received and undecrypted: the read would only fail (an exception
                # built per call), so the socket is read first.
                if not (incoming.pending or tls.pending() or self._eof):
                    if await self._fill(size):
                        waited = True
                    continue
                try:
                    data = tls.read(size)
                    break
                except ssl.SSLWantReadError:
                    self._answer()  # (an alert refusing a renegotiation, say)
                except ssl.SSLError as exc:
                    self._answer()  # the alert, if any
                    raise self._break(exc) from exc
                if await self._fill(size):
                    waited = True
            if data and len(data) < size and incoming.pending:
                data = self._more(data, size)
            self._answer()
            if not waited:
                await self._pace()
            return data
        finally:
            self._receiving = False

    def _more(self, first: bytes, size: int) -> bytes:
        """The records already received after the first, without waiting. The end met
        after them (close_notify, an error) is kept for the next receive (``_ended``):
        OpenSSL has consumed it, so it would not recur before the peer sent again."""
        parts, total = [first], len(first)
        tls, incoming = self.ssl_object, self._incoming
        while total < size and incoming.pending:
            try:
                data = tls.read(size - total)
            except ssl.SSLWantReadError:  # the rest of a record is to come
                break
            except ssl.SSLError as exc:
                self._ended = exc
                break
            if not data:
                self._ended = b""
                break
            parts.append(data)
            total += len(data)
        return b"".join(parts)

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send close_notify (at most ``close_timeout`` seconds, not on a broken stream;
        the peer's is not waited for), then close the socket."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        try:
            if not self._broken and not self._sending:
                with trio.move_on_after(self.close_timeout):
                    await self._close_notify()
        finally:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)  # wakes a task waiting on it
            self.socket.close()
        await trio.lowlevel.checkpoint()

    async def _close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLError, ValueError):
            self.ssl_object.unwrap()  # SSLWantReadError: ours is made, the peer's not waited
        try:
            self._push()
            while self._unsent:
                await trio.lowlevel.wait_writable(self.socket)
                self._push()
        except OSError:
            pass  # the peer is gone: nothing to say goodbye to

    def _abandon(self) -> None:
        """After a failed handshake: send the alert if the socket takes it, read and drop
        what is left unread (so that closing sends a FIN, not a reset: plain text on a TLS
        port gets a plainly closed connection; one read, at most 64 KiB), close."""
        with contextlib.suppress(OSError):
            self._push()
        with contextlib.suppress(OSError):
            self.socket.recv(DEFAULT_RECEIVE_SIZE)
        self._closed = True
        trio.lowlevel.notify_closing(self.socket)
        self.socket.close()

    async def _handshake(self) -> None:
        tls = self.ssl_object
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:  # (and its CertificateError) included
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
            await self._flush()
            await self._fill(DEFAULT_RECEIVE_SIZE)
        await self._flush()

    async def _flush(self) -> None:
        """Send every record made so far, waiting as needed (the handshake's)."""
        try:
            self._push()
            while self._unsent:
                await trio.lowlevel.wait_writable(self.socket)
                self._push()
        except OSError as exc:
            raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc


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
        raw.setblocking(False)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=server_side,
                               server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    stream = TLSStream(raw, tls, incoming, outgoing, close_timeout)
    try:
        await trio.lowlevel.checkpoint()
        await stream._handshake()
    except BaseException:
        stream._abandon()
        raise
    return stream
