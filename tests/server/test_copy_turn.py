"""Large copies take turns (raftkv.server.copy_turn): APPEND and SETRANGE of a big value,
from any client of a node, never share a batch of applied entries.

attack10, live: 300 pipelined ``APPEND big y`` to an 8 MiB value (9.6 KB sent) were
committed together and applied in one go, each copying the value: every node's event loop
stalled 21-23 s, the leader lost its term, a probe SET took 24 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.kv import KVStateMachine, decode_entry, encode_entry
from raftkv.node.node import Node
from raftkv.server.copy_turn import BIG_COPY, copies_big
from raftkv.testing import one_node_leader
from wire.raft import NORMAL
from wire.resp import encode_command


@pytest.fixture
async def leader(tmp_path: Path) -> AsyncIterator[Node]:
    """A one-node cluster, its leader elected, its client port open."""
    async with one_node_leader(tmp_path / "data", *free_ports(2), fsync="never") as node:
        yield node


async def _send_and_read(stream: trio.SocketStream, data: bytes, replies: int) -> bytes:
    await stream.send_all(data)
    got = b""
    while got.count(b"\r\n") < replies:
        got += await stream.receive_some(1 << 16)
    return got


async def test_pipelined_appends_to_a_big_value_are_applied_one_per_batch(
        leader: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    copies_per_batch: list[int] = []  # in each Ready's committed entries
    apply = leader.driver._apply

    async def counting(entries: list) -> None:
        copies_per_batch.append(sum(
            1 for e in entries if e.kind == NORMAL
            and decode_entry(e.data)[1][0].lower() in (b"append", b"setrange")))
        await apply(entries)

    monkeypatch.setattr(leader.driver, "_apply", counting)
    one = await trio.open_tcp_stream("127.0.0.1", leader.client_port)
    two = await trio.open_tcp_stream("127.0.0.1", leader.client_port)
    with trio.fail_after(60):
        assert await _send_and_read(one, encode_command(b"SET", b"big", b"x" * BIG_COPY),
                                    1) == b"+OK\r\n"
        appends = b"".join([encode_command(b"APPEND", b"big", b"y")] * 6
                           + [encode_command(b"SETRANGE", b"big", b"0", b"z")] * 2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_and_read, one, appends, 8)
            nursery.start_soon(_send_and_read, two, appends, 8)
    assert sum(copies_per_batch) == 16
    assert max(copies_per_batch) == 1
    assert leader.kv.stored_len(b"big") == BIG_COPY + 12
    await one.aclose()
    await two.aclose()


def test_copies_big_judges_by_the_stored_length() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"big", b"x" * BIG_COPY], 1), 1)
    kv.apply(encode_entry([b"SET", b"small", b"x"], 1), 2)
    assert copies_big(kv, b"append", [b"APPEND", b"big", b"y"])
    assert copies_big(kv, b"setrange", [b"SETRANGE", b"big", b"0", b"y"])
    assert not copies_big(kv, b"append", [b"APPEND", b"small", b"y"])
    assert not copies_big(kv, b"append", [b"APPEND", b"nosuch", b"y"])
    assert not copies_big(kv, b"get", [b"GET", b"big"])
    assert copies_big(kv, b"raft", [b"RAFT", b"ONCE", b"1", b"1", b"APPEND", b"big", b"y"])
    assert not copies_big(kv, b"raft", [b"RAFT", b"ONCE", b"1", b"1", b"SET", b"big", b"y"])
    queued = [[b"SET", b"a", b"b"], [b"append", b"big", b"y"]]
    assert copies_big(kv, b"exec", [b"EXEC"], queued)
    assert not copies_big(kv, b"exec", [b"EXEC"], queued[:1])
