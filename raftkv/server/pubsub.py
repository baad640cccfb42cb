"""Pub/Sub on one node: who is subscribed to what, and delivering messages to them.

PUBLISH is a log entry (raftkv.kv: ``publish``), so every node applies the same messages in
the same order; the applier tells ``PubSub.applied`` about each entry and this node hands
the entry's messages (and its keyspace notifications, raftkv.kv.notify) to its own
subscribers. A subscriber on any node therefore sees every message, in the log's order.

The reply to a plain ``PUBLISH`` is the number of this node's clients that receive it
(Redis counts the receiving server's subscribers; here each node delivers to its own), a
client counted once per matching channel or pattern subscription as Redis does.

A subscription is state of the connection (``Subscriptions``) mirrored in the node-wide
maps here, so a message finds its channel's receivers without walking every connection.

Pattern matching never stalls the node (attack3: 5,000 patterns on one connection held a
PUBLISH ~3 s, one ``?*?*b`` and a 4 MB channel 17 s). Each message is matched against
every distinct pattern of the node (raftkv.kv.glob: linear in the channel), and that work
is done by a *delivery queue* in slices: ``applied`` queues the entry's messages, runs
what fits in ``BUDGET`` work units at once, and the node's delivery task (``run``) does
the rest a slice at a time, yielding to the loop between slices. Messages stay in log
order (one FIFO for every message, channel or pattern). Each message is matched once per
node: PUBLISH's count (``count_receivers``, asked just before the entry is delivered on
the node that answers) and the delivery share the result through a small memo, valid
while the node's patterns are unchanged.

Bounds: a connection holds at most ``MAX_SUBSCRIPTIONS`` channels and patterns; a message
is pushed into the connection's reply queue and weighed into its output buffer, so a
subscriber that does not read is disconnected at the client output-buffer limit (Redis's
``client-output-buffer-limit pubsub``). The delivery queue holds at most ``MAX_BACKLOG``
messages and ``MAX_BACKLOG_BYTES``: past either, the node is matching more than it can,
and the connection holding the most patterns is disconnected (logged, counted in
``pubsub_backlog_disconnects``), as Redis drops a subscriber it cannot serve.

A node removed from the cluster applies nothing more, so its subscribers would wait for
good: the delivery task asks ``gone`` at least every ``GONE_RECHECK`` while anyone is
subscribed, and once it answers, every subscriber is disconnected (as ``ACL LOAD``
disconnects one that lost its channel); a client that reconnects to this node is told
why (SUBSCRIBE answers the removed node's TRYAGAIN) and goes to a member.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable
from typing import Any, Protocol

import attrs
import trio

from raftkv.kv.glob import STEP, Glob
from raftkv.kv.notify import ChangeLike, keyspace_messages
from raftkv.node.log_throttle import LogThrottle
from raftkv.node.pending import Pending
from raftkv.server.blocked_readers import GONE_RECHECK
from wire.reply import ErrorReply, Push, Replies

log = logging.getLogger("raftkv.pubsub")

MAX_SUBSCRIPTIONS = 10_000  # channels + patterns of one connection
TOO_MANY = (f"ERR too many subscriptions on this connection (at most {MAX_SUBSCRIPTIONS} "
            "channels and patterns)")
# What a RESP2 connection with subscriptions may run (Redis's subscribed mode).
SUBSCRIBED_MODE_COMMANDS = frozenset({b"subscribe", b"psubscribe", b"unsubscribe",
                                      b"punsubscribe", b"ping", b"quit", b"reset"})
BUDGET = 8192  # work units (raftkv.kv.glob: ~0.3 us each) per slice: about 2-3 ms
MAX_BACKLOG = 10_000  # messages queued for delivery on this node
MAX_BACKLOG_BYTES = 64 << 20  # their channels and payloads
DELIVERY_FAILED = ErrorReply("ERR Pub/Sub delivery failed on this node (see its log)")
_PATTERN_UNITS = 12  # a pattern's match beyond the matcher's own count (generators, calls)
_MEMO_ENTRIES = 256  # recent channels' pattern matches (PUBLISH's count, then delivery)
_MEMO_BYTES = 16 << 20
_MEMO_NAMES = 1_000_000


def subscribed_mode_error(name: bytes) -> str:
    """Redis's error for a command a RESP2 subscriber may not run."""
    return (f"ERR Can't execute '{name.decode(errors='replace')}': only (P|S)SUBSCRIBE / "
            "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")


NAME_OVERHEAD = 64  # a subscription's dict entries (the connection's and the node's)


@attrs.define
class Subscriptions:
    """One connection's channels and patterns (insertion order: UNSUBSCRIBE with no
    argument confirms them in the order they were subscribed)."""

    channels: dict[bytes, None] = attrs.Factory(dict)
    patterns: dict[bytes, None] = attrs.Factory(dict)
    # Their names' bytes (each plus NAME_OVERHEAD): the client port counts them with the
    # connection's query buffer against --client-buffer-total (attack8: 20 channels of
    # 8 MiB held 183 MB of a live node that no bound counted; 10,000 would be 80 GB).
    name_bytes: int = 0
    # Hands a message to the connection's reply queue (set by the client port while the
    # connection runs); False if it could not (the connection is closing).
    push: Callable[[Any], bool] | None = None

    @property
    def count(self) -> int:
        return len(self.channels) + len(self.patterns)


@attrs.define(slots=True, eq=False)
class _Job:
    """A message to deliver (``message`` None: only PUBLISH's count is wanted), or
    another matching job (``work`` given: PUBSUB CHANNELS pattern)."""

    channel: bytes
    message: bytes | None
    answer: Pending | None = None
    work: Generator[int, None, None] | None = None
    sent: int = 0  # pushes made

    @property
    def size(self) -> int:
        return len(self.channel) + len(self.message or b"")


class Subscriber(Protocol):
    """What the broker needs of a connection (raftkv.server.connection.Connection)."""

    id: int
    subs: Subscriptions
    scope: trio.CancelScope | None  # cancelled to disconnect it (None: not running)


class PubSub:
    """This node's subscriptions and the delivery of applied messages to them."""

    def __init__(self, notify_flags: int = 0,
                 gone: Callable[[], ErrorReply | None] | None = None,
                 on_listening: Callable[[bool], None] | None = None) -> None:
        self.gone = gone  # the node's reason it can deliver nothing more, else None
        # Told True when the first subscription is made, False when the last goes:
        # ``applied`` ignores an entry while there is none (the applier then skips it).
        self.on_listening = on_listening
        self._listening = False  # what ``on_listening`` was told last
        self.channels: dict[bytes, dict[int, Subscriber]] = {}
        self.patterns: dict[bytes, tuple[Glob, dict[int, Subscriber]]] = {}
        self.notify_flags = notify_flags  # notify-keyspace-events (raftkv.kv.notify)
        self.stats = {"pubsub_messages_delivered": 0, "pubsub_backlog_disconnects": 0,
                      "pubsub_gone_disconnects": 0}
        self._queue: deque[_Job] = deque()  # messages not fully delivered yet, in order
        self._queued_bytes = 0
        self._spent = 0  # work done outside the delivery task since it last ran
        self._wake = trio.Event()
        # Bumped whenever the set of pattern subscriptions changes: a memo of an older
        # generation is stale.
        self._generation = 0
        self._memo: OrderedDict[bytes, tuple[int, list[bytes]]] = OrderedDict()
        self._memo_bytes = 0
        self._memo_names = 0
        self._snapshot: tuple[int, list[bytes]] = (-1, [])
        # Connections with at least one pattern (the candidates when the queue is full).
        self._pattern_conns: dict[int, Subscriber] = {}
        self._throttle = LogThrottle(log, 10.0)

    # -- subscribing ------------------------------------------------------------------

    def subscribe(self, conn: Subscriber, channels: Iterable[bytes]) -> Replies:
        return self._add(conn, channels, b"subscribe", False)

    def psubscribe(self, conn: Subscriber, patterns: Iterable[bytes]) -> Replies:
        return self._add(conn, patterns, b"psubscribe", True)

    def unsubscribe(self, conn: Subscriber, channels: list[bytes]) -> Replies:
        return self._remove(conn, channels, b"unsubscribe", False)

    def punsubscribe(self, conn: Subscriber, patterns: list[bytes]) -> Replies:
        return self._remove(conn, patterns, b"punsubscribe", True)

    def _add(self, conn: Subscriber, names: Iterable[bytes], kind: bytes, pattern: bool) -> Replies:
        if self.gone is not None and not (self.channels or self.patterns):
            self._wake.set()  # the delivery task starts asking ``gone``
        try:
            return self._add_names(conn, names, kind, pattern)
        finally:
            self._tell_listening()

    def _add_names(self, conn: Subscriber, names: Iterable[bytes], kind: bytes,
                   pattern: bool) -> Replies:
        subs: Subscriptions = conn.subs
        mine = subs.patterns if pattern else subs.channels
        replies = []
        for name in names:
            if name not in mine:
                mine[name] = None
                subs.name_bytes += len(name) + NAME_OVERHEAD
                if pattern:
                    self._generation += 1
                    self._pattern_conns[conn.id] = conn
                    entry = self.patterns.get(name)
                    if entry is None:  # (parsed on its first match, in a slice)
                        entry = self.patterns[name] = (Glob(name), {})
                    entry[1][conn.id] = conn
                else:
                    self.channels.setdefault(name, {})[conn.id] = conn
            replies.append(Push((kind, name, subs.count)))
        return Replies(tuple(replies))

    def _remove(self, conn: Subscriber, names: list[bytes], kind: bytes, pattern: bool) -> Replies:
        subs: Subscriptions = conn.subs
        mine = subs.patterns if pattern else subs.channels
        if not names:
            if not mine:  # Redis: one confirmation with a null name
                return Replies((Push((kind, None, subs.count)),))
            names = list(mine)
        replies = []
        for name in names:
            if mine.pop(name, 1) is None:
                subs.name_bytes -= len(name) + NAME_OVERHEAD
                self._forget(conn.id, name, pattern)
            replies.append(Push((kind, name, subs.count)))
        if not subs.patterns:
            self._pattern_conns.pop(conn.id, None)
        return Replies(tuple(replies))

    def _forget(self, conn_id: int, name: bytes, pattern: bool) -> None:
        if pattern:
            entry = self.patterns.get(name)
            if entry is not None:
                self._generation += 1
                entry[1].pop(conn_id, None)
                if not entry[1]:
                    del self.patterns[name]
                    self._tell_listening()
        else:
            receivers = self.channels.get(name)
            if receivers is not None:
                receivers.pop(conn_id, None)
                if not receivers:
                    del self.channels[name]
                    self._tell_listening()

    def _tell_listening(self) -> None:
        """Tell ``on_listening`` when the first subscription was made or the last went."""
        listening = bool(self.channels or self.patterns)
        if listening is not self._listening:
            self._listening = listening
            if self.on_listening is not None:
                self.on_listening(listening)

    def drop(self, conn: Subscriber) -> None:
        """The connection is gone (or RESET): forget all its subscriptions."""
        subs: Subscriptions = conn.subs
        for name in subs.channels:
            self._forget(conn.id, name, False)
        for name in subs.patterns:
            self._forget(conn.id, name, True)
        subs.channels.clear()
        subs.patterns.clear()
        subs.name_bytes = 0
        self._pattern_conns.pop(conn.id, None)

    # -- delivering -------------------------------------------------------------------

    def applied(self, index: int, published: list[tuple[bytes, bytes]],
                changes: Iterable[ChangeLike] = ()) -> None:
        """An entry was applied: queue what it PUBLISHed, then its keyspace events, and
        deliver what fits in this turn's budget (the delivery task does the rest)."""
        if not self.channels and not self.patterns:
            return
        messages = list(published)
        if self.notify_flags:
            messages += keyspace_messages(changes, self.notify_flags)
        for channel, message in messages:
            self._enqueue(_Job(channel, message))
        if messages:
            self._pump(BUDGET - self._spent, outside=True)

    def count_receivers(self, channel: bytes) -> Pending:
        """PUBLISH's answer: how many subscriptions of this node's clients ``channel``
        reaches. Asked when the entry applied (just before it is delivered here) or when a
        forwarded PUBLISH's answer came back: queued, so the patterns are matched in a
        slice, and the match is remembered for the delivery (or taken from it)."""
        if not self.patterns:
            return Pending.of(len(self.channels.get(channel, ())))
        matched = self._memo_get(channel)
        if matched is not None:
            return Pending.of(self._count(channel, matched))
        job = _Job(channel, None, Pending())
        self._enqueue(job)
        assert job.answer is not None
        return job.answer

    def flush(self) -> None:
        """Deliver everything queued now, whatever it costs (for callers with no loop)."""
        while self._queue:
            self._pump(BUDGET)

    def _enqueue(self, job: _Job) -> None:
        if len(self._queue) >= MAX_BACKLOG or self._queued_bytes >= MAX_BACKLOG_BYTES:
            self._shed()
        self._queue.append(job)
        self._queued_bytes += job.size
        self._wake.set()

    def _shed(self) -> None:
        """The queue is full: this node matches more than it can. Disconnect the
        connection with the most patterns (its patterns are the work), as Redis drops a
        subscriber it cannot serve; the queued messages' remaining matches skip them.
        With no pattern left the queued work is cheap (a lookup a message), so the queue
        drains at the next slice."""
        if not self._pattern_conns:
            return
        conn = max(self._pattern_conns.values(), key=lambda c: len(c.subs.patterns))
        count = len(conn.subs.patterns)
        self.stats["pubsub_backlog_disconnects"] += 1
        self._throttle.log("backlog", logging.WARNING,
                           "pub/sub delivery backlog full: disconnecting the client with the "
                           "most patterns", conn=conn.id, patterns=count,
                           queued=len(self._queue), queued_bytes=self._queued_bytes)
        self.drop(conn)
        if conn.scope is not None:
            conn.scope.cancel()

    def _pump(self, budget: int, outside: bool = False) -> int:
        """Deliver queued messages in order until ``budget`` units of work are spent."""
        spent = 0
        queue = self._queue
        while queue and spent < budget:
            job = queue[0]
            if job.work is None:
                job.work = self._job_work(job)
            try:
                for units in job.work:
                    spent += units
                    if spent >= budget:
                        break
                else:
                    queue.popleft()
                    self._queued_bytes -= job.size
            except Exception as exc:  # a bug here must not stop delivery, or the node
                log.exception("pub/sub delivery failed", extra={"fields": {"error": repr(exc)}})
                queue.popleft()
                self._queued_bytes -= job.size
                if job.answer is not None:
                    job.answer.set(DELIVERY_FAILED)
        if outside:
            self._spent += spent
        return spent

    def pending(self) -> int:
        """Messages queued for delivery (or PUBLISH counts) not finished yet."""
        return len(self._queue)

    async def run(self) -> None:
        """The delivery task: work through the queue a slice at a time, yielding between
        slices (the client port runs it for as long as it serves)."""
        while True:
            if self.gone is not None and (self.channels or self.patterns):
                with trio.move_on_after(GONE_RECHECK):
                    await self._wake.wait()
                if self._disconnect_if_gone():
                    continue
            else:
                await self._wake.wait()
            self._wake = trio.Event()
            self._spent = 0
            while self._queue:
                self._pump(BUDGET)
                await trio.lowlevel.checkpoint()
            self._spent = 0

    def _disconnect_if_gone(self) -> bool:
        """If the node can deliver nothing more, disconnect every subscriber (True)."""
        assert self.gone is not None
        error = self.gone()
        if error is None:
            return False
        conns = {c.id: c for receivers in self.channels.values() for c in receivers.values()}
        conns.update(self._pattern_conns)
        for conn in conns.values():
            self.drop(conn)
            if conn.scope is not None:
                conn.scope.cancel()
        self.stats["pubsub_gone_disconnects"] += len(conns)
        self._throttle.log("gone", logging.WARNING, "disconnecting every subscriber",
                           reason=error.text, clients=len(conns))
        return True

    def _job_work(self, job: _Job) -> Generator[int, None, None]:
        """Match ``job``'s channel against the node's patterns (or take the memo), then
        deliver its message or answer its count; yields the work done."""
        channel = job.channel
        matched = self._memo_get(channel)
        if matched is None:
            generation, snapshot = self._patterns_snapshot()
            yield 1 + len(snapshot) // 256
            matched = []
            patterns = self.patterns
            size = len(channel)
            for name in snapshot:
                entry = patterns.get(name)  # (gone since: skipped)
                if entry is None:
                    continue
                glob = entry[0]
                cost = glob.cost(size)
                if cost is not None and cost <= STEP:  # the common case: at once
                    if glob.match(channel):
                        matched.append(name)
                    yield cost + _PATTERN_UNITS
                elif (yield from glob.steps(channel)):
                    matched.append(name)
                    yield _PATTERN_UNITS
                else:
                    yield _PATTERN_UNITS
            if generation == self._generation:
                self._memo_put(channel, generation, matched)
        if job.message is None:
            if job.answer is not None:
                job.answer.set(self._count(channel, matched))
            return
        job.sent = self._send_all(channel, job.message, matched)
        yield 1 + job.sent // 16

    def _send_all(self, channel: bytes, message: bytes, matched: list[bytes]) -> int:
        sent = 0
        receivers = self.channels.get(channel)
        if receivers:
            push = Push((b"message", channel, message))
            for conn in list(receivers.values()):
                sent += _send(conn, push)
        for name in matched:
            entry = self.patterns.get(name)
            if entry is not None:
                push = Push((b"pmessage", name, channel, message))
                for conn in list(entry[1].values()):
                    sent += _send(conn, push)
        self.stats["pubsub_messages_delivered"] += sent
        return sent

    def _count(self, channel: bytes, matched: list[bytes]) -> int:
        count = len(self.channels.get(channel, ()))
        for name in matched:
            entry = self.patterns.get(name)
            if entry is not None:
                count += len(entry[1])
        return count

    def _patterns_snapshot(self) -> tuple[int, list[bytes]]:
        """The node's pattern names as a list (a message's match runs over slices while
        subscriptions change), copied in C and only when they changed."""
        if self._snapshot[0] != self._generation:
            self._snapshot = (self._generation, list(self.patterns))
        return self._snapshot

    def _memo_get(self, channel: bytes) -> list[bytes] | None:
        found = self._memo.get(channel)
        if found is None or found[0] != self._generation:
            return None
        return found[1]

    def _memo_put(self, channel: bytes, generation: int, matched: list[bytes]) -> None:
        """Remember a match; the memo keeps the newest and at most ``_MEMO_ENTRIES``
        channels, ``_MEMO_BYTES`` of names and ``_MEMO_NAMES`` matched patterns."""
        old = self._memo.pop(channel, None)
        if old is not None:
            self._memo_bytes -= len(channel)
            self._memo_names -= len(old[1])
        self._memo[channel] = (generation, matched)
        self._memo_bytes += len(channel)
        self._memo_names += len(matched)
        while len(self._memo) > 1 and (len(self._memo) > _MEMO_ENTRIES
                                       or self._memo_bytes > _MEMO_BYTES
                                       or self._memo_names > _MEMO_NAMES):
            gone, (_, names) = self._memo.popitem(last=False)
            self._memo_bytes -= len(gone)
            self._memo_names -= len(names)

    # -- PUBSUB -----------------------------------------------------------------------

    def info(self) -> dict[str, int]:
        """INFO stats' Pub/Sub fields (Redis's two, and how many messages were pushed)."""
        return {"pubsub_channels": len(self.channels), "pubsub_patterns": len(self.patterns),
                **self.stats}

    def reset_stats(self) -> None:
        self.stats = dict.fromkeys(self.stats, 0)

    def active_channels(self, pattern: bytes | None) -> Pending:
        """PUBSUB CHANNELS [pattern]: with a pattern, a job of the delivery queue (every
        channel matched: sliced like a message's patterns)."""
        if pattern is None:
            return Pending.of(list(self.channels))
        answer = Pending()
        self._enqueue(_Job(pattern, None, answer, self._channels_work(pattern, answer)))
        self._pump(BUDGET - self._spent, outside=True)
        return answer

    def _channels_work(self, pattern: bytes, answer: Pending) -> Generator[int, None, None]:
        glob = Glob(pattern)
        names = list(self.channels)
        yield 1 + len(names) // 256
        found = []
        channels = self.channels
        for channel in names:
            if channel in channels and (yield from glob.steps(channel)):
                found.append(channel)
            yield _PATTERN_UNITS
        answer.set(found)

    def numsub(self, channels: list[bytes]) -> list[Any]:
        out: list[Any] = []
        for channel in channels:
            out += [channel, len(self.channels.get(channel, ()))]
        return out

    def numpat(self) -> int:
        return len(self.patterns)


def _send(conn: Subscriber, push: Push) -> int:
    deliver = conn.subs.push
    return 1 if deliver is not None and deliver(push) else 0
