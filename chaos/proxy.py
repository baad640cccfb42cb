"""Userspace TCP relays between nodes: the chaos suite's unprivileged network.

One ``LinkProxy`` per directed peer link i -> j listens on its own port; node i's --cluster
list names that port as j's peer address, so every byte node i sends to j (and j's replies
on that connection: Hello, pings) crosses it. A proxy can:

- block: stop forwarding in both directions *without closing anything*. It stops reading,
  so bytes wait in kernel buffers and nothing arrives, as in a real partition where TCP
  just retransmits into the void; the nodes' own 3 s stall detection closes the link. New
  connections are accepted but not connected onward until the block lifts (a dial that
  hangs, like a SYN into a partition). Unblocking delivers whatever waited, like TCP after
  a short outage.
- delay: hold each chunk ``delay`` plus a uniform jitter in [0, jitter) seconds, never
  reordering (chunks leave in arrival order; a chunk whose time came waits for the one
  before it, as in a TCP stream).
- reset: abort every relayed connection with a TCP RST (SO_LINGER 0).

``ProxyMesh`` is the set of proxies for a whole cluster and implements the ``Net``
interface of ``chaos.nemesis`` (cut a set of directed links, slow links, heal).
"""

from __future__ import annotations

import contextlib
import math
import random
import socket
import struct
from collections.abc import Iterable, Mapping

import trio

Link = tuple[int, int]
CHUNK = 64 * 1024
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Gate:
    """Open/closed flag whose waiters wake when it opens (re-closing makes them wait again)."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._event.set()

    @property
    def is_open(self) -> bool:
        return self._event.is_set()

    def close(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    def open(self) -> None:
        self._event.set()

    async def wait_open(self) -> None:
        while not self._event.is_set():
            await self._event.wait()


def _abort(stream: trio.SocketStream) -> None:
    """Close with RST instead of FIN."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class LinkProxy:
    """A relay for the directed link ``src`` -> ``dst`` to ``upstream`` (host, port)."""

    def __init__(self, src: int, dst: int, upstream: tuple[str, int], host: str = "127.0.0.1",
                 rng: random.Random | None = None, connect_timeout: float = 5.0) -> None:
        self.src, self.dst = src, dst
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.delay = 0.0
        self.jitter = 0.0
        self.connections = 0  # connections accepted so far
        self.bytes = 0  # bytes forwarded (both directions)
        self._rng = rng or random.Random()
        self._gate = _Gate()
        self._connect_timeout = connect_timeout
        self._relays: set[trio.CancelScope] = set()
        self._streams: set[trio.SocketStream] = set()

    @property
    def blocked(self) -> bool:
        return not self._gate.is_open

    def block(self) -> None:
        self._gate.close()

    def unblock(self) -> None:
        self._gate.open()

    def set_latency(self, delay: float, jitter: float = 0.0) -> None:
        if delay < 0 or jitter < 0 or not math.isfinite(delay + jitter):
            raise ValueError("delay and jitter must be finite and >= 0")
        self.delay, self.jitter = delay, jitter

    def reset(self) -> None:
        """Abort every connection in flight with an RST (new ones are accepted as usual)."""
        for stream in self._streams:
            _abort(stream)
        for scope in self._relays:
            scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._relay, listeners)
            task_status.started(self.port)

    async def _relay(self, down: trio.SocketStream) -> None:
        self.connections += 1
        with trio.CancelScope() as scope:
            self._relays.add(scope)
            self._streams.add(down)
            try:
                await self._gate.wait_open()
                try:
                    with trio.fail_after(self._connect_timeout):
                        up = await trio.open_tcp_stream(*self.upstream)
                except (OSError, trio.TooSlowError):
                    _abort(down)  # the peer is down: let the dialer see a reset
                    return
                self._streams.add(up)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, down, up, nursery.cancel_scope)
                        nursery.start_soon(self._pump, up, down, nursery.cancel_scope)
                finally:
                    self._streams.discard(up)
                    await trio.aclose_forcefully(up)
            finally:
                self._relays.discard(scope)
                self._streams.discard(down)
                await trio.aclose_forcefully(down)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream,
                    done: trio.CancelScope) -> None:
        """Copy ``source`` to ``sink`` through a delay line; either end closing ends both."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](64)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_side, source, send)
                nursery.start_soon(self._write_side, receive, sink)
        finally:
            done.cancel()

    async def _read_side(self, source: trio.SocketStream,
                         send: trio.MemorySendChannel[tuple[float, bytes]]) -> None:
        async with send:
            while True:
                await self._gate.wait_open()
                try:
                    data = await source.receive_some(CHUNK)
                except _GONE:
                    data = b""
                due = trio.current_time() + self.delay
                if self.jitter:
                    due += self._rng.uniform(0, self.jitter)
                try:
                    await send.send((due, data))  # FIFO: a chunk never overtakes another
                except trio.BrokenResourceError:
                    return
                if not data:
                    return

    async def _write_side(self, receive: trio.MemoryReceiveChannel[tuple[float, bytes]],
                          sink: trio.SocketStream) -> None:
        async with receive:
            async for due, data in receive:
                await trio.sleep_until(due)
                await self._gate.wait_open()
                if not data:
                    return
                try:
                    await sink.send_all(data)
                except _GONE:
                    return
                self.bytes += len(data)


class ProxyMesh:
    """One ``LinkProxy`` per ordered pair of nodes; the proxy backend of the chaos suite."""

    name = "proxy"

    def __init__(self, upstreams: Mapping[int, tuple[str, int]], host: str = "127.0.0.1",
                 seed: int | None = None) -> None:
        rng = random.Random(seed)
        self.host = host
        self.links: dict[Link, LinkProxy] = {
            (i, j): LinkProxy(i, j, upstreams[j], host, random.Random(rng.random()))
            for i in upstreams for j in upstreams if i != j
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            for proxy in self.links.values():
                await nursery.start(proxy.run)
            task_status.started()

    def address(self, src: int, dst: int) -> str:
        """The address node ``src`` must dial to reach ``dst``."""
        return f"{self.host}:{self.links[src, dst].port}"

    def peer_map(self, node: int) -> dict[int, str]:
        return {j: self.address(i, j) for (i, j) in self.links if i == node}

    # -- the Net interface ----------------------------------------------------------------

    async def cut(self, links: Iterable[Link]) -> None:
        """Block exactly ``links`` (src can no longer send to dst); unblock every other."""
        cut = set(links)
        for link, proxy in self.links.items():
            if link in cut:
                proxy.block()
            else:
                proxy.unblock()

    async def slow(self, links: Iterable[Link], delay: float, jitter: float) -> None:
        for link in links:
            self.links[link].set_latency(delay, jitter)

    async def heal(self) -> None:
        for proxy in self.links.values():
            proxy.set_latency(0.0, 0.0)
            proxy.unblock()

    async def close(self) -> None:
        await self.heal()
