"""The library against a real 3-node cluster: commands, pipelines, errors, discovery,
concurrency, the sync wrapper, and leader failures in the middle of a stream of calls."""

from __future__ import annotations

import signal
import threading

import pytest
import trio
import trio.testing

from chaos.cluster import LocalCluster
from client import OutcomeUnknown, ResponseError, connect, connect_sync
from wire.reply import SimpleString

pytestmark = pytest.mark.timeout(120)


def endpoints(c: LocalCluster) -> list[str]:
    return [n.client_addr for n in c.nodes.values()]


async def test_commands(cluster: LocalCluster) -> None:
    async with connect(endpoints(cluster)) as kv:
        assert await kv.ping() is True
        assert await kv.echo("hi") == b"hi"
        assert await kv.set("c:a", "1") is True
        assert await kv.get("c:a") == b"1"
        assert await kv.get("c:missing") is None
        assert await kv.set("c:a", "2", nx=True) is False
        assert await kv.set("c:a", "2", xx=True) is True
        assert await kv.set("c:a", "3", get=True) == b"2"
        assert await kv.incr("c:a") == 4
        assert await kv.decr("c:a") == 3
        assert await kv.incrby("c:a", 10) == 13
        assert await kv.decrby("c:a", 3) == 10
        assert await kv.append("c:s", "ab") == 2
        assert await kv.append("c:s", "cd") == 4
        assert await kv.strlen("c:s") == 4
        assert await kv.mset({"c:m1": "x", "c:m2": b"y"}) is True
        assert await kv.mget("c:m1", "c:nope", "c:m2") == [b"x", None, b"y"]
        assert await kv.exists("c:m1", "c:m2", "c:nope") == 2
        assert await kv.cas("c:m1", "x", "z") is True
        assert await kv.cas("c:m1", "x", "w") is False
        assert await kv.get("c:m1") == b"z"
        assert sorted(await kv.keys("c:m*")) == [b"c:m1", b"c:m2"]
        assert await kv.delete("c:m1", "c:m2", "c:nope") == 2
        assert await kv.execute("SET", "c:raw", "v") == SimpleString("OK")
        info = await kv.info("raft")
        status = await kv.raft_status()
        assert info["role"] == status["role"] == "leader"
        assert int(info["node_id"]) == status["node_id"]


async def test_scan_dbsize_flushall(cluster: LocalCluster) -> None:
    async with connect(endpoints(cluster)) as kv:
        assert await kv.flushall() is True
        assert await kv.mset({f"s{i}": i for i in range(25)}) is True
        assert await kv.dbsize() == 25
        seen: set[bytes] = set()
        cursor = 0
        while True:
            cursor, keys = await kv.scan(cursor, match="s*", count=10)
            seen.update(keys)
            if cursor == 0:
                break
        assert seen == {f"s{i}".encode() for i in range(25)}


async def test_pipeline_replies_in_order(cluster: LocalCluster) -> None:
    async with connect(endpoints(cluster)) as kv:
        pipe = kv.pipeline()
        for i in range(200):
            pipe.set(f"p{i}", i)
        pipe.incr("p:n").incr("p:n").get("p7").execute_command("STRLEN", "p150")
        assert len(pipe) == 204
        results = await pipe.execute()
        assert results == [True] * 200 + [1, 2, b"7", 3]
        assert len(pipe) == 0 and await pipe.execute() == []
        mixed = await kv.pipeline().set("p:x", "y").incr("p:x").get("p:x").execute(
            raise_on_error=False)
        assert mixed[0] is True and mixed[2] == b"y"
        assert isinstance(mixed[1], ResponseError)
        with pytest.raises(ResponseError):
            await kv.pipeline().incr("p:x").execute()


async def test_error_replies_carry_redis_text(cluster: LocalCluster) -> None:
    async with connect(endpoints(cluster)) as kv:
        await kv.set("e:s", "abc")
        with pytest.raises(ResponseError) as info:
            await kv.incr("e:s")
        assert info.value.text == "ERR value is not an integer or out of range"
        with pytest.raises(ResponseError) as info:
            await kv.execute("GET")
        assert info.value.text == "ERR wrong number of arguments for 'get' command"
        with pytest.raises(ResponseError) as info:
            await kv.execute("NOSUCH", "x")
        assert info.value.text.startswith("ERR unknown command 'NOSUCH'")
        assert await kv.get("e:s") == b"abc"  # the connection is still usable


async def test_connects_to_the_leader_through_any_node(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    leader_addr = cluster.nodes[leader].client_addr
    for node_id in cluster.nodes:
        async with connect([cluster.nodes[node_id].client_addr]) as kv:
            assert kv.current_endpoint == leader_addr
            assert await kv.set(f"d{node_id}", "x") is True


async def test_concurrent_tasks_share_one_client(cluster: LocalCluster) -> None:
    async with connect(endpoints(cluster)) as kv:
        await kv.set("t:n", 0)
        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(kv.incr, "t:n")
        assert await kv.get("t:n") == b"30"


def test_sync_wrapper(cluster: LocalCluster) -> None:
    before = threading.active_count()
    with connect_sync(endpoints(cluster)) as kv:
        assert threading.active_count() == before + 1
        assert kv.set("y:a", "1") is True
        assert kv.incr("y:a") == 2
        assert kv.get("y:a") == b"2"
        assert kv.execute("ECHO", "e") == b"e"
        assert kv.pipeline().set("y:b", "x").get("y:b").execute() == [True, b"x"]
        with pytest.raises(ResponseError):
            kv.incr("y:b")
        assert kv.current_endpoint == cluster.nodes[cluster.wait_for_leader()].client_addr
        assert [n.up for n in kv.cluster_status()] == [True, True, True]
    assert threading.active_count() == before
    with pytest.raises(RuntimeError):
        kv.get("y:a")


async def test_reads_and_sets_survive_a_leader_kill(own_cluster: LocalCluster) -> None:
    c = own_cluster
    leader = c.wait_for_leader()
    async with connect(endpoints(c), timeout=30) as kv:
        assert kv.current_endpoint == c.nodes[leader].client_addr
        for i in range(20):
            assert await kv.set(f"k{i}", i) is True
        c.kill(leader)
        for i in range(20, 40):  # the first of these meets the dead connection
            assert await kv.set(f"k{i}", i) is True
            assert await kv.get(f"k{i - 20}") == str(i - 20).encode()
        assert await kv.mget(*(f"k{i}" for i in range(40))) == [
            str(i).encode() for i in range(40)]
        assert kv.current_endpoint != c.nodes[leader].client_addr


async def _in_flight_when_leader_dies(c: LocalCluster, call, **options: object) -> object:
    """Run ``call(kv)`` while the leader is paused (so it cannot answer), then kill the
    leader with the request unread: the reply can never come. The call's result or error."""
    leader = c.wait_for_leader()
    outcome: dict[str, object] = {}
    async with connect(endpoints(c), timeout=30, **options) as kv:
        assert kv.current_endpoint == c.nodes[leader].client_addr
        c.kill(leader, signal.SIGSTOP)

        async def run() -> None:
            try:
                outcome["result"] = await call(kv)
            except OutcomeUnknown as exc:
                outcome["error"] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)  # sent, awaiting reply
            c.kill(leader)
    c.start(leader)
    return outcome


async def test_incr_with_unknown_outcome_raises_and_set_is_retried(
    own_cluster: LocalCluster,
) -> None:
    c = own_cluster
    async with connect(endpoints(c), timeout=30) as kv:
        assert await kv.incrby("n", 10) == 10
    outcome = await _in_flight_when_leader_dies(c, lambda kv: kv.incr("n"), sessions=False)
    assert isinstance(outcome.get("error"), OutcomeUnknown), outcome
    async with connect(endpoints(c), timeout=30) as kv:
        # The paused leader never read the INCR, and the client did not send it again.
        assert await kv.get("n") == b"10", outcome
    # With a session (the default) the client sends it again, safely: applied once.
    outcome = await _in_flight_when_leader_dies(c, lambda kv: kv.incr("n"))
    assert outcome == {"result": 11}
    async with connect(endpoints(c), timeout=30) as kv:
        assert await kv.get("n") == b"11"
    outcome = await _in_flight_when_leader_dies(c, lambda kv: kv.set("s", "v"))
    assert outcome == {"result": True}
    async with connect(endpoints(c), timeout=30) as kv:
        assert await kv.get("s") == b"v"


async def test_a_burst_of_incrs_across_a_leader_kill_counts_exactly(
    own_cluster: LocalCluster,
) -> None:
    """Sessions: every INCR is retried after an unknown outcome (a leader killed while
    replies were in flight) and still applied once, so the counter equals the acks."""
    c = own_cluster
    leader = c.wait_for_leader()
    acked, unknown = [0], [0]
    sent_some = trio.Event()

    async def writer() -> None:
        async with connect(endpoints(c), timeout=30) as kv:
            for _ in range(40):
                try:
                    await kv.incr("counter")
                    acked[0] += 1
                except OutcomeUnknown:
                    unknown[0] += 1
                if acked[0] >= 20:
                    sent_some.set()

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(writer)
        await sent_some.wait()
        c.kill(leader)  # mid-burst: some INCRs are committed with their replies lost
    c.start(leader)
    async with connect(endpoints(c), timeout=30) as kv:
        assert (acked[0], unknown[0]) == (160, 0)
        assert await kv.get("counter") == b"160"
