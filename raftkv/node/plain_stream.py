"""Plain TCP for peer links: a non-blocking socket driven by trio's ``wait_readable`` and
``wait_writable``, tried first and waited on only when it would block.

Why not ``trio.SocketStream``: every receive and send goes through its conflict detector,
the trio socket's wrapper, and a ``cancel_shielded_checkpoint`` that yields to the
scheduler even when the data was already there, and each yield is a scheduler pass (an
``epoll_wait``) of its own. A c1 write crosses a peer socket four times on the leader and
twice on each follower; ``tests/bench/bench_tls_stream.py`` measured trio's stream at 60.8
us per round trip against 47.5 us for the TLS stream (raftkv/node/tls_stream.py), which
drives its socket the same way.

What is kept from trio's stream: the errors (``trio.BrokenResourceError`` whose
``__cause__`` is the ``OSError``; ``trio.ClosedResourceError`` after ``aclose``, also for a
task waiting on the socket; ``trio.BusyResourceError`` for two concurrent receives or
sends) and the cancellation points: every call raises ``Cancelled`` at its start if its
scope is cancelled, and every wait is cancellable. What differs: a call that did not have to
wait yields to the scheduler only every ``YIELD_EVERY`` calls (so a peer that keeps the
socket full cannot hold the loop), not every time; and a receive after one that drained the
socket (it got less than it asked for) waits for readiness before its ``recv``, which would
nearly always fail with EAGAIN: one syscall and one exception less per message. As with
trio's stream, a send cancelled after part of its data left leaves the byte stream cut (the
transport then closes it).
"""

from __future__ import annotations

import operator
import socket

import trio

from raftkv.node.read_poller import ReadPoller

DEFAULT_RECEIVE_SIZE = 64 * 1024
YIELD_EVERY = 16  # calls that did not wait, between two yields to the scheduler


class PlainStream(trio.abc.Stream):
    """A connected TCP socket (make one with ``adopt``)."""

    def __init__(self, sock: socket.socket, poller: ReadPoller | None = None) -> None:
        sock.setblocking(False)
        self.socket = sock  # for getpeername, setsockopt, fileno
        # A client connection's reads wait on the shared poller (read_poller.py: no
        # epoll_ctl per wait); a peer link's on trio's own wait_readable.
        self._poller = poller
        if poller is not None:
            try:
                poller.register(sock.fileno())
            except (OSError, ValueError):  # (out of epoll watches, or the poller's epoll
                # closed under it: trio's waits still work)
                self._poller = None
        self._receiving = False
        self._sending = False
        self._closed = False
        self._unyielded = 0
        # The last receive took less than it asked for: the socket was drained, so the next
        # one waits for readiness first instead of trying a recv that fails with EAGAIN.
        self._drained = False

    @classmethod
    def adopt(cls, tcp: trio.SocketStream, poller: ReadPoller | None = None) -> PlainStream:
        """The stream over ``tcp``'s socket, which it then owns (closing ``tcp`` after it is
        harmless: its socket is detached); its reads wait on ``poller`` if given."""
        if tcp.socket.fileno() == -1:
            raise trio.ClosedResourceError("the connection was closed")
        return cls(socket.socket(fileno=tcp.socket.detach()), poller)

    def fileno(self) -> int:
        return self.socket.fileno()

    def _broken(self, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if self._closed:
            return trio.ClosedResourceError("the stream is closed")
        error = trio.BrokenResourceError(f"socket error: {exc}")
        error.__cause__ = exc
        return error

    async def _pace(self) -> None:
        """After a call that did not wait: yield every YIELD_EVERY such calls."""
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self.socket
            poller = self._poller
            waited = self._drained
            if waited and poller is not None and poller.take_ready(sock.fileno()):
                waited = False  # (readable since it drained: an edge the poller kept)
            if waited:
                self._unyielded = 0
                await self._wait_readable(sock)
            while True:
                try:
                    data = sock.recv(size)
                    break
                except BlockingIOError:
                    waited = True
                    self._unyielded = 0
                    await self._wait_readable(sock)
                except OSError as exc:
                    raise self._broken(exc) from exc
            self._drained = 0 < len(data) < size
            if not waited:
                await self._pace()
            return data
        finally:
            self._receiving = False

    async def _wait_readable(self, sock: socket.socket) -> None:
        if self._poller is None:
            await trio.lowlevel.wait_readable(sock)
        else:
            await self._poller.wait_readable(sock.fileno())

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
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
                    except BlockingIOError:
                        waited = True
                        self._unyielded = 0
                        await trio.lowlevel.wait_writable(sock)
                        continue
                    except OSError as exc:
                        raise self._broken(exc) from exc
                    remaining = remaining[sent:]
            if not waited:
                await self._pace()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        self._sending = True
        try:
            await trio.lowlevel.wait_writable(self.socket)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        await trio.lowlevel.checkpoint()
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._broken(exc) from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._poller is not None:  # (before the fd number can be reused)
                self._poller.forget(self.socket.fileno())
            trio.lowlevel.notify_closing(self.socket)  # wakes a task waiting on it
            self.socket.close()
        await trio.lowlevel.checkpoint()
