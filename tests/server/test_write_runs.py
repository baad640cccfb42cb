"""A leader proposes a pipeline's consecutive plain writes as one entry (write_runs.py):
each command still gets, byte for byte, the reply it gets alone, in order; refused ones
are answered where they stand; the run is one proposal; followers forward as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.kv.codec import decode_entry_level
from raftkv.kv.commands import decode_exec
from raftkv.kv.features import FEATURE_LEVEL
from raftkv.node.forwarding import REPLY_DROPPED
from raftkv.node.gathered import MAX_RUN_BYTES
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.raft import Role
from raftkv.server.write_runs import MALFORMED_RUN, answer_run, may_join
from raftkv.testing import in_process_cluster, one_node_leader
from wire.raft import NORMAL
from wire.reply import OK, Encoded, ErrorReply
from wire.resp import encode_command

pytestmark = pytest.mark.timeout(60)

# Every kind of command a run meets: joiners, joiners refused (arity, syntax, an integer
# error at apply), commands that end a run (a read, SET ... GET, the two-word form).
MIXED = [
    [b"SET", b"a", b"1"], [b"INCR", b"a"], [b"SET", b"b", b"x", b"EX", b"100"],
    [b"INCR", b"b"], [b"SET", b"c"], [b"SETNX", b"a", b"5"], [b"SET", b"a", b"2", b"NX"],
    [b"INCRBY", b"a", b"ten"], [b"DECRBY", b"a", b"10"], [b"GET", b"a"],
    [b"SET", b"a", b"3", b"GET"], [b"set", b"d=4"], [b"PSETEX", b"e", b"100000", b"5"],
    [b"SETEX", b"f", b"-1", b"6"], [b"DECR", b"e"], [b"set", b"g", b"7", b"xx"],
    [b"SET", b"h", b"8", b"PX", b"100000", b"KEEPTTL"], [b"INCR", b"h"], [b"DECR", b"a"],
]


async def _replies(port: int, commands: list[list[bytes]], resp3: bool = False) -> bytes:
    """The bytes a node answers ``commands`` with, sent as one pipeline."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(20):
        if resp3:
            await stream.send_all(encode_command(b"HELLO", b"3"))
            await stream.receive_some(10_000)  # (one read: the map fits)
        await stream.send_all(encode_command(b"PING", b"end"))  # the connection set up
        assert await stream.receive_some(100) in (b"$3\r\nend\r\n",)
        await stream.send_all(b"".join(encode_command(*c) for c in commands)
                              + encode_command(b"PING", b"end"))
        got = b""
        while not got.endswith(b"$3\r\nend\r\n"):
            got += await stream.receive_some(10_000)
    await stream.aclose()
    return got


def _values(node: Node) -> dict[bytes, tuple[object, bool]]:
    """Every key's value and whether it has a TTL."""
    read = node.kv.read
    return {key: (read([b"GET", key]), read([b"TTL", key]) != -1)
            for key in sorted(node.kv.key_names())}


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Two one-node clusters: one that builds runs, one that proposes each write alone."""
    async with AsyncExitStack() as stack:
        runs = await stack.enter_async_context(
            one_node_leader(tmp_path / "runs", *free_ports(2)))
        alone = await stack.enter_async_context(
            one_node_leader(tmp_path / "alone", *free_ports(2), write_run=1))
        yield runs, alone


@pytest.mark.parametrize("resp3", [False, True])
async def test_each_command_of_a_run_gets_the_reply_it_gets_alone(
        pair: tuple[Node, Node], resp3: bool) -> None:
    runs, alone = pair
    proposed = runs.stats["proposed"], alone.stats["proposed"]
    got = await _replies(runs.client_port, MIXED, resp3)
    assert got == await _replies(alone.client_port, MIXED, resp3)
    assert b"-ERR syntax error" in got and b"not an integer" in got  # refusals in place
    # The same values and TTLs (digests differ: a key's version is its entry's index, a
    # deadline its entry's stamp plus the TTL), from fewer entries on the runs' node.
    assert _values(runs) == _values(alone)
    writes = sum(1 for c in MIXED if c[0].lower() != b"get")
    assert alone.stats["proposed"] - proposed[1] == writes - 4  # (four refused at check)
    # Runs end at a refusal, a read, SET ... GET and the two-word form, and the leader
    # gathers runs into one entry until its ready loop looks (raftkv.node.gathered), which
    # the GET (it waits for the writes before it) and any other write make it do first:
    # [SET INCR SET INCR, SETNX SET, DECRBY] | SET..GET | set d=4 | [PSETEX, DECR set,
    # INCR DECR]. (The pipeline arrives in one read: no other wait.)
    assert runs.stats["proposed"] - proposed[0] == 4


async def test_a_run_is_one_entry_of_its_commands_in_order(tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2)) as node:
        syncs, proposed = node.stats["wal_syncs"], node.stats["proposed"]
        commands = [[b"SET", b"k%d" % i, b"v%d" % i] for i in range(16)]
        assert await _replies(node.client_port, commands) == b"+OK\r\n" * 16 + b"$3\r\nend\r\n"
        assert node.stats["proposed"] - proposed == 1
        assert node.stats["wal_syncs"] - syncs == 1
        entry = [e for e in node.core.entries_after(0) or [] if e.kind == NORMAL][-1]
        _, _, args = decode_entry_level(entry.data)
        decoded = decode_exec(args[1])
        assert args[0] == b"EXEC" and not isinstance(decoded, ErrorReply)
        assert decoded == ([], commands)
        # The run's changes share its index (their revision), at positions 0..15.
        changes = [c for c in node.kv.feed.after((entry.index - 1, 2**63 - 1), 100)]
        assert [(c.index, c.position, c.key) for c in changes] == [
            (entry.index, i, b"k%d" % i) for i in range(16)]


async def test_an_entry_holds_at_most_max_keys_per_command_and_max_run_bytes(
        tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2),
                               max_keys_per_command=5) as node:
        proposed = node.stats["proposed"]
        await _replies(node.client_port, [[b"INCR", b"n"] for _ in range(12)])
        assert node.stats["proposed"] - proposed == 3  # 5 + 5 + 2
        assert node.kv.read([b"GET", b"n"]) == b"12"
    async with one_node_leader(tmp_path / "w", *free_ports(2), write_run=5) as node:
        proposed = node.stats["proposed"]  # runs of 5 + 5 + 2, gathered into one entry
        await _replies(node.client_port, [[b"INCR", b"n"] for _ in range(12)])
        assert node.stats["proposed"] - proposed == 1
        assert node.kv.read([b"GET", b"n"]) == b"12"
    big = b"x" * (MAX_RUN_BYTES // 4)
    async with one_node_leader(tmp_path / "e", *free_ports(2)) as node:
        proposed = node.stats["proposed"]
        got = await _replies(node.client_port, [[b"SET", b"k%d" % i, big] for i in range(8)])
        assert got == b"+OK\r\n" * 8 + b"$3\r\nend\r\n"
        assert node.stats["proposed"] - proposed == 3  # 3 + 3 + 2: each under 64 KiB


async def test_a_denied_command_is_answered_in_place_and_logged_once(tmp_path: Path) -> None:
    users = tmp_path / "users.acl"
    users.write_text("user default on nopass ~a* +@all\n")
    async with one_node_leader(tmp_path / "d", *free_ports(2), acl_file=str(users)) as node:
        got = await _replies(node.client_port, [[b"SET", b"a1", b"1"], [b"SET", b"b1", b"1"],
                                                [b"SET", b"a2", b"1"]])
        assert got.startswith(b"+OK\r\n-NOPERM") and got.endswith(b"+OK\r\n$3\r\nend\r\n")
        assert node.kv.read([b"GET", b"a2"]) == b"1" and node.kv.read([b"GET", b"b1"]) is None
        info = await _replies(node.client_port, [[b"INFO", b"stats"]])
        assert b"acl_access_denied_key:1\r\n" in info  # the gate ran once for it, not twice


async def test_followers_forward_each_write_and_every_replica_applies_the_runs(
        tmp_path: Path) -> None:
    """Only a leader builds runs: a follower forwards each write, as before (the leader
    proposes a forwarded EXEC only after a client's EXEC's checks). The replicas apply the
    leader's runs to the same state."""
    async with in_process_cluster(tmp_path, [FEATURE_LEVEL] * 3, free_ports(6)) as nodes:
        with trio.fail_after(30):
            while not any(getattr(n, "core", None) is not None
                          and n.core.role is Role.LEADER for n in nodes):
                await nodes[0].next_tick()
        leader = next(n for n in nodes if n.core.role is Role.LEADER)
        follower = next(n for n in nodes if n is not leader)
        with trio.fail_after(30):  # (its own entries proposed: the counts below are ours)
            while not (all(leader.kv.is_published(i) for i in (1, 2, 3))
                       and leader.kv.cluster_level == FEATURE_LEVEL):
                await nodes[0].next_tick()
        commands = [[b"INCR", b"n"]] * 16 + [[b"SET", b"k%d" % i, b"v"] for i in range(16)]
        for node, base, entries in ((follower, 0, 32), (leader, 16, 1)):
            proposed = leader.stats["proposed"]
            got = await _replies(node.client_port, commands)
            assert got == (b"".join(b":%d\r\n" % (base + i) for i in range(1, 17))
                           + b"+OK\r\n" * 16 + b"$3\r\nend\r\n")
            assert leader.stats["proposed"] - proposed == entries
        with trio.fail_after(30):
            while any(n.applied != leader.applied for n in nodes):
                await nodes[0].next_tick()
        assert len({n.kv.digest() for n in nodes}) == 1


async def test_a_run_before_a_protocol_error_is_proposed_and_answered_first(
        tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2)) as node:
        stream = await trio.open_tcp_stream("127.0.0.1", node.client_port)
        with trio.fail_after(20):
            await stream.send_all(encode_command(b"SET", b"a", b"1")
                                  + encode_command(b"INCR", b"n") + b"*1\r\n$x\r\n")
            got = b""
            while data := await stream.receive_some(1000):
                got += data
        assert got.startswith(b"+OK\r\n:1\r\n-ERR Protocol error")
        assert node.kv.read([b"GET", b"a"]) == b"1"
        await stream.aclose()


def test_what_may_join() -> None:
    assert may_join([b"SET", b"k", b"v"], b"set")
    assert may_join([b"SET", b"k", b"v", b"EX", b"1"], b"set")
    assert not may_join([b"SET", b"k", b"v", b"gEt"], b"set")  # its reply: any size
    assert not may_join([b"set", b"k=v"], b"set")  # the two-word form
    assert may_join([b"INCRBY", b"k", b"2"], b"incrby")
    for name in (b"get", b"append", b"mset", b"del", b"eval", b"exec", b"publish", b"raft"):
        assert not may_join([name, b"k", b"v"], name)


def _answered(value: object, count: int, proto: int = 2) -> object:
    reply = Pending()
    answer_run(reply, count, proto, value)
    assert reply.done
    return reply.value


def test_a_runs_reply_is_its_commands_replies_or_one_error_for_each() -> None:
    assert _answered([OK, 3, None], 3) == Encoded(b"+OK\r\n:3\r\n$-1\r\n")
    assert _answered([OK, 3, None], 3, 3) == Encoded(b"+OK\r\n:3\r\n_\r\n")
    error = ErrorReply("UNKNOWN the outcome is unknown")
    assert _answered(error, 2) == Encoded(b"-UNKNOWN the outcome is unknown\r\n" * 2)
    assert _answered(REPLY_DROPPED, 2) is REPLY_DROPPED  # the client port disconnects
    bad = b"-" + MALFORMED_RUN.text.encode() + b"\r\n"
    assert _answered([OK], 2) == Encoded(bad * 2)  # never fewer replies than commands
    assert _answered(None, 2) == Encoded(bad * 2)
