"""client.watch against 3 real nodes: the records the server sends (ops, values, deadlines,
MSET positions, deletes) through a filter on a follower, and the blocking iterator."""

from __future__ import annotations

import pytest
import trio

from chaos.cluster import LocalCluster
from chaos.watchers import newest_id
from client import connect, connect_sync

pytestmark = pytest.mark.timeout(60)


def endpoints(c: LocalCluster) -> list[str]:
    return [n.client_addr for n in c.nodes.values()]


async def test_records_from_a_follower_with_a_filter(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    eps = [cluster.nodes[follower].client_addr, cluster.nodes[leader].client_addr]
    start = await newest_id([cluster.client_addr(leader)])
    async with connect(eps) as kv:
        w = kv.watch("wcl:*", start=str(start))
        await kv.execute("SET", "wcl:a", "1", "PX", 60_000)
        await kv.set("other", "x")
        await kv.execute("MSET", "wcl:b", "2", "wcl:c", "3")
        await kv.delete("wcl:a")
        got = []
        with trio.fail_after(20):
            async for change in w:
                got.append(change)
                if len(got) == 4:
                    break
        assert w.endpoint == eps[0]  # served by the follower
        await w.aclose()
    a, b, c, d = got
    assert (a.op, a.key, a.value) == ("set", b"wcl:a", b"1") and a.deadline is not None
    assert (b.op, b.key, b.value, b.position) == ("mset", b"wcl:b", b"2", 0)
    assert (c.key, c.index, c.position) == (b"wcl:c", b.index, 1)
    assert (d.op, d.key, d.value, d.deadline) == ("del", b"wcl:a", None, None)
    assert a.id < b.id < c.id < d.id and a.id > start


def test_the_blocking_iterator(cluster: LocalCluster) -> None:
    start = trio.run(newest_id, [cluster.client_addr(i) for i in cluster.nodes])
    with connect_sync(endpoints(cluster)) as kv, kv.watch("wcs:*", str(start)) as changes:
        kv.set("wcs:a", "1")
        kv.incr("wcs:n")
        got = [next(changes), next(changes)]
    assert [(c.op, c.key, c.value) for c in got] == [("set", b"wcs:a", b"1"),
                                                      ("incr", b"wcs:n", b"1")]
