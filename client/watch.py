"""``Watch``: follow the change feed (client.feed) as an async iterator that survives nodes.

Every node serves the same feed (ids are log positions), so the watch needs no help from
the cluster to resume: it keeps the id of the last change it received, and when its node
dies, hangs, loses its leader or answers nonsense, it asks the next node for what follows
that id. The node answers strictly after it, so nothing is received twice, and every
change after it (a follower first catches up to it), so nothing is skipped.

Decisions:

- ``start="$"`` is resolved to a concrete id (the newest change any node had at the
  start, by ``XREVRANGE __raftkv:changes + - COUNT 1``) before the first ``XREAD``: a
  watch that moved before its first change would otherwise start "from now" a second time
  and miss what happened in between.
- The watch holds its own connection (a blocked XREAD would hold the client's shared one)
  and does not seek the leader: a follower serves the feed up to its applied index.
- A node that answers "compacted" (it no longer keeps the log after our id, e.g. it just
  installed a snapshot) is skipped; only when every endpoint has said so does the watch
  raise ``FeedCompacted`` (like etcd's ErrCompacted: resync with SCAN, watch again).
- A node with no leader (a partitioned minority) cannot learn new changes: after an empty
  BLOCK round the watch asks ``INFO raft`` and moves on if the node names no leader
  (etcd's WithRequireLeader), so a watch is not stuck behind a partition.
- A reply with an id out of order, twice, or malformed is refused whole (``rejected``
  counts them) and the watch moves on: a broken node cannot make it yield a duplicate.
- Connection failures are retried forever with back-off (a watch is long-lived, like
  etcd's), unless ``give_up_after`` seconds pass without an answer from any node.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence

import trio

from client.commands import parse_info
from client.connection import TRANSPORT_ERRORS, Connection, failure_reason
from client.errors import ConnectionFailed, ResponseError
from client.feed import (
    FEED,
    ZERO,
    BadFeedReply,
    Change,
    ChangeId,
    check_order,
    feed_key,
    parse_range,
    parse_start,
    parse_xread,
)
from client.security import Security
from raftkv.backoff import Backoff
from wire.reply import ErrorReply

COMPACTED = "change feed compacted"  # in the server's error text
MAX_COUNT = 10_000


class FeedCompacted(ResponseError):
    """No node keeps the changes after the watch's last id any more: read the current
    state (SCAN) and watch again from the id it was read at."""


class _Move(Exception):
    """This node cannot serve the watch now; try the next one."""


class Watch:
    """``async for change in kv.watch("user:*"): ...``; see the module docstring.

    ``last_id`` is where the watch resumes (the last change received, or the resolved
    start); ``started_after`` the start (``"$"`` resolved once read); ``endpoint`` the
    node it reads from; ``resumes`` how often it moved to another node; ``rejected`` how
    many replies it refused as malformed or out of order.
    """

    def __init__(self, endpoints: Sequence[str], pattern: str | bytes = "*", start: str = "$",
                 *, security: Security | None = None, count: int = 1000, block: float = 1.0,
                 connect_timeout: float = 1.0, attempt_timeout: float = 6.0,
                 backoff_base: float = 0.05, backoff_cap: float = 1.0,
                 require_leader: bool = True, give_up_after: float | None = None,
                 rng: random.Random | None = None) -> None:
        if not endpoints:
            raise ValueError("no endpoints given")
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count must be 1..{MAX_COUNT}, got {count}")
        if not 0.001 <= block <= 3600:
            raise ValueError(f"block must be 0.001..3600 seconds, got {block}")
        self.endpoints = endpoints  # the client's list (it may learn more): read only
        self.key = feed_key(pattern)
        self.pattern = pattern
        self.last_id: ChangeId | None = parse_start(start)
        self.started_after = self.last_id  # "$" once resolved: the changes after it
        self.count = count
        self.block_ms = max(1, round(block * 1000))
        self.connect_timeout = connect_timeout
        self.attempt_timeout = attempt_timeout
        self.require_leader = require_leader
        self.give_up_after = give_up_after
        self.security = security
        self.resumes = 0
        self.rejected = 0
        self._backoff = Backoff(backoff_base, backoff_cap, rng or random.Random())
        self._buffer: deque[Change] = deque()
        self._conn: Connection | None = None
        self._next = 0  # index in endpoints of the node to try next
        self._compacted: set[str] = set()  # nodes that no longer keep our last id
        self._failing_since: float | None = None
        self._last_failure = ""
        self._closed = False
        self._scope: trio.CancelScope | None = None

    @property
    def endpoint(self) -> str | None:
        """The node this watch reads from right now, if connected."""
        return self._conn.addr if self._conn is not None else None

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Change:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            with trio.CancelScope() as self._scope:
                await self._round()
        return self._buffer.popleft()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: a pending ``__anext__`` (in another task) ends the iteration."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        await self._drop()

    # -- one round: read, or move to another node --------------------------------------------

    async def _round(self) -> None:
        try:
            await self._read()
        except _Move as exc:
            await self._move(str(exc))
        except BaseException:
            await self._drop()  # cancelled mid-request: a late reply would be misread
            raise

    async def _read(self) -> None:
        conn = await self._connection()
        try:
            with trio.fail_after(self.block_ms / 1000 + self.attempt_timeout):
                if self.last_id is None:
                    self.last_id = self.started_after = await self._newest(conn)
                after = self.last_id
                reply = await conn.request("XREAD", "COUNT", self.count, "BLOCK", self.block_ms,
                                           "STREAMS", self.key, str(after))
                if reply is None and self.require_leader and not await self._has_leader(conn):
                    raise _Move(f"{conn.addr} knows no leader")
        except (*TRANSPORT_ERRORS, trio.TooSlowError) as exc:
            raise _Move(f"{conn.addr}: {failure_reason(exc) or 'no answer in time'}") from exc
        if isinstance(reply, ErrorReply):
            self._refused(conn.addr, reply.text)
        try:
            changes = parse_xread(reply, self.key)
            check_order(changes, after)
        except BadFeedReply as exc:
            self.rejected += 1
            raise _Move(f"{conn.addr} answered a bad feed reply: {exc}") from exc
        self._succeeded()
        if changes:
            self._buffer.extend(changes)
            self.last_id = changes[-1].id

    async def _newest(self, conn: Connection) -> ChangeId:
        """The newest change's id on this node ("$" made concrete); 0-0 if it has none."""
        reply = await conn.request("XREVRANGE", FEED, "+", "-", "COUNT", 1)
        if isinstance(reply, ErrorReply):
            self._refused(conn.addr, reply.text)
        try:
            newest = parse_range(reply)
        except BadFeedReply as exc:
            self.rejected += 1
            raise _Move(f"{conn.addr} answered a bad XREVRANGE reply: {exc}") from exc
        return newest[0].id if newest else ZERO

    async def _has_leader(self, conn: Connection) -> bool:
        reply = await conn.request("INFO", "raft")
        if not isinstance(reply, bytes):
            return True  # not a RaftKV INFO: nothing to judge by
        return bool(parse_info(reply).get("leader_client_addr"))

    def _refused(self, addr: str, text: str) -> None:
        """An error reply: move on if another node may do better, else raise it."""
        if COMPACTED in text:
            self._compacted.add(addr)
            if self._compacted >= set(self.endpoints):
                raise FeedCompacted(text)
            raise _Move(f"{addr}: {text}")
        if text.startswith(("TRYAGAIN", "UNKNOWN", "LOADING", "BUSY", "MASTERDOWN")):
            raise _Move(f"{addr}: {text}")
        raise ResponseError(text)  # the request itself is wrong (or no feed here)

    # -- connections -------------------------------------------------------------------------

    async def _connection(self) -> Connection:
        if self._conn is not None and not self._conn.stale():
            return self._conn
        await self._leave()  # closed while idle (the node died): the next node
        errors = []
        for _ in range(len(self.endpoints)):
            addr = self.endpoints[self._next % len(self.endpoints)]
            self._next = (self._next + 1) % len(self.endpoints)
            try:
                with trio.fail_after(self.connect_timeout):
                    self._conn = await Connection.open(addr, self.security)
                # Stay here until it fails; the next failure moves on from here.
                self._next = (self._next - 1) % len(self.endpoints)
                return self._conn
            except (OSError, trio.TooSlowError) as exc:
                errors.append(f"{addr}: {failure_reason(exc) or 'connect timed out'}")
        raise _Move("could not reach any node: " + "; ".join(errors))

    async def _move(self, reason: str) -> None:
        """Drop this node, wait the back-off, and let the next round try the next one."""
        await self._leave()
        now = trio.current_time()
        if self._failing_since is None:
            self._failing_since = now
        self._last_failure = reason
        if self.give_up_after is not None and now - self._failing_since >= self.give_up_after:
            raise ConnectionFailed(f"the watch found no node to read from for "
                                   f"{self.give_up_after}s; last: {reason}")
        delay = self._backoff.delay()
        self._backoff.failed()
        await trio.sleep(delay)

    def _succeeded(self) -> None:
        self._failing_since = None
        self._backoff.failures = 0
        self._compacted.clear()

    async def _leave(self) -> None:
        """Drop this node's connection; the next connection tries the next node."""
        if self._conn is not None:
            self._next = (self._next + 1) % len(self.endpoints)
            self.resumes += 1
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    def __repr__(self) -> str:
        return (f"<Watch {self.key.decode(errors='replace')} after {self.last_id} on "
                f"{self.endpoint}>")

