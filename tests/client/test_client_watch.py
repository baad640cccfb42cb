"""client.watch against stand-in nodes sharing one feed (fake_feed.py): resuming on another
node after a kill, a hang, a lost leader or a bad reply never yields a gap or a duplicate."""

from __future__ import annotations

import functools
import threading

import pytest
import trio
from fake_feed import Feed, FeedNode, FeedThread, start_nodes

from client import ConnectionFailed, ResponseError, connect, connect_sync
from client.feed import ChangeId
from client.watch import FeedCompacted, Watch
from wire.reply import ErrorReply


def watch(nodes: list[FeedNode], pattern: str = "*", start: str = "0", **kw: object) -> Watch:
    options = {"block": 0.2, "attempt_timeout": 0.5, "backoff_base": 0.001,
               "backoff_cap": 0.002, "connect_timeout": 0.5}
    options.update(kw)
    return Watch([n.addr for n in nodes], pattern, start, **options)  # type: ignore[arg-type]


async def take(w: Watch, n: int) -> list[str]:
    out = []
    with trio.fail_after(10):
        async for change in w:
            out.append(str(change.id))
            if len(out) == n:
                break
    return out


async def test_changes_arrive_in_order_with_their_fields(nursery: trio.Nursery) -> None:
    feed = Feed()
    (node,) = await start_nodes(nursery, feed, 1)
    feed.write("a", "1")
    feed.skip(3)
    feed.write("m", "2", op="mset", keys=2)
    feed.write("a", None, op="del")
    w = watch([node])
    got = []
    with trio.fail_after(10):
        async for change in w:
            got.append(change)
            if len(got) == 4:
                break
    assert [str(c.id) for c in got] == ["1-0", "5-0", "5-1", "6-0"]
    assert (got[0].op, got[0].key, got[0].value, got[0].index) == ("set", b"a", b"1", 1)
    assert (got[2].key, got[2].position) == (b"m.1", 1)
    assert (got[3].op, got[3].value) == ("del", None)
    assert w.last_id == ChangeId(6, 0)


async def test_a_pattern_watches_its_filtered_stream(nursery: trio.Nursery) -> None:
    feed = Feed()
    (node,) = await start_nodes(nursery, feed, 1)
    for key in ("user:1", "other", "user:2"):
        feed.write(key, "v")
    w = watch([node], "user:*")
    assert await take(w, 2) == ["1-0", "3-0"]
    assert node.commands(b"XREAD")[0][-2] == b"__raftkv:changes:user:*"


async def test_dollar_is_resolved_once_so_a_move_before_any_change_loses_none(
        nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    feed.write("old", "1")
    feed.write("old", "2")
    w = watch([a, b], start="$")
    with trio.move_on_after(0.3):  # one empty BLOCK round on a: "$" is now 2-0
        await w.__anext__()
    assert w.last_id == w.started_after == ChangeId(2, 0)
    assert a.commands(b"XREAD")[-1][-1] == b"2-0"  # a concrete id, never "$"
    a.kill()
    feed.write("new", "3")  # while the watch has no node
    feed.write("new", "4")
    assert await take(w, 2) == ["3-0", "4-0"]
    assert b.commands(b"XREAD")[0][-1] == b"2-0"


async def test_kill_mid_stream_resumes_on_another_node_without_gap_or_duplicate(
        nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b, c = await start_nodes(nursery, feed, 3)
    for i in range(10):
        feed.write(f"k{i}", str(i), keys=1 + i % 3)
    w = watch([a, b, c], count=3)
    first = await take(w, 5)
    resume_from = str(w.last_id)  # the last change received (some are still buffered)
    a.kill()
    for i in range(10, 20):
        feed.write(f"k{i}", str(i))
    rest = await take(w, len(feed.entries) - 5)
    assert first + rest == feed.ids()
    assert w.resumes == 1 and w.endpoint == b.addr
    assert b.commands(b"XREAD")[0][-1] == resume_from.encode()


async def test_a_lagging_follower_serves_up_to_its_applied_index_then_catches_up(
        nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    for i in range(6):
        feed.write(f"k{i}", str(i))
    b.applied = 2
    w = watch([a, b], count=1)  # nothing buffered beyond what was taken
    assert await take(w, 4) == feed.ids()[:4]
    a.kill()
    got: list[str] = []
    async with trio.open_nursery() as inner:
        async def collect() -> None:
            got.extend(await take(w, 2))
        inner.start_soon(collect)
        await trio.sleep(0.3)
        assert got == []  # b has applied only up to 2: it holds the read
        b.applied = None
        feed.write("k6", "6")  # wake b's blocked read
    assert got == feed.ids()[4:6]


async def test_a_paused_node_is_left_after_the_attempt_timeout(nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    feed.write("x", "1")
    w = watch([a, b])
    assert await take(w, 1) == ["1-0"]
    a.paused = True
    feed.write("x", "2")
    assert await take(w, 1) == ["2-0"]
    assert w.endpoint == b.addr


async def test_a_node_without_leader_is_left_after_an_empty_round(
        nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    a.leader = False
    a.applied = 0  # a minority node: it learns nothing new
    feed.write("x", "1")
    w = watch([a, b])
    assert await take(w, 1) == ["1-0"]
    assert w.endpoint == b.addr and a.commands(b"INFO")


async def test_without_require_leader_the_watch_stays(nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    a.leader = False
    a.applied = 0
    feed.write("x", "1")
    w = watch([a, b], require_leader=False)
    with trio.move_on_after(0.6):
        await w.__anext__()
    assert w.resumes == 0 and not a.commands(b"INFO")


async def test_a_duplicate_from_a_broken_node_is_refused_and_read_elsewhere(
        nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    feed.write("x", "1")
    w = watch([a, b])
    assert await take(w, 1) == ["1-0"]
    a.duplicate = True
    feed.write("x", "2")
    assert await take(w, 1) == ["2-0"]
    assert w.rejected == 1 and w.endpoint == b.addr


async def test_compacted_on_one_node_reads_another_and_on_all_raises(
        nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    for i in range(5):
        feed.write("x", str(i))
    feed.floor = ChangeId(3, 0)
    w = watch([a, b], start="2-0")
    with pytest.raises(FeedCompacted, match="oldest retained id is 3-0"):
        await take(w, 1)
    w = watch([a, b], start="3-0")
    assert await take(w, 2) == ["4-0", "5-0"]


async def test_an_error_about_the_request_itself_is_raised(nursery: trio.Nursery) -> None:
    feed = Feed()
    (a,) = await start_nodes(nursery, feed, 1)
    w = Watch([a.addr], "*", "0", block=0.2)
    a.answer = _refuse  # type: ignore[method-assign]
    with pytest.raises(ResponseError, match="unknown command"):
        await take(w, 1)


async def _refuse(cmd: list[bytes]) -> object:
    return ErrorReply("ERR unknown command 'XREAD'")


async def test_give_up_after_raises_when_no_node_answers(nursery: trio.Nursery) -> None:
    feed = Feed()
    (a,) = await start_nodes(nursery, feed, 1)
    a.kill()
    w = watch([a], give_up_after=0.2)
    with pytest.raises(ConnectionFailed, match="no node to read from"):
        await take(w, 1)


async def test_aclose_ends_a_pending_iteration(nursery: trio.Nursery) -> None:
    feed = Feed()
    (a,) = await start_nodes(nursery, feed, 1)
    w = watch([a], block=5.0)
    ended = trio.Event()

    async def follow() -> None:
        async for _ in w:
            pass
        ended.set()

    nursery.start_soon(follow)
    with trio.fail_after(5):
        while not a.commands(b"XREAD"):
            await a.served.wait()
        await w.aclose()
        await ended.wait()


async def test_client_watch_shares_endpoints_and_closes_with_the_client(
        nursery: trio.Nursery) -> None:
    feed = Feed()
    a, b = await start_nodes(nursery, feed, 2)
    feed.write("k", "v")
    kv = connect([a.addr, b.addr], eager=False)
    w = kv.watch("k*", start="0", block=0.2)
    assert await take(w, 1) == ["1-0"]
    await kv.aclose()
    with trio.fail_after(2):
        assert [c async for c in w] == []
    with pytest.raises(ConnectionFailed):
        kv.watch()


def test_bad_arguments_are_refused_before_any_connection() -> None:
    with pytest.raises(ValueError, match="change id"):
        Watch(["127.0.0.1:1"], "*", "latest")
    with pytest.raises(ValueError, match="count"):
        Watch(["127.0.0.1:1"], count=0)
    with pytest.raises(ValueError, match="empty key pattern"):
        Watch(["127.0.0.1:1"], "")


def test_the_sync_client_watches_with_a_blocking_iterator_across_a_kill() -> None:
    nodes = FeedThread(2)
    try:
        for i in range(3):
            nodes.call(functools.partial(nodes.feed.write, f"k{i}", str(i)))
        a, b = nodes.nodes
        with connect_sync([a.addr, b.addr], eager=False) as kv, kv.watch(
                start="0", block=0.2, count=1, backoff_base=0.001, backoff_cap=0.002) as w:
            got = [str(next(w).id) for _ in range(2)]
            nodes.call(a.kill)
            got += [str(next(w).id)]
            assert got == ["1-0", "2-0", "3-0"]
            assert w.watch.resumes == 1 and w.watch.endpoint == b.addr
            closer = threading.Timer(0.3, w.close)  # another thread ends a blocked next()
            closer.start()
            done = list(w)
            closer.join()
            assert done == []
    finally:
        nodes.close()
