"""Node- and port-level limits as pure units: --maxmemory's guard (and its check on the
leader for forwarded commands), the loop-lag monitor's figures, reply weights, and
maxclients under an open-file limit."""

from __future__ import annotations

import gc
import resource
import types

import trio
import trio.testing

from raftkv.node.forwarding import Forwarder
from raftkv.node.memory import OOM, MemoryGuard, grows_memory
from raftkv.node.pending import Pending
from raftkv.raft import Role
from raftkv.server.gc_watch import GcWatch
from raftkv.server.limits import FD_RESERVE, clients_for_descriptors
from raftkv.server.loop_lag import LoopLagMonitor
from raftkv.server.output_buffer import reply_size
from raftkv.testing import idle_node
from wire.raft import ForwardRequest, ForwardResponse
from wire.reply import OK
from wire.resp import encode_reply
from wire.resp_reply import ReplyParser


def guard(used: int, limit: int = 100) -> MemoryGuard:
    return MemoryGuard(limit, measure=lambda: used, clock=lambda: 0.0)


def test_over_maxmemory_only_writes_that_grow_memory_are_refused_with_redis_text() -> None:
    full = guard(used=101)
    for args in ([b"SET", b"k", b"v"], [b"mset", b"a", b"b"], [b"APPEND", b"k", b"v"],
                 [b"INCR", b"n"], [b"CAS", b"k", b"a", b"b"]):
        assert full.refuse(args) is OOM, args
    for args in ([b"GET", b"k"], [b"DEL", b"k"], [b"FLUSHALL"], [b"KEYS", b"*"],
                 [b"SCAN", b"0"], [b"nosuch"], [b"EXPIRED", b"k"], [b"FLUSHDB"],
                 [b"PERSIST", b"k"], [b"TTL", b"k"]):
        assert full.refuse(args) is None, args
    assert full.refused == 5
    assert OOM.text == "OOM command not allowed when used memory > 'maxmemory'."
    assert guard(used=100).refuse([b"SET", b"k", b"v"]) is None  # at the limit: fine
    assert guard(used=10**12, limit=0).refuse([b"SET", b"k", b"v"]) is None  # 0: off
    assert grows_memory([b"set"]) and not grows_memory([b"del"])


def test_the_leader_publishes_voters_over_maxmemory() -> None:
    """attack9: publish_member (node/publish.py) was refused like a SET, so a cluster over
    --maxmemory published no voter (live: INFO published empty on every node with
    --maxmemory 10000000) and a wiped founder restarted with --cluster was let vote."""
    assert guard(used=101).refuse([b"publish_member", b"2"]) is None
    assert not grows_memory([b"publish_member", b"2"])


def test_used_memory_is_sampled_at_most_once_per_interval() -> None:
    reads, now = [], [0.0]
    g = MemoryGuard(1, interval=0.1, measure=lambda: reads.append(1) or 5,
                    clock=lambda: now[0])
    assert g.used() == 5 and g.used() == 5 and len(reads) == 1
    now[0] = 0.2
    g.used()
    assert len(reads) == 2


def test_a_forwarded_write_is_checked_again_on_the_leader() -> None:
    # A follower under its limit forwards a SET; the leader is over its own: -OOM comes back.
    sent: list[object] = []
    node = idle_node()
    node.memory = guard(used=500)
    core = types.SimpleNamespace(role=Role.LEADER, term=3)
    transport = types.SimpleNamespace(send=sent.append, reply_bytes=lambda: 0)
    forwarder = Forwarder(1, node.settings, core, transport, node.requests, node.stats)  # type: ignore[arg-type]
    msg = ForwardRequest(term=3, src=2, dst=1, req_id=7, args=(b"SET", b"k", b"v"))

    def run(args: list[bytes]) -> Pending:
        raise AssertionError("a refused command must not be proposed")

    forwarder.on_request(msg, node.check, run, Pending.of)
    (response,) = sent
    assert isinstance(response, ForwardResponse) and response.req_id == 7
    parser = ReplyParser()
    parser.feed(response.reply)
    assert parser.next_reply() == OOM


def test_the_loop_lag_monitor_keeps_last_and_max_and_counts_stalls() -> None:
    monitor = LoopLagMonitor(warn_ms=50)
    for lag in (1.0, 70.0, 3.0):
        monitor.record(lag)
    assert monitor.info() == {"loop_lag_last_ms": 3.0, "loop_lag_max_ms": 70.0,
                              "loop_lag_stalls": 1}
    monitor.reset()
    assert monitor.info()["loop_lag_max_ms"] == 0


def test_reply_size_is_exact_for_small_replies_and_close_for_large_arrays() -> None:
    for value in (b"x" * 1000, [b"a" * 10] * 100, {b"k": b"v" * 50}, 7, None, OK):
        assert abs(reply_size(value) - len(encode_reply(value))) <= 16 + 16 * (
            len(value) if isinstance(value, list | dict) else 0)
    big = [b"k" * 20] * 100_000
    assert 0.8 < reply_size(big) / len(encode_reply(big)) < 1.5


def test_maxclients_leaves_a_reserve_of_descriptors() -> None:
    assert clients_for_descriptors(10_000, 256) == 256 - FD_RESERVE
    assert clients_for_descriptors(100, 1_000_000) == 100
    assert clients_for_descriptors(100, 10) == 1  # still one, for an administrator
    assert clients_for_descriptors(100, resource.RLIM_INFINITY) == 100


async def test_the_gc_watch_times_full_collections_only_while_it_runs() -> None:
    watch = GcWatch()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect(0)  # a young pass is not a full one
        assert watch.info()["gc_full_collections"] == 0
        gc.collect()
        gc.collect()
        info = watch.info()
        assert info["gc_full_collections"] == 2
        assert info["gc_full_max_ms"] >= info["gc_full_last_ms"] > 0
        nursery.cancel_scope.cancel()
    assert watch.observe not in gc.callbacks
    gc.collect()
    assert watch.info()["gc_full_collections"] == 2
