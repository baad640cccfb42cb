"""A session's write orders the reads pipelined after it, like a plain write.

The client port orders one connection's commands by ``is_write``: a read after a write
waits until the write is answered. ``RAFT ONCE id seq SET ...`` counted as neither (it
starts with RAFT, a local command), so a ``GET`` pipelined after it did not wait and could
be read before the ``SET`` committed."""

from __future__ import annotations

import trio
import trio.testing

from raftkv.node.pending import Pending
from raftkv.server.client_port import ProgramOrder
from raftkv.server.commands import is_write
from wire.reply import OK

ONCE_SET = [b"RAFT", b"ONCE", b"5", b"1", b"SET", b"k", b"v"]


def test_raft_once_is_what_it_wraps() -> None:
    assert is_write(ONCE_SET) is True
    assert is_write([b"raft", b"once", b"5", b"1", b"GET", b"k"]) is False  # served as a read
    assert is_write([b"RAFT", b"SESSION", b"OPEN"]) is None
    assert is_write([b"RAFT", b"ONCE", b"5", b"1"]) is None  # (no command: answered locally)


async def test_a_read_after_a_session_write_waits_for_its_answer() -> None:
    order, write, read_went = ProgramOrder(), Pending(), trio.Event()
    await order.before(is_write(ONCE_SET))
    order.track(write)

    async def read() -> None:
        await order.before(is_write([b"GET", b"k"]))
        read_went.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert not read_went.is_set(), "the GET went before the session's SET was answered"
        write.set(OK)
        with trio.fail_after(5):
            await read_went.wait()
