"""Pub/Sub pattern matching cannot stall a node (attack3, issue 12): it runs in slices of
bounded work, in log order, once per message per node, with a bounded queue. Work is
counted in the matcher's units (raftkv.kv.glob), never timed."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

from raftkv.kv import notify
from raftkv.kv.glob import STEP, Glob
from raftkv.server import pubsub as pubsub_module
from raftkv.server.pubsub import BUDGET, PubSub, Subscriptions
from wire.reply import Push


@attrs.define(eq=False)
class Conn:
    id: int
    subs: Subscriptions = attrs.Factory(Subscriptions)
    scope: trio.CancelScope | None = None
    inbox: list[Any] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        def push(value: Any) -> bool:
            self.inbox.append(value)
            return True
        self.subs.push = push


@attrs.frozen
class Change:
    op: str
    key: bytes
    value: bytes | None
    deadline_ms: int | None = None


SLOW = [f"?*?*?*?*?*?*?*?*b{i}".encode() for i in range(3000)]  # the attack's patterns


def drain(ps: PubSub) -> list[int]:
    """Run the queue a slice at a time, as the delivery task does; each slice's work."""
    slices = []
    while ps.pending():
        slices.append(ps._pump(BUDGET))
    return slices


def test_many_patterns_are_matched_in_bounded_slices_and_in_log_order() -> None:
    ps = PubSub()
    attacker, reader = Conn(1), Conn(2)
    ps.psubscribe(attacker, SLOW)
    ps.subscribe(reader, [b"c"])
    ps.psubscribe(reader, [b"c*"])
    ps.applied(1, [(b"c", b"one")])
    assert ps.pending() > 0  # more than one slice of work: left for the delivery task
    ps.applied(2, [(b"c", b"two")])
    slices = drain(ps)
    assert len(slices) >= 3
    assert max(slices) <= BUDGET + 2 * STEP
    # Log order for the reader, channel and pattern subscription alike (Redis's order).
    assert reader.inbox == [
        Push((b"message", b"c", b"one")), Push((b"pmessage", b"c*", b"c", b"one")),
        Push((b"message", b"c", b"two")), Push((b"pmessage", b"c*", b"c", b"two"))]
    assert attacker.inbox == []


def test_a_quiet_node_delivers_at_once() -> None:
    ps = PubSub()
    conn = Conn(1)
    ps.psubscribe(conn, [b"n*"])
    ps.subscribe(conn, [b"news"])
    ps.applied(1, [(b"news", b"hi")])
    assert ps.pending() == 0
    assert conn.inbox == [Push((b"message", b"news", b"hi")),
                          Push((b"pmessage", b"n*", b"news", b"hi"))]


def test_many_connections_times_many_patterns_are_sliced_too() -> None:
    ps = PubSub()
    conns = [Conn(i) for i in range(10)]
    for i, conn in enumerate(conns):
        ps.psubscribe(conn, [f"*[ab]{i}.{j}?*".encode() for j in range(100)])
    ps.applied(1, [(b"x" * 500, b"m")])
    slices = drain(ps)
    assert len(slices) >= 4 and max(slices) <= BUDGET + 2 * STEP


@pytest.fixture
def counted_matches(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every pattern match the broker runs (in steps or at once), by pattern."""
    calls: list[bytes] = []
    steps, match = Glob.steps, Glob.match

    def counting_steps(self: Glob, string: bytes) -> Any:
        calls.append(self.pattern)
        return steps(self, string)

    def counting_match(self: Glob, string: bytes) -> bool:
        calls.append(self.pattern)
        return match(self, string)
    monkeypatch.setattr(Glob, "steps", counting_steps)
    monkeypatch.setattr(Glob, "match", counting_match)
    return calls


def test_publish_count_and_delivery_match_once_on_the_answering_node(
        counted_matches: list[bytes]) -> None:
    """The leader's PUBLISH asks its count as the entry applies, just before delivery."""
    ps = PubSub()
    conns = [Conn(1), Conn(2)]
    ps.psubscribe(conns[0], [b"n*", b"x*", b"?ews"])
    ps.psubscribe(conns[1], [b"n*"])
    ps.applied(1, [(b"warm", b"up")])  # the patterns are parsed: later matches run at once
    assert ps.pending() == 0
    counted_matches.clear()
    answer = ps.count_receivers(b"news")
    ps.applied(1, [(b"news", b"hi")])
    drain(ps)
    assert answer.done and answer.value == 3
    assert sorted(counted_matches) == [b"?ews", b"n*", b"x*"]  # each pattern once
    assert len(conns[0].inbox) == 2 and len(conns[1].inbox) == 1


def test_a_follower_counts_first_and_delivers_later_with_one_match(
        counted_matches: list[bytes]) -> None:
    """A forwarded PUBLISH's answer usually reaches the follower before it applies."""
    ps = PubSub()
    conn = Conn(1)
    ps.psubscribe(conn, [b"n*", b"x*"])
    answer = ps.count_receivers(b"news")
    drain(ps)
    assert answer.value == 1
    ps.applied(7, [(b"news", b"hi")])
    drain(ps)
    assert sorted(counted_matches) == [b"n*", b"x*"]
    assert conn.inbox == [Push((b"pmessage", b"n*", b"news", b"hi"))]


def test_a_subscription_change_between_count_and_delivery_is_seen(
        counted_matches: list[bytes]) -> None:
    ps = PubSub()
    one, two = Conn(1), Conn(2)
    ps.psubscribe(one, [b"n*"])
    assert ps.count_receivers(b"news").done is False
    drain(ps)
    ps.psubscribe(two, [b"*s"])  # the memo of "news" is stale now
    ps.applied(1, [(b"news", b"hi")])
    drain(ps)
    assert two.inbox == [Push((b"pmessage", b"*s", b"news", b"hi"))]
    assert ps.count_receivers(b"news").value == 2  # the delivery's match, remembered


async def test_a_full_queue_disconnects_the_connection_with_the_most_patterns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pubsub_module, "MAX_BACKLOG", 5)
    ps = PubSub()
    attacker, other = Conn(1, scope=trio.CancelScope()), Conn(2, scope=trio.CancelScope())
    ps.psubscribe(attacker, SLOW[:2000])
    ps.psubscribe(other, [b"n*"])
    for index in range(5):
        ps.applied(index, [(b"news", b"m")])
    assert ps.pending() == 5 and ps.stats["pubsub_backlog_disconnects"] == 0
    ps.applied(6, [(b"news", b"m")])  # the queue was full
    assert ps.stats["pubsub_backlog_disconnects"] == 1
    assert attacker.scope is not None and attacker.scope.cancel_called
    assert other.scope is not None and not other.scope.cancel_called
    assert not attacker.subs.patterns and ps.numpat() == 1
    drain(ps)  # what is left costs no more than the remaining pattern
    assert len(other.inbox) == 6


def test_keyspace_events_of_a_huge_key_cost_linear_work_in_slices() -> None:
    """``__keyspace@0__:<key>`` with a 1 MB key and many patterns, every node: the same
    bound; 10x the key costs at most about 10x the work."""
    work = []
    for size in (100_000, 1_000_000):
        ps = PubSub(notify.parse_flags("KA") or 0)
        conns = [Conn(i) for i in range(4)]
        for i, conn in enumerate(conns):
            ps.psubscribe(conn, [f"__keyspace@0__:*[ab]{i}.{j}?*".encode() for j in range(10)]
                          + [b"__keyspace@0__:*"])
        ps.applied(1, [], [Change("set", b"k" * size, b"v")])
        slices = drain(ps)
        assert max(slices) <= BUDGET + 2 * STEP
        work.append(sum(slices))
        assert all(len(conn.inbox) == 1 for conn in conns)
    assert work[1] <= 11 * work[0]
    assert work[1] >= 2 * BUDGET  # a 1 MB key's matches take several slices


async def test_the_delivery_task_yields_between_slices() -> None:
    ps = PubSub()
    attacker, reader = Conn(1), Conn(2)
    ps.psubscribe(attacker, SLOW)
    ps.psubscribe(reader, [b"c*"])
    turns = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ps.run)
        await trio.testing.wait_all_tasks_blocked()
        ps.applied(1, [(b"c", b"one")])
        assert ps.pending() > 0
        while ps.pending():  # another task runs while the message is being matched
            turns += 1
            await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()
    assert turns >= 2
    assert reader.inbox == [Push((b"pmessage", b"c*", b"c", b"one"))]


def test_pubsub_channels_with_a_pattern_is_matched_in_slices() -> None:
    """PUBSUB CHANNELS pattern matched every channel at once; now it is a queue job."""
    ps = PubSub()
    conns = [Conn(i) for i in range(3)]
    for i, conn in enumerate(conns):
        ps.subscribe(conn, [f"room:{i}:{j}".encode() for j in range(3000)])
    answer = ps.active_channels(b"room:[01]:*7")
    assert not answer.done and ps.pending() == 1
    slices = drain(ps)
    assert len(slices) >= 2 and max(slices) <= BUDGET + 2 * STEP
    assert answer.value == [f"room:{i}:{j}".encode() for i in (0, 1) for j in range(3000)
                            if str(j).endswith("7")]
    assert ps.active_channels(None).value == list(ps.channels)


def test_a_failing_delivery_is_logged_and_the_queue_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ps = PubSub()
    conn = Conn(1)
    ps.psubscribe(conn, [b"n*"])
    real = Glob.match

    def broken(self: Glob, string: bytes) -> bool:
        if string == b"bad":
            raise RuntimeError("bug")
        return real(self, string)
    monkeypatch.setattr(Glob, "match", broken)
    ps.applied(1, [(b"news", b"warm")])  # parsed: later matches run at once
    answer = ps.count_receivers(b"bad")
    ps.applied(2, [(b"bad", b"x"), (b"news", b"after")])
    drain(ps)
    assert answer.value == pubsub_module.DELIVERY_FAILED
    assert conn.inbox == [Push((b"pmessage", b"n*", b"news", b"warm")),
                          Push((b"pmessage", b"n*", b"news", b"after"))]
