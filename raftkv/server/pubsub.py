"""Pub/Sub on one node: who is subscribed to what, and delivering messages to them.

PUBLISH is a log entry (raftkv.kv: ``publish``), so every node applies the same messages in
the same order; the applier tells ``PubSub.applied`` about each entry and this node hands
the entry's messages (and its keyspace notifications, raftkv.kv.notify) to its own
subscribers. A subscriber on any node therefore sees every message, in the log's order.

The reply to a plain ``PUBLISH`` is the number of this node's clients that receive it
(Redis counts the receiving server's subscribers; here each node delivers to its own), a
client counted once per matching channel or pattern subscription as Redis does.

A subscription is state of the connection (``Subscriptions``) mirrored in the node-wide
maps here, so a message finds its receivers without walking every connection. Bounds: a
connection holds at most ``MAX_SUBSCRIPTIONS`` channels and patterns; a message is pushed
into the connection's reply queue and weighed into its output buffer, so a subscriber that
does not read is disconnected at the client output-buffer limit (Redis's
``client-output-buffer-limit pubsub``), never buffered without end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs

from raftkv.kv.glob import Glob
from raftkv.kv.notify import ChangeLike, keyspace_messages
from wire.reply import Push, Replies

log = logging.getLogger("raftkv.server")

MAX_SUBSCRIPTIONS = 10_000  # channels + patterns of one connection
TOO_MANY = (f"ERR too many subscriptions on this connection (at most {MAX_SUBSCRIPTIONS} "
            "channels and patterns)")
# What a RESP2 connection with subscriptions may run (Redis's subscribed mode).
SUBSCRIBED_MODE_COMMANDS = frozenset({b"subscribe", b"psubscribe", b"unsubscribe",
                                      b"punsubscribe", b"ping", b"quit", b"reset"})


def subscribed_mode_error(name: bytes) -> str:
    """Redis's error for a command a RESP2 subscriber may not run."""
    return (f"ERR Can't execute '{name.decode(errors='replace')}': only (P|S)SUBSCRIBE / "
            "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")


@attrs.define
class Subscriptions:
    """One connection's channels and patterns (insertion order: UNSUBSCRIBE with no
    argument confirms them in the order they were subscribed)."""

    channels: dict[bytes, None] = attrs.Factory(dict)
    patterns: dict[bytes, None] = attrs.Factory(dict)
    # Hands a message to the connection's reply queue (set by the client port while the
    # connection runs); False if it could not (the connection is closing).
    push: Callable[[Any], bool] | None = None

    @property
    def count(self) -> int:
        return len(self.channels) + len(self.patterns)


class Subscriber(Protocol):
    """What the broker needs of a connection (raftkv.server.connection.Connection)."""

    id: int
    subs: Subscriptions


class PubSub:
    """This node's subscriptions and the delivery of applied messages to them."""

    def __init__(self, notify_flags: int = 0) -> None:
        self.channels: dict[bytes, dict[int, Subscriber]] = {}
        self.patterns: dict[bytes, tuple[Glob, dict[int, Subscriber]]] = {}
        self.notify_flags = notify_flags  # notify-keyspace-events (raftkv.kv.notify)
        self.stats = {"pubsub_messages_delivered": 0}

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
        subs: Subscriptions = conn.subs
        mine = subs.patterns if pattern else subs.channels
        replies = []
        for name in names:
            if name not in mine:
                mine[name] = None
                if pattern:
                    entry = self.patterns.get(name)
                    if entry is None:
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
                self._forget(conn.id, name, pattern)
            replies.append(Push((kind, name, subs.count)))
        return Replies(tuple(replies))

    def _forget(self, conn_id: int, name: bytes, pattern: bool) -> None:
        if pattern:
            entry = self.patterns.get(name)
            if entry is not None:
                entry[1].pop(conn_id, None)
                if not entry[1]:
                    del self.patterns[name]
        else:
            receivers = self.channels.get(name)
            if receivers is not None:
                receivers.pop(conn_id, None)
                if not receivers:
                    del self.channels[name]

    def drop(self, conn: Subscriber) -> None:
        """The connection is gone (or RESET): forget all its subscriptions."""
        subs: Subscriptions = conn.subs
        for name in subs.channels:
            self._forget(conn.id, name, False)
        for name in subs.patterns:
            self._forget(conn.id, name, True)
        subs.channels.clear()
        subs.patterns.clear()

    # -- delivering -------------------------------------------------------------------

    def applied(self, index: int, published: list[tuple[bytes, bytes]],
                changes: Iterable[ChangeLike] = ()) -> None:
        """An entry was applied: deliver what it PUBLISHed, then its keyspace events."""
        if not self.channels and not self.patterns:
            return
        for channel, message in published:
            self.deliver(channel, message)
        if self.notify_flags:
            for channel, message in keyspace_messages(changes, self.notify_flags):
                self.deliver(channel, message)

    def deliver(self, channel: bytes, message: bytes) -> int:
        """Push ``message`` to this node's subscribers of ``channel``; how many got it."""
        sent = 0
        receivers = self.channels.get(channel)
        if receivers:
            push = Push((b"message", channel, message))
            for conn in list(receivers.values()):
                sent += _send(conn, push)
        for pattern, (glob, conns) in list(self.patterns.items()):
            if glob.match(channel):
                push = Push((b"pmessage", pattern, channel, message))
                for conn in list(conns.values()):
                    sent += _send(conn, push)
        self.stats["pubsub_messages_delivered"] += sent
        return sent

    def receivers(self, channel: bytes) -> int:
        """How many subscriptions of this node's clients ``channel`` reaches (PUBLISH)."""
        count = len(self.channels.get(channel, ()))
        for glob, conns in self.patterns.values():
            if glob.match(channel):
                count += len(conns)
        return count

    # -- PUBSUB -----------------------------------------------------------------------

    def info(self) -> dict[str, int]:
        """INFO stats' Pub/Sub fields (Redis's two, and how many messages were pushed)."""
        return {"pubsub_channels": len(self.channels), "pubsub_patterns": len(self.patterns),
                **self.stats}

    def reset_stats(self) -> None:
        self.stats = dict.fromkeys(self.stats, 0)

    def active_channels(self, pattern: bytes | None) -> list[bytes]:
        if pattern is None:
            return list(self.channels)
        match = Glob(pattern).match
        return [channel for channel in self.channels if match(channel)]

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
