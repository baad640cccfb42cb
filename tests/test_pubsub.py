"""Pub/Sub on one node (raftkv.server.pubsub, pubsub_cmd): subscriptions, Redis's reply
shapes, delivery and its counts, RESP2 subscribed mode, RESET, the per-connection bound and
CONFIG notify-keyspace-events. Connections here are in-memory: pushes land in a list."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import trio
from click.testing import CliRunner

from raftkv.cli import main
from raftkv.server.acl import AccessControl, parse_acl_text
from raftkv.server.commands import execute
from raftkv.server.connection import Connection
from raftkv.server.pubsub import MAX_SUBSCRIPTIONS, PubSub
from wire.reply import ErrorReply, Push, Replies, SimpleString
from wire.resp import encode_reply


@attrs.define
class Port:
    """What a connection sees of the client port."""

    acl: AccessControl = attrs.Factory(AccessControl.configure)
    pubsub: PubSub = attrs.Factory(PubSub)
    connections: dict[int, Connection] = attrs.Factory(dict)

    def info(self) -> dict[str, Any]:
        return {}

    def clients_info(self) -> dict[str, Any]:
        return {}

    def reset_stats(self) -> None:
        pass


def connect(port: Port, conn_id: int, proto: int = 2) -> tuple[Connection, list[Any]]:
    conn = Connection(conn_id, "127.0.0.1:1", proto=proto, server=port, user="default")
    inbox: list[Any] = []

    def push(value: Any) -> bool:
        inbox.append(value)
        return True

    conn.subs.push = push
    port.connections[conn_id] = conn
    return conn, inbox


def counted(pubsub: PubSub, channel: bytes) -> int:
    """PUBLISH's count for ``channel`` (queued behind any delivery: run the queue)."""
    answer = pubsub.count_receivers(channel)
    pubsub.flush()
    assert answer.done
    return int(answer.value)


MEMBER = SimpleNamespace(removed=False)  # what SUBSCRIBE asks of the node


def run(conn: Connection, *args: str | bytes, node: Any = MEMBER) -> Any:
    pending = execute(node, conn, [a.encode() if isinstance(a, str) else a for a in args])
    if not pending.done:  # PUBSUB CHANNELS pattern: a job of the delivery queue
        conn.server.pubsub.flush()
    assert pending.done
    return pending.value


def test_subscribe_confirms_each_channel_with_the_running_count() -> None:
    port = Port()
    conn, _ = connect(port, 1)
    assert run(conn, "SUBSCRIBE", "a", "b", "a") == Replies((
        Push((b"subscribe", b"a", 1)), Push((b"subscribe", b"b", 2)),
        Push((b"subscribe", b"a", 2))))
    assert run(conn, "PSUBSCRIBE", "n*") == Replies((Push((b"psubscribe", b"n*", 3)),))
    assert run(conn, "UNSUBSCRIBE", "b", "never") == Replies((
        Push((b"unsubscribe", b"b", 2)), Push((b"unsubscribe", b"never", 2))))
    assert run(conn, "UNSUBSCRIBE") == Replies((Push((b"unsubscribe", b"a", 1)),))
    assert run(conn, "UNSUBSCRIBE") == Replies((Push((b"unsubscribe", None, 1)),))
    assert run(conn, "PUNSUBSCRIBE") == Replies((Push((b"punsubscribe", b"n*", 0)),))
    assert port.pubsub.channels == {} and port.pubsub.patterns == {}
    # RESP2 bytes as Redis sends them (a null channel name is a null bulk)
    assert encode_reply(run(conn, "PUNSUBSCRIBE"), 2) == (
        b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n")


def test_delivery_reaches_channels_and_patterns_and_counts_each() -> None:
    port = Port()
    one, inbox1 = connect(port, 1)
    two, inbox2 = connect(port, 2, proto=3)
    run(one, "SUBSCRIBE", "news")
    run(one, "PSUBSCRIBE", "n?ws", "x*")
    run(two, "PSUBSCRIBE", "n*")
    assert counted(port.pubsub, b"news") == 3
    port.pubsub.applied(7, [(b"news", b"hi"), (b"other", b"no")], [])
    assert inbox1 == [Push((b"message", b"news", b"hi")),
                      Push((b"pmessage", b"n?ws", b"news", b"hi"))]
    assert inbox2 == [Push((b"pmessage", b"n*", b"news", b"hi"))]
    assert port.pubsub.info() == {"pubsub_channels": 1, "pubsub_patterns": 3,
                                  "pubsub_messages_delivered": 3,
                                  "pubsub_backlog_disconnects": 0,
                                  "pubsub_gone_disconnects": 0}
    assert " sub=1 psub=2 " in run(two, "CLIENT", "LIST").decode()
    assert run(two, "PUBSUB", "CHANNELS") == [b"news"]
    assert run(two, "PUBSUB", "CHANNELS", "x*") == []
    assert run(two, "PUBSUB", "NUMSUB", "news", "none") == [b"news", 1, b"none", 0]
    assert run(two, "PUBSUB", "NUMPAT") == 3
    port.pubsub.drop(one)  # the connection went away
    assert counted(port.pubsub, b"news") == 1
    assert run(two, "PUBSUB", "NUMPAT") == 1
    assert run(two, "PUBSUB", "NUMPAT", "x") == ErrorReply(
        "ERR wrong number of arguments for 'pubsub|numpat' command")


def test_resp2_subscribed_mode_allows_only_pubsub_ping_quit_reset() -> None:
    port = Port()
    conn, _ = connect(port, 1)
    assert run(conn, "PING") == SimpleString("PONG")
    run(conn, "SUBSCRIBE", "a")
    assert run(conn, "GET", "k") == ErrorReply(
        "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
        "RESET are allowed in this context")
    assert run(conn, "CLIENT", "ID").text.startswith("ERR Can't execute 'client'")
    assert run(conn, "PING") == [b"pong", b""]
    assert run(conn, "PING", "x") == [b"pong", b"x"]
    assert run(conn, "RESET") == SimpleString("RESET")
    assert conn.subs.count == 0 and port.pubsub.channels == {}
    assert run(conn, "PING") == SimpleString("PONG")


def test_resp3_subscribers_may_run_any_command() -> None:
    port = Port()
    conn, _ = connect(port, 1, proto=3)
    run(conn, "SUBSCRIBE", "a")
    assert run(conn, "CLIENT", "ID") == 1
    assert run(conn, "PING") == SimpleString("PONG")


def test_reset_leaves_multi_resp3_and_the_name() -> None:
    port = Port()
    conn, _ = connect(port, 1, proto=3)
    run(conn, "CLIENT", "SETNAME", "me")
    run(conn, "MULTI")
    assert run(conn, "RESET") == SimpleString("RESET")  # not queued
    assert conn.tx.queue is None and conn.proto == 2 and conn.name == ""


def test_a_connection_holds_a_bounded_number_of_subscriptions() -> None:
    port = Port()
    conn, _ = connect(port, 1, proto=3)
    names = [b"c%d" % i for i in range(MAX_SUBSCRIPTIONS - 1)]
    run(conn, "SUBSCRIBE", *names)
    run(conn, "PSUBSCRIBE", "p")
    refused = run(conn, "SUBSCRIBE", "one-more")
    assert isinstance(refused, ErrorReply) and "too many subscriptions" in refused.text
    assert b"one-more" not in port.pubsub.channels
    assert run(conn, "SUBSCRIBE", "c1") == Replies((Push((b"subscribe", b"c1",
                                                          MAX_SUBSCRIPTIONS)),))


def test_subscribe_needs_a_channel_and_pubsub_a_known_subcommand() -> None:
    port = Port()
    conn, _ = connect(port, 1)
    assert run(conn, "SUBSCRIBE") == ErrorReply(
        "ERR wrong number of arguments for 'subscribe' command")
    assert run(conn, "PUBSUB", "NOPE").text.startswith("ERR unknown subcommand 'NOPE'")


def test_keyspace_events_follow_config_set_on_this_node() -> None:
    port = Port()
    conn, inbox = connect(port, 1, proto=3)
    run(conn, "PSUBSCRIBE", "__key*__:*")

    @attrs.frozen
    class Change:
        op: str
        key: bytes
        value: bytes | None
        deadline_ms: int | None

    change = Change("set", b"k", b"v", None)
    port.pubsub.applied(1, [], [change])
    assert inbox == []  # off by default
    assert run(conn, "CONFIG", "SET", "notify-keyspace-events", "KEA") == SimpleString("OK")
    assert run(conn, "CONFIG", "GET", "notify-keyspace-events") == {
        b"notify-keyspace-events": b"AKE"}
    port.pubsub.applied(2, [], [change])
    assert inbox == [Push((b"pmessage", b"__key*__:*", b"__keyspace@0__:k", b"set")),
                     Push((b"pmessage", b"__key*__:*", b"__keyevent@0__:set", b"k"))]
    bad = run(conn, "CONFIG", "SET", "notify-keyspace-events", "KEQ")
    assert isinstance(bad, ErrorReply) and "Invalid event class character" in bad.text
    assert run(conn, "CONFIG", "GET", "notify-keyspace-events") == {
        b"notify-keyspace-events": b"AKE"}


def test_channel_rules_of_acl_users() -> None:
    acl = AccessControl(parse_acl_text(
        "user news on nopass ~* &news:* &exact +@all\n"
        "user none on nopass ~* +@all\n"
        "user every on nopass ~* allchannels +@all\n", "f"))
    port = Port(acl=acl)
    conn, _ = connect(port, 1, proto=3)
    denied = ErrorReply("NOPERM No permissions to access a channel")
    conn.user = "news"
    assert run(conn, "SUBSCRIBE", "news:a", "exact") == Replies((
        Push((b"subscribe", b"news:a", 1)), Push((b"subscribe", b"exact", 2))))
    assert run(conn, "SUBSCRIBE", "news:b", "sport") == denied  # all or nothing
    assert b"news:b" not in conn.subs.channels
    assert run(conn, "PSUBSCRIBE", "news:*") == Replies((Push((b"psubscribe", b"news:*", 3)),))
    assert run(conn, "PSUBSCRIBE", "news:a*") == denied  # a pattern must be one of the user's
    assert run(conn, "UNSUBSCRIBE", "sport") == Replies((Push((b"unsubscribe", b"sport", 3)),))
    conn.user = "none"  # a user named in a file starts with no channels (resetchannels)
    assert run(conn, "SUBSCRIBE", "news:a") == denied
    conn.user = "every"
    assert run(conn, "PSUBSCRIBE", "*") == Replies((Push((b"psubscribe", b"*", 4)),))
    assert acl.stats["acl_access_denied_channel"] == 3
    assert [u.describe().split(" ", 4)[4] for u in acl.users.values()][:3] == [
        "~* resetchannels &news:* &exact +@all", "~* resetchannels +@all", "~* &* +@all"]


def test_serve_refuses_unknown_notify_flags() -> None:
    result = CliRunner().invoke(main, ["serve", "--notify-keyspace-events", "KQ"])
    assert result.exit_code == 2
    assert "--notify-keyspace-events': unknown flag letter" in result.output


async def test_acl_load_closes_subscribers_whose_user_lost_the_channel(tmp_path: Path) -> None:
    path = tmp_path / "users.acl"
    path.write_text("user admin on nopass ~* &* +@all\nuser app on nopass ~* &a:* +@all\n")
    acl = AccessControl.configure(acl_file=str(path))
    port = Port(acl=acl)
    admin, _ = connect(port, 1, proto=3)
    admin.user = "admin"
    keeps, _ = connect(port, 2, proto=3)
    loses, _ = connect(port, 3, proto=3)
    idle, _ = connect(port, 4, proto=3)
    for conn in (admin, keeps, loses, idle):
        conn.scope = trio.CancelScope()
    keeps.user = loses.user = idle.user = "app"
    run(keeps, "SUBSCRIBE", "a:1")
    run(loses, "SUBSCRIBE", "a:1", "a:2")
    path.write_text("user admin on nopass ~* &* +@all\nuser app on nopass ~* &a:1 +@all\n")
    assert run(admin, "ACL", "LOAD") == SimpleString("OK")
    assert [c.scope.cancel_called for c in (admin, keeps, loses, idle)] == [
        False, False, True, False]
    path.write_text("user admin on nopass ~* &* +@all\nuser app off\n")
    assert run(admin, "ACL", "LOAD") == SimpleString("OK")
    assert keeps.scope.cancel_called and not idle.scope.cancel_called  # idle: no subscription


def test_a_removed_node_refuses_subscriptions() -> None:
    """attack7: SUBSCRIBE on a node removed from the cluster succeeded and then delivered
    nothing, ever (it applies no PUBLISH): TRYAGAIN now, as its other commands answer."""
    from raftkv.node.node import REMOVED

    conn, _ = connect(Port(), 1)
    removed = SimpleNamespace(removed=True)
    assert run(conn, "SUBSCRIBE", "ch", node=removed) == REMOVED
    assert run(conn, "PSUBSCRIBE", "c*", node=removed) == REMOVED
    assert not conn.subs.count


async def test_a_node_removed_later_disconnects_its_subscribers(
        autojump_clock: trio.testing.MockClock) -> None:
    """Subscribers connected before their node was removed waited for good (a removed node
    applies no PUBLISH): once the node says it is gone, every subscriber is disconnected,
    and a connection without subscriptions is left alone."""
    from raftkv.node.node import REMOVED

    node = SimpleNamespace(removed=False)
    pubsub = PubSub(gone=lambda: REMOVED if node.removed else None)
    port = Port(pubsub=pubsub)
    channel, _ = connect(port, 1)
    pattern, _ = connect(port, 2, proto=3)
    idle, _ = connect(port, 3)
    for conn in (channel, pattern, idle):
        conn.scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pubsub.run)
        await trio.sleep(5)  # the delivery task idles with nobody subscribed
        run(channel, "SUBSCRIBE", "a", "b")
        run(pattern, "PSUBSCRIBE", "a*")
        run(pattern, "SUBSCRIBE", "a")
        await trio.sleep(5)  # a member: nothing happens
        assert not any(c.scope.cancel_called for c in (channel, pattern, idle))
        node.removed = True
        await trio.sleep(1.5)
        assert [c.scope.cancel_called for c in (channel, pattern, idle)] == [True, True, False]
        assert not pubsub.channels and not pubsub.patterns
        assert pubsub.stats["pubsub_gone_disconnects"] == 2
        nursery.cancel_scope.cancel()
