"""Stand-in nodes serving one shared change feed over RESP, to test the watch exactly.

``Feed`` is the committed log of changes (what every node would serve); each ``FeedNode``
serves it like a RaftKV node's ``XREAD``/``XREVRANGE`` on ``__raftkv:changes[:glob]``, up to
its own ``applied`` index (a lagging follower), and can be killed (every connection and
the listener closed at once), paused (reads stop being answered), left without a leader,
or made to misbehave (answer from its last id inclusive: a duplicate).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import trio

from client.feed import FEED, ZERO, ChangeId
from raftkv.kv import stringmatch
from wire.reply import ErrorReply
from wire.resp import CommandParser, encode_reply


class Feed:
    def __init__(self) -> None:
        self.entries: list[tuple[ChangeId, list[bytes]]] = []
        self.floor = ZERO  # ids at or below this are compacted away
        self.changed = trio.Event()
        self._index = 0

    def write(self, key: str, value: str | None = None, op: str = "set", keys: int = 1) -> None:
        """One log entry changing ``keys`` keys (``key``, ``key.1``, ...)."""
        self._index += 1
        for pos in range(keys):
            name = key if pos == 0 else f"{key}.{pos}"
            fields = [b"op", op.encode(), b"key", name.encode()]
            if value is not None:
                fields += [b"value", value.encode()]
            self.entries.append((ChangeId(self._index, pos), fields))
        self.changed.set()
        self.changed = trio.Event()

    def skip(self, n: int = 1) -> None:
        """Log entries that change no key (no-ops, config): ids jump."""
        self._index += n

    def ids(self, pattern: bytes = b"*") -> list[str]:
        return [str(i) for i, f in self.entries if stringmatch(pattern, f[3])]


class FeedNode:
    def __init__(self, feed: Feed, *, leader: bool = True) -> None:
        self.feed = feed
        self.applied: int | None = None  # None: everything
        self.leader = leader
        self.paused = False  # set: commands are read but not answered (a SIGSTOPped node)
        self.served = trio.Event()  # set at each command received
        self.duplicate = False  # answer from the asked id inclusive
        self.seen: list[list[bytes]] = []
        self.addr = ""
        self._scope = trio.CancelScope()

    async def serve(self, nursery: trio.Nursery) -> str:
        listeners = await nursery.start(self._run)
        host, port = listeners[0].socket.getsockname()[:2]
        self.addr = f"{host}:{port}"
        return self.addr

    async def _run(self, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            await trio.serve_tcp(self.handle, 0, host="127.0.0.1", task_status=task_status)

    def kill(self) -> None:
        self._scope.cancel()

    async def handle(self, stream: trio.SocketStream) -> None:
        parser = CommandParser()
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                parser.feed(data)
                for cmd in parser:
                    self.seen.append(cmd)
                    self.served.set()
                    self.served = trio.Event()
                    if self.paused:
                        await trio.sleep_forever()
                    await stream.send_all(encode_reply(await self.answer(cmd)))

    def commands(self, name: bytes) -> list[list[bytes]]:
        return [c for c in self.seen if c[0].upper() == name]

    def _visible(self, pattern: bytes) -> list[tuple[ChangeId, list[bytes]]]:
        return [(i, f) for i, f in self.feed.entries
                if i > self.feed.floor and (self.applied is None or i.index <= self.applied)
                and stringmatch(pattern, f[3])]

    @staticmethod
    def _pattern(key: bytes) -> bytes | None:
        if key == FEED:
            return b"*"
        if key.startswith(FEED + b":"):
            return key[len(FEED) + 1:]
        return None

    async def answer(self, cmd: list[bytes]) -> object:
        name = cmd[0].upper()
        if name == b"INFO":
            addr = self.addr if self.leader else ""
            return f"# Raft\r\nleader_client_addr:{addr}\r\n".encode()
        if name == b"XREVRANGE":
            pattern = self._pattern(cmd[1])
            if pattern is None:
                return []
            newest = self._visible(pattern)[-1:]
            return [[str(i).encode(), f] for i, f in newest]
        if name != b"XREAD":
            return ErrorReply(f"ERR unknown command '{cmd[0].decode()}'")
        words = [w.upper() for w in cmd]
        count = int(cmd[words.index(b"COUNT") + 1])
        block_ms = int(cmd[words.index(b"BLOCK") + 1]) if b"BLOCK" in words else None
        key, after_text = cmd[-2], cmd[-1]
        pattern = self._pattern(key)
        if pattern is None:
            return ErrorReply("WRONGTYPE not the feed")
        after = ChangeId.parse(after_text)
        if after != ZERO and after < self.feed.floor:
            return ErrorReply(f"ERR change feed compacted: the oldest retained id is "
                              f"{self.feed.floor}")
        with trio.move_on_after((block_ms or 0) / 1000):
            while True:
                found = [(i, f) for i, f in self._visible(pattern)
                         if i > after or (self.duplicate and i == after)]
                if found or block_ms is None:
                    break
                await self.feed.changed.wait()
        if not found:
            return None
        return [[key, [[str(i).encode(), f] for i, f in found[:count]]]]


async def start_nodes(nursery: trio.Nursery, feed: Feed, n: int) -> list[FeedNode]:
    nodes = [FeedNode(feed) for _ in range(n)]
    for node in nodes:
        await node.serve(nursery)
    return nodes


class FeedThread:
    """Stand-in nodes in a trio loop of their own thread, for the blocking client."""

    def __init__(self, n: int) -> None:
        self.feed: Feed
        self.nodes: list[FeedNode] = []
        self._n = n
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self._ready.wait()

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.feed = Feed()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nodes = await start_nodes(nursery, self.feed, self._n)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def call(self, fn: Callable[[], object]) -> object:
        return trio.from_thread.run_sync(fn, trio_token=self.token)

    def close(self) -> None:
        self.call(self._stop.set)
        self._thread.join()
