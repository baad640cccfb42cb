"""Watchers for ``raftkv-chaos run --watchers N``: client.watch under the nemesis.

Watcher ``i`` starts on node ``i mod n`` (its endpoint list begins there) with a filter of
its own (the whole feed, a subset of the workload's keys, single-character keys, the
counter), all after the feed's newest id at the start of the run, and records every change
it receives while the nemesis kills, pauses and cuts nodes; it moves between nodes as the
client library does. At the end (every fault healed, the writers stopped), ``settle``
reads the full feed from the leader, waits for each watcher to reach the feed's end for its
filter, stops them and hands everything to chaos.watch_check.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

import trio

from chaos.counters import Verdict
from chaos.history import Op
from chaos.watch_check import WatchLog, check_watch, matches
from chaos.workload import Addr, client_security
from client.connection import TRANSPORT_ERRORS, Connection
from client.errors import RaftKVError
from client.feed import FEED, ZERO, BadFeedReply, Change, ChangeId, parse_range
from client.watch import COMPACTED, Watch
from wire.reply import ErrorReply

PAGE = 1000  # XRANGE page when reading the whole feed


def patterns(prefix: str) -> list[str]:
    """The filters watchers cycle through: all, a subset, one-character names, the counter."""
    return ["*", f"{prefix}[0-3]", f"{prefix}?", f"{prefix}ctr"]


async def _request(addr: Addr, *args: object, patience: float = 10.0) -> object:
    conn = None
    try:
        with trio.fail_after(patience):
            conn = await Connection.open_host(*addr, security=client_security())
            return await conn.request(*args)  # type: ignore[arg-type]
    finally:
        if conn is not None:
            await conn.aclose()


async def newest_id(addrs: Sequence[Addr], patience: float = 30.0) -> ChangeId:
    """The feed's newest id on the first node that answers (0-0 for an empty feed)."""
    last: object = None
    with trio.move_on_after(patience):
        while True:
            for addr in addrs:
                try:
                    reply = await _request(addr, "XREVRANGE", FEED, "+", "-", "COUNT", 1,
                                           patience=2.0)
                    newest = parse_range(reply)
                    return newest[0].id if newest else ZERO
                except (*TRANSPORT_ERRORS, trio.TooSlowError, BadFeedReply) as exc:
                    last = exc
            await trio.sleep(0.2)  # polling other processes: no event to wait on
    raise RuntimeError(f"no node answered XREVRANGE on the feed: {last!r}")


async def read_feed(addr: Addr, patience: float = 30.0) -> list[Change]:
    """The whole feed (``XRANGE __raftkv:changes - +``, a page at a time) from one node,
    after a linearizable read on the same connection: the node serves the feed up to its
    applied index, and the read waits until that covers every committed write."""
    out: list[Change] = []
    start = "-"
    with trio.fail_after(patience):
        conn = await Connection.open_host(*addr, security=client_security())
        try:
            barrier = await conn.request("GET", "__raftkv:watch-check-barrier")
            if isinstance(barrier, ErrorReply):
                raise RuntimeError(f"read barrier on {addr}: {barrier.text}")
            while True:
                reply = await conn.request("XRANGE", FEED, start, "+", "COUNT", PAGE)
                if isinstance(reply, ErrorReply):
                    raise RuntimeError(f"XRANGE on the feed: {reply.text}")
                page = parse_range(reply)
                if not page:  # (a short page is not the end: a reply is also bounded in
                    return out  # bytes, ~16 MiB, so big values cut it short: attack11)
                out += page
                start = f"{page[-1].index}-{page[-1].position + 1}"
        finally:
            await conn.aclose()


async def holds(addr: Addr, after: ChangeId) -> bool:
    """False if the node answers that the feed after ``after`` was compacted away. For
    0-0 it asks after 0-1: ``0``/``0-0`` read from the oldest retained change and are
    never "compacted", so a run from the start whose feed retention had trimmed was
    judged complete, and its writes "missing from the feed" (attack11)."""
    raw = "0-1" if after == ChangeId(0, 0) else str(after)
    reply = await _request(addr, "XREAD", "COUNT", 1, "STREAMS", FEED, raw)
    return not (isinstance(reply, ErrorReply) and COMPACTED in reply.text)


async def _numbered(watch: Watch) -> AsyncIterator[tuple[int, Change]]:
    n = 0
    async for change in watch:
        n += 1
        yield n, change


class WatchFleet:
    """N watchers, their records, and the final check."""

    def __init__(self, count: int, addrs: dict[int, Addr], prefix: str, seed: int,
                 drop_every: int = 0) -> None:
        self.addrs = addrs
        # TEST ONLY (>0): watcher 0 forgets every drop_every-th change, so the check must
        # find a gap in a real run.
        self.drop_every = drop_every
        self.count = count
        self.prefix = prefix
        self.seed = seed
        self.start = ZERO
        self.watches: list[Watch] = []
        self.names: list[str] = []
        self.events: list[list[Change]] = []
        self.errors: list[str | None] = []
        # The last change each watcher's iterator yielded, forgotten ones included: what
        # settle waits for. A watcher that forgot the feed's last change has still read up
        # to it; waiting for its events to show it waited out the whole patience.
        self.seen: list[ChangeId] = []
        self._progress = trio.Event()  # set when any watcher received a change or ended

    async def start_all(self, nursery: trio.Nursery) -> None:
        nodes = sorted(self.addrs)
        self.start = await newest_id([self.addrs[n] for n in nodes])
        cycle = patterns(self.prefix)
        for i in range(self.count):
            first = i % len(nodes)
            order = nodes[first:] + nodes[:first]
            endpoints = [f"{self.addrs[n][0]}:{self.addrs[n][1]}" for n in order]
            watch = Watch(endpoints, cycle[i % len(cycle)], str(self.start),
                          security=client_security(), block=1.0, attempt_timeout=3.0,
                          rng=random.Random(f"chaos-watch-{self.seed}-{i}"))
            self.watches.append(watch)
            self.names.append(f"w{i}@n{order[0]}")
            self.events.append([])
            self.seen.append(self.start)
            self.errors.append(None)
            nursery.start_soon(self._follow, i)

    async def _follow(self, i: int) -> None:
        try:
            async for n, change in _numbered(self.watches[i]):
                self.seen[i] = change.id
                if not (i == 0 and self.drop_every and n % self.drop_every == 0):
                    self.events[i].append(change)
                self._wake()
        except RaftKVError as exc:
            self.errors[i] = f"{type(exc).__name__}: {exc}"
        finally:
            self._wake()

    def _wake(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def settle(self, leader: Callable[[], Awaitable[Addr | None]], history: Iterable[Op],
                     keys: Iterable[str], patience: float = 30.0) -> Verdict:
        """Read the feed, let every watcher catch up (within ``patience``), check."""
        addr = await leader()
        if addr is None:
            return Verdict(False, "no leader to read the feed from after healing")
        try:
            feed = await read_feed(addr)
            complete = await holds(addr, self.start)
        except (*TRANSPORT_ERRORS, trio.TooSlowError, BadFeedReply, RuntimeError) as exc:
            await self.close()
            return Verdict(False, f"could not read the feed from {addr}: {exc!r}")
        targets = [max((c.id for c in feed if matches(str(w.pattern), c)
                        and c.id > self.start), default=self.start) for w in self.watches]

        def behind() -> list[int]:
            return [i for i in range(len(self.watches))
                    if self.errors[i] is None and self.seen[i] < targets[i]]

        with trio.move_on_after(patience):
            while behind():
                await self._progress.wait()
        late = set(behind())
        await self.close()
        logs = [WatchLog(self.names[i], str(w.pattern), self.start, tuple(self.events[i]),
                         self._reached(i), w.resumes, w.rejected, self.errors[i],
                         i not in late) for i, w in enumerate(self.watches)]
        return check_watch(logs, feed, history, keys, complete)

    def _reached(self, i: int) -> ChangeId:
        """The last change watcher ``i`` handed to its reader (not just received)."""
        return self.events[i][-1].id if self.events[i] else self.start

    async def close(self) -> None:
        for w in self.watches:
            await w.aclose()
