"""A scripted stand-in for a node's client port, to test the client's retry rules exactly.

Every command except ``INFO`` (the client's leader probe) is recorded in ``seen`` and
answered by the next scripted action: reply bytes, ``CLOSE`` (read the command, close
without replying), ``HANG`` (read it, never reply), ``Then(reply, CLOSE)`` (reply,
then close the idle connection) or ``Later(reply, event)`` (reply once the event is set).
With the script used up, commands get ``default``. An ``AUTH`` with a password in
``refused_passwords`` is recorded and answered ``WRONGPASS``, whatever the script says.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable

import attrs
import trio

from wire.resp import CommandParser, encode_reply

CLOSE = "close"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
HANG = "hang"


async def received_commands(stream: trio.SocketStream) -> AsyncIterator[list[bytes]]:
    """The commands a client sends on ``stream``, as they arrive, until it hangs up."""
    parser = CommandParser()
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        parser.feed(data)
        for cmd in parser:
            yield cmd


@attrs.frozen
class Then:
    reply: bytes
    after: str


@attrs.frozen
class Later:
    """Reply only once ``release`` is set."""

    reply: bytes
    release: trio.Event


class FakeNode:
    def __init__(self, actions: Iterable[bytes | str | Then] = (), leader_addr: str = "",
                 default: bytes = b"+OK\r\n") -> None:
        self.actions = deque(actions)
        self.leader_addr = leader_addr
        self.default = default
        self.seen: list[list[bytes]] = []
        self.connections = 0
        self.probes = 0  # INFO requests (the client's leader probes)
        self.closed = trio.Event()  # set once the node has closed a connection itself
        self.addr = ""
        self.refused_passwords: set[bytes] = set()  # (a password rotated away)

    async def serve(self, nursery: trio.Nursery) -> str:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1"))
        host, port = listeners[0].socket.getsockname()[:2]
        self.addr = f"{host}:{port}"
        return self.addr

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            async for cmd in received_commands(stream):
                if cmd[0].upper() == b"INFO":
                    self.probes += 1
                    info = f"# Raft\r\nleader_client_addr:{self.leader_addr}\r\n"
                    await stream.send_all(encode_reply(info.encode()))
                    continue
                self.seen.append(cmd)
                if cmd[0].upper() == b"AUTH" and cmd[-1] in self.refused_passwords:
                    await stream.send_all(WRONGPASS)
                    continue
                action = self.actions.popleft() if self.actions else self.default
                if action == HANG:
                    await trio.sleep_forever()
                if action == CLOSE:
                    await self._close(stream)
                    return
                if isinstance(action, Later):
                    await action.release.wait()
                    with contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(action.reply)
                    continue
                if isinstance(action, Then):
                    await stream.send_all(action.reply)
                    await self._close(stream)
                    return
                assert isinstance(action, bytes)
                await stream.send_all(action)

    async def _close(self, stream: trio.SocketStream) -> None:
        await stream.aclose()
        self.closed.set()

    def commands(self, name: bytes) -> list[list[bytes]]:
        return [c for c in self.seen if c[0].upper() == name]


def closed_port() -> str:
    """An address on 127.0.0.1 where nothing listens: connecting is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"
