"""The Pub/Sub commands of the client port: (P)SUBSCRIBE, (P)UNSUBSCRIBE, PUBSUB, PUBLISH.

SUBSCRIBE and friends change this connection's subscriptions on this node
(raftkv.server.pubsub) and answer one confirmation per channel, as pushes in RESP3 and
arrays in RESP2. PUBLISH goes through the log like any write (the state machine's
``publish``): the answer is, once it is applied, how many of this node's subscriptions the
channel reaches. PUBSUB CHANNELS|NUMSUB|NUMPAT describe this node's subscriptions, as a
Redis Cluster node describes its own.
"""

from __future__ import annotations

from typing import Any

from raftkv.kv.errors import unknown_subcommand
from raftkv.node.node import REMOVED, Node
from raftkv.node.pending import Pending
from raftkv.server.connection import Connection
from raftkv.server.pubsub import MAX_SUBSCRIPTIONS, TOO_MANY, PubSub
from wire.reply import ErrorReply


def _wrong_args(name: str) -> Pending:
    return Pending.of(ErrorReply(f"ERR wrong number of arguments for '{name}' command"))


_NO_PORT = Pending.of(ErrorReply("ERR Pub/Sub needs a client port"))


def _pubsub(conn: Connection) -> PubSub | None:
    return conn.server.pubsub if conn.server is not None else None


def _room(conn: Connection, names: list[bytes], pattern: bool) -> bool:
    """True if subscribing ``names`` keeps ``conn`` within MAX_SUBSCRIPTIONS."""
    mine = conn.subs.patterns if pattern else conn.subs.channels
    new = {name for name in names if name not in mine}
    return conn.subs.count + len(new) <= MAX_SUBSCRIPTIONS


def cmd_subscribe(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    # A removed node delivers nothing more (it applies no PUBLISH): TRYAGAIN, as the
    # rest of its commands (attack7: SUBSCRIBE there succeeded and waited for good).
    return Pending.of(REMOVED) if node.removed else _subscribe(conn, args, pattern=False)


def cmd_psubscribe(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return Pending.of(REMOVED) if node.removed else _subscribe(conn, args, pattern=True)


def _subscribe(conn: Connection, args: list[bytes], pattern: bool) -> Pending:
    name = "psubscribe" if pattern else "subscribe"
    if len(args) < 2:
        return _wrong_args(name)
    pubsub = _pubsub(conn)
    if pubsub is None:
        return _NO_PORT
    names = args[1:]
    if not _room(conn, names, pattern):
        return Pending.of(ErrorReply(TOO_MANY))
    if pattern:
        return Pending.of(pubsub.psubscribe(conn, names))
    return Pending.of(pubsub.subscribe(conn, names))


def cmd_unsubscribe(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    pubsub = _pubsub(conn)
    return _NO_PORT if pubsub is None else Pending.of(pubsub.unsubscribe(conn, args[1:]))


def cmd_punsubscribe(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    pubsub = _pubsub(conn)
    return _NO_PORT if pubsub is None else Pending.of(pubsub.punsubscribe(conn, args[1:]))


def cmd_pubsub(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) < 2:
        return _wrong_args("pubsub")
    pubsub = _pubsub(conn)
    if pubsub is None:
        return _NO_PORT
    sub = args[1].lower()
    if sub == b"channels":
        if len(args) > 3:
            return _wrong_args("pubsub|channels")
        return pubsub.active_channels(args[2] if len(args) == 3 else None)
    if sub == b"numsub":
        return Pending.of(pubsub.numsub(args[2:]))
    if sub == b"numpat":
        return _wrong_args("pubsub|numpat") if len(args) != 2 else Pending.of(pubsub.numpat())
    return Pending.of(unknown_subcommand(args[1], "pubsub"))


def publish(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    """PUBLISH outside MULTI: through the log (``node.submit`` validates it first), then
    this node's count of receivers; an error (TRYAGAIN, UNKNOWN, arity) as it is."""
    submitted = node.submit(args)
    pubsub = _pubsub(conn)
    if pubsub is None or len(args) != 3:
        return submitted
    channel = args[1]
    answer = Pending()

    def applied(value: Any) -> None:
        if type(value) is int:  # this node's count, once its patterns are matched
            pubsub.count_receivers(channel).add_callback(answer.set)
        else:
            answer.set(value)

    submitted.add_callback(applied)
    return answer
