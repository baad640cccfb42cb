"""The client's retry rules, exactly, against a scripted fake node (see fake_node.py)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from fake_node import CLOSE, HANG, FakeNode, Later, Then, closed_port

from client import (
    Client,
    ConnectionFailed,
    DeadlineExceeded,
    OutcomeUnknown,
    ResponseError,
    TryAgain,
    connect,
)
from wire.reply import SimpleString

TRYAGAIN = b"-TRYAGAIN no leader known; the command was not applied, retry\r\n"
UNKNOWN = b"-UNKNOWN timed out waiting for a quorum; may or may not have been applied\r\n"


def client(*addrs: str, timeout: float = 10.0, leader_grace: float = 0.2,
           sessions: bool = False) -> Client:
    """A client with fast retries; without sessions unless asked: most tests here are the
    rules for plain sends (a session makes every write idempotent, tested at the end)."""
    return connect(list(addrs), timeout=timeout, backoff_base=0.001, backoff_cap=0.002,
                   leader_grace=leader_grace, sessions=sessions)


async def test_tryagain_is_retried_even_for_incr(nursery: trio.Nursery) -> None:
    node = FakeNode([TRYAGAIN, TRYAGAIN, b":5\r\n"])
    async with client(await node.serve(nursery)) as kv:
        assert await kv.incr("n") == 5
    assert node.commands(b"INCR") == [[b"INCR", b"n"]] * 3


async def test_unknown_reply_to_incr_raises_and_is_not_retried(nursery: trio.Nursery) -> None:
    node = FakeNode([UNKNOWN])
    async with client(await node.serve(nursery)) as kv:
        with pytest.raises(OutcomeUnknown) as info:
            await kv.incr("n")
    assert info.value.text.startswith("UNKNOWN timed out")
    assert len(node.commands(b"INCR")) == 1


@pytest.mark.parametrize("call", [
    lambda kv: kv.append("k", "x"), lambda kv: kv.cas("k", "a", "b"),
    lambda kv: kv.decr("k"), lambda kv: kv.incrby("k", 2), lambda kv: kv.set("k", "v", nx=True),
    lambda kv: kv.execute("RAFT", "TRANSFER", 2), lambda kv: kv.execute("NEWCMD", "x"),
])
async def test_no_unsafe_command_is_retried_after_unknown(nursery: trio.Nursery, call) -> None:
    node = FakeNode([UNKNOWN], default=b":1\r\n")
    async with client(await node.serve(nursery)) as kv:
        with pytest.raises(OutcomeUnknown):
            await call(kv)
    assert len(node.seen) == 1


@pytest.mark.parametrize(("call", "reply", "expected"), [
    (lambda kv: kv.get("k"), b"$1\r\nv\r\n", b"v"),
    (lambda kv: kv.mget("a", "b"), b"*2\r\n$1\r\n1\r\n$-1\r\n", [b"1", None]),
])
async def test_reads_are_retried_after_unknown(
    nursery: trio.Nursery, call, reply: bytes, expected: object
) -> None:
    node = FakeNode([UNKNOWN, reply])
    async with client(await node.serve(nursery)) as kv:
        assert await call(kv) == expected
    assert len(node.seen) == 2 and node.seen[0] == node.seen[1]


@pytest.mark.parametrize("call", [
    lambda kv: kv.set("k", "v"), lambda kv: kv.delete("a", "b"),
    lambda kv: kv.mset({"a": 1, "b": 2}), lambda kv: kv.flushall(),
])
async def test_without_a_session_no_write_is_retried_after_unknown(
    nursery: trio.Nursery, call
) -> None:
    # A retried SET, applied twice around another client's acknowledged SET, would undo it
    # (attack2): not linearizable. Only a session tag makes a write safe to send again.
    node = FakeNode([UNKNOWN])
    async with client(await node.serve(nursery)) as kv:
        with pytest.raises(OutcomeUnknown):
            await call(kv)
    assert len(node.seen) == 1


async def test_connection_lost_after_sending_incr_is_unknown(nursery: trio.Nursery) -> None:
    node = FakeNode([CLOSE])
    async with client(await node.serve(nursery)) as kv:
        with pytest.raises(OutcomeUnknown) as info:
            await kv.incr("n")
    assert info.value.__cause__ is not None  # the connection failure, for the curious
    assert len(node.commands(b"INCR")) == 1


async def test_connection_lost_after_sending_get_is_retried_and_a_set_is_not(
    nursery: trio.Nursery,
) -> None:
    node = FakeNode([CLOSE, b"$2\r\nhi\r\n", CLOSE])
    async with client(await node.serve(nursery)) as kv:
        assert await kv.get("k") == b"hi"
        with pytest.raises(OutcomeUnknown):
            await kv.set("k", "hi")
    assert [c[0] for c in node.seen] == [b"GET", b"GET", b"SET"]


async def test_a_connection_that_died_while_idle_is_replaced_before_sending(
    nursery: trio.Nursery,
) -> None:
    # The node answers the SET and closes; the INCR must not be sent on the dead
    # connection (that would make its outcome unknown) but on a fresh one.
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b":1\r\n"])
    async with client(await node.serve(nursery)) as kv:
        assert await kv.set("k", "v") is True
        await node.closed.wait()
        assert await kv.incr("n") == 1
    assert [c[0] for c in node.seen] == [b"SET", b"INCR"]
    assert node.connections == 2


async def test_error_replies_are_typed_and_not_retried(nursery: trio.Nursery) -> None:
    node = FakeNode([b"-ERR value is not an integer or out of range\r\n",
                     b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"])
    async with client(await node.serve(nursery)) as kv:
        with pytest.raises(ResponseError) as info:
            await kv.incr("n")
        assert type(info.value) is ResponseError and info.value.code == "ERR"
        with pytest.raises(ResponseError) as info:
            await kv.get("n")
        assert info.value.code == "WRONGTYPE"
    assert len(node.seen) == 2


async def test_deadline_on_an_unanswered_incr_is_unknown_on_a_get_exceeded(
    nursery: trio.Nursery,
) -> None:
    node = FakeNode([HANG, HANG])
    addr = await node.serve(nursery)
    async with client(addr, timeout=0.3) as kv:
        with pytest.raises(OutcomeUnknown):
            await kv.incr("n")
    async with client(addr, timeout=0.3) as kv:
        with pytest.raises(DeadlineExceeded):
            await kv.get("k")


async def test_a_silent_node_is_given_up_early_for_a_safe_command_only(
    nursery: trio.Nursery,
) -> None:
    node = FakeNode([HANG, b"$1\r\nv\r\n", HANG])
    addr = await node.serve(nursery)
    async with connect([addr], timeout=10, attempt_timeout=0.2) as kv:
        assert await kv.get("k") == b"v"  # second attempt, on a new connection
        assert node.connections == 2
    async with connect([addr], timeout=0.5, attempt_timeout=0.1, sessions=False) as kv:
        with pytest.raises(OutcomeUnknown):
            await kv.incr("n")
    assert [c[0] for c in node.seen] == [b"GET", b"GET", b"INCR"]  # INCR sent once


async def test_tryagain_until_the_deadline_raises_tryagain(nursery: trio.Nursery) -> None:
    # A read: for an INCR, a deadline that passes while a retry is in flight rightly
    # answers OutcomeUnknown instead, which made this test depend on timing (CI, once).
    node = FakeNode(default=TRYAGAIN)
    async with client(await node.serve(nursery), timeout=0.3) as kv:
        with pytest.raises(TryAgain):
            await kv.get("n")
    assert len(node.seen) > 1


async def test_unreachable_endpoints_are_skipped(nursery: trio.Nursery) -> None:
    node = FakeNode([b"$1\r\n1\r\n"])
    addr = await node.serve(nursery)
    async with client(closed_port(), addr) as kv:
        assert kv.current_endpoint == addr
        assert await kv.get("a") == b"1"


async def test_no_reachable_endpoint_fails_at_connect() -> None:
    with pytest.raises(ConnectionFailed):
        async with client(closed_port(), closed_port()):
            pass


async def test_the_leader_named_by_info_raft_is_preferred(nursery: trio.Nursery) -> None:
    leader = FakeNode([b"+OK\r\n"])
    leader_addr = await leader.serve(nursery)
    follower = FakeNode(leader_addr=leader_addr)
    follower_addr = await follower.serve(nursery)
    async with client(follower_addr) as kv:
        assert kv.current_endpoint == leader_addr
        assert leader_addr in kv.endpoints  # learned, for the next reconnect
        assert await kv.set("k", "v") is True
    assert follower.seen == [] and leader.seen == [[b"SET", b"k", b"v"]]


@pytest.mark.parametrize("grace", [0.0, 0.2])
async def test_an_unreachable_leader_is_waited_for_then_the_node_asked_is_used(
    nursery: trio.Nursery, grace: float
) -> None:
    # A dead leader is usually replaced within an election: the client asks again for
    # `leader_grace` seconds before settling for the follower (which would forward).
    follower = FakeNode([b"+OK\r\n"], leader_addr=closed_port())
    addr = await follower.serve(nursery)
    async with client(addr, leader_grace=grace) as kv:
        assert kv.current_endpoint == addr
        assert await kv.set("k", "v") is True
    assert (follower.probes > 1) == (grace > 0)


async def test_pipeline_retries_from_a_tryagain_when_the_rest_is_safe(
    nursery: trio.Nursery,
) -> None:
    node = FakeNode([b"+OK\r\n", TRYAGAIN, b"$1\r\n1\r\n", b":7\r\n", b"$1\r\n1\r\n"])
    async with client(await node.serve(nursery)) as kv:
        pipe = kv.pipeline().set("a", 1).incr("n").get("a")
        assert await pipe.execute() == [True, 7, b"1"]
    assert [c[0] for c in node.seen] == [b"SET", b"INCR", b"GET", b"INCR", b"GET"]


async def test_pipeline_never_resends_an_applied_unsafe_command(
    nursery: trio.Nursery,
) -> None:
    # The second INCR succeeded after the first got TRYAGAIN: resending both would apply it
    # twice, and resending only the first would reorder them; the caller is told instead.
    node = FakeNode([TRYAGAIN, b":1\r\n", TRYAGAIN, b":2\r\n"])
    async with client(await node.serve(nursery)) as kv:
        results = await kv.pipeline().incr("a").incr("b").execute(raise_on_error=False)
        assert isinstance(results[0], TryAgain) and results[1] == 1
        with pytest.raises(TryAgain):
            await kv.pipeline().incr("a").incr("b").execute()
    assert len(node.seen) == 4


async def test_pipeline_lost_connection_with_an_unsafe_command_is_unknown(
    nursery: trio.Nursery,
) -> None:
    node = FakeNode([CLOSE])
    async with client(await node.serve(nursery)) as kv:
        results = await kv.pipeline().set("a", 1).incr("n").get("a").execute(
            raise_on_error=False)
    assert all(isinstance(r, OutcomeUnknown) for r in results)
    assert len(node.seen) == 1  # the node closed after reading the first one


async def test_pipeline_lost_connection_with_only_reads_is_resent(
    nursery: trio.Nursery,
) -> None:
    node = FakeNode([b"$1\r\n1\r\n", CLOSE, b"$1\r\n2\r\n", b"$1\r\n3\r\n"])
    async with client(await node.serve(nursery)) as kv:
        assert await kv.pipeline().get("a").get("b").get("c").execute() == [
            b"1", b"2", b"3"]
    assert [c[:2] for c in node.seen] == [[b"GET", b"a"], [b"GET", b"b"], [b"GET", b"b"],
                                          [b"GET", b"c"]]


async def test_a_call_cancelled_by_the_caller_leaves_no_reply_behind(
    nursery: trio.Nursery,
) -> None:
    release = trio.Event()
    node = FakeNode([Later(b"$3\r\nold\r\n", release), b"$3\r\nnew\r\n"])
    async with client(await node.serve(nursery)) as kv:
        async with trio.open_nursery() as inner:
            inner.start_soon(kv.get, "a")
            await trio.testing.wait_all_tasks_blocked()  # the GET is awaiting its reply
            inner.cancel_scope.cancel()
        release.set()  # the first GET's reply now arrives, on the abandoned connection
        assert await kv.get("b") == b"new"
    assert node.connections == 2


# -- sessions ----------------------------------------------------------------------------


async def test_with_a_session_an_unknown_incr_is_sent_again_with_its_tag(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b":7\r\n", UNKNOWN, b":5\r\n", b":6\r\n"])
    async with client(await node.serve(nursery), sessions=True) as kv:
        assert await kv.incr("n") == 5
        assert await kv.incr("n") == 6
    sent = node.commands(b"RAFT")
    assert sent == [[b"RAFT", b"SESSION", b"OPEN", b"300"],
                    [b"RAFT", b"ONCE", b"7", b"1", b"INCR", b"n"],
                    [b"RAFT", b"ONCE", b"7", b"1", b"INCR", b"n"],  # the same tag again
                    [b"RAFT", b"ONCE", b"7", b"2", b"INCR", b"n"],
                    [b"RAFT", b"SESSION", b"CLOSE", b"7"]]  # the client closed: it frees it


async def test_every_write_is_tagged_and_reads_and_connection_commands_are_not(
        nursery: trio.Nursery) -> None:
    node = FakeNode([b"$1\r\nx\r\n", b":3\r\n", UNKNOWN, b"+OK\r\n", b"+OK\r\n"])
    async with client(await node.serve(nursery), sessions=True) as kv:
        assert await kv.get("k") == b"x"
        assert await kv.set("k", "v") is True  # retried after UNKNOWN with its tag
        assert await kv.execute("CLIENT", "SETNAME", "me") == SimpleString("OK")
    assert node.commands(b"RAFT") == [[b"RAFT", b"SESSION", b"OPEN", b"300"],
                                      [b"RAFT", b"ONCE", b"3", b"1", b"SET", b"k", b"v"],
                                      [b"RAFT", b"ONCE", b"3", b"1", b"SET", b"k", b"v"],
                                      [b"RAFT", b"SESSION", b"CLOSE", b"3"]]
    assert node.commands(b"CLIENT") == [[b"CLIENT", b"SETNAME", b"me"]]


async def test_a_server_without_sessions_gets_plain_sends(nursery: trio.Nursery) -> None:
    node = FakeNode([b"-ERR unknown RAFT subcommand\r\n", b":1\r\n", b":2\r\n"])
    async with client(await node.serve(nursery), sessions=True) as kv:
        assert await kv.incr("n") == 1
        assert await kv.incr("n") == 2
    assert node.commands(b"INCR") == [[b"INCR", b"n"]] * 2
    assert len(node.commands(b"RAFT")) == 1  # asked once


async def test_an_expired_session_after_an_unknown_send_is_an_unknown_outcome(
        nursery: trio.Nursery) -> None:
    expired = b"-SESSIONEXPIRED session 7 is unknown or expired\r\n"
    node = FakeNode([b":7\r\n", UNKNOWN, expired, b":8\r\n", b":1\r\n"])
    async with client(await node.serve(nursery), sessions=True) as kv:
        with pytest.raises(OutcomeUnknown, match="SESSIONEXPIRED"):
            await kv.incr("n")  # the first send may have applied: never sent on a new one
        assert await kv.incr("n") == 1  # the next call opens a new session
    assert node.commands(b"RAFT")[-2:] == [[b"RAFT", b"ONCE", b"8", b"1", b"INCR", b"n"],
                                           [b"RAFT", b"SESSION", b"CLOSE", b"8"]]


# -- a pipeline's refused command is never applied behind a later one (attack20) ----------


async def test_a_session_pipeline_is_not_resent_after_a_later_unknown(
        nursery: trio.Nursery) -> None:
    # INCR a refused, INCR b's outcome unknown: b may have applied, and a resent a could
    # apply after it; each keeps its error, and nothing is sent again.
    node = FakeNode([b":7\r\n", TRYAGAIN, UNKNOWN])
    async with client(await node.serve(nursery), sessions=True) as kv:
        results = await kv.pipeline().incr("a").incr("b").execute(raise_on_error=False)
    assert [type(r) for r in results] == [TryAgain, OutcomeUnknown], results
    assert [c[4:] for c in node.commands(b"RAFT") if c[1] == b"ONCE"] == [
        [b"INCR", b"a"], [b"INCR", b"b"]]


async def test_a_session_pipeline_whose_replies_were_lost_is_not_resent(
        nursery: trio.Nursery) -> None:
    # Both sent, the connection lost before any reply: b may have applied without a (a
    # refused), so neither is sent again; a lone write would be (the session's rule).
    node = FakeNode([b":7\r\n", CLOSE])
    async with client(await node.serve(nursery), sessions=True) as kv:
        results = await kv.pipeline().incr("a").incr("b").execute(raise_on_error=False)
    assert [type(r) for r in results] == [OutcomeUnknown, OutcomeUnknown], results
    assert node.connections == 1


async def test_a_session_pipeline_is_resent_when_no_later_write_applied(
        nursery: trio.Nursery) -> None:
    # Refused, refused; then refused and a read: nothing later applied, so both go again.
    node = FakeNode([b":7\r\n", TRYAGAIN, TRYAGAIN, b":1\r\n", b":2\r\n",
                     TRYAGAIN, b"$1\r\n1\r\n", b":3\r\n", b"$1\r\n3\r\n"])
    async with client(await node.serve(nursery), sessions=True) as kv:
        assert await kv.pipeline().incr("a").incr("b").execute() == [1, 2]
        assert await kv.pipeline().incr("a").get("a").execute() == [3, b"3"]
    sent = [c[4:] if c[0] == b"RAFT" else c for c in node.seen
            if c[:2] != [b"RAFT", b"SESSION"]]
    assert sent == [[b"INCR", b"a"], [b"INCR", b"b"]] * 2 + [[b"INCR", b"a"], [b"GET", b"a"]] * 2
