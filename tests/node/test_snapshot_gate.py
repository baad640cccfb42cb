"""raftkv.node.snapshot_gate: a received snapshot is decoded in full before its last chunk
reaches the core; one that does not decode is refused (never stepped), not installed."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio

from raftkv.kv import KVState, decode_snapshot_stream, encode_snapshot
from raftkv.node.snapshot_gate import WAIT_TICKS, ReceivedData, SnapshotGate
from wire.raft import ClusterConfig, InstallSnapshot, Member, SnapshotMeta

META = SnapshotMeta(50, 3, ClusterConfig((Member(1, "127.0.0.1:1"), Member(2, "127.0.0.1:2"))))
GOOD = encode_snapshot(KVState(data={b"k%d" % i: b"v" * 100 for i in range(200)}))


@attrs.define
class FakeWriter:
    """What the node's SnapshotWriter offers the gate: the bytes written so far."""

    meta: SnapshotMeta
    data: bytes

    @property
    def received(self) -> int:
        return len(self.data)

    dropped: bool = False
    largest_read: int = 0

    def read_at(self, pos: int, n: int) -> bytes:
        if self.dropped:
            raise OSError("the received snapshot was dropped")
        self.largest_read = max(self.largest_read, n)
        return self.data[pos:pos + n]


class Harness:
    def __init__(self, nursery: trio.Nursery, writer: FakeWriter | None) -> None:
        self.stepped: list[Any] = []
        self.writer = writer
        self.decodes = 0
        self.ticks = 0

        def decode(stream: ReceivedData) -> KVState:
            self.decodes += 1
            return decode_snapshot_stream(stream)

        self.hold_ticks: trio.Event | None = None  # set: ticks wait for it

        async def next_tick() -> int:
            self.ticks += 1
            if self.hold_ticks is not None:
                await self.hold_ticks.wait()
            await trio.lowlevel.checkpoint()
            return self.ticks

        self.checks = 0
        self.checked = trio.Event()

        async def run(fn: Any, *args: Any) -> None:
            await fn(*args)
            self.checks += 1
            self.checked.set()

        def spawn(fn: Any, *args: Any) -> None:
            self.checked = trio.Event()
            nursery.start_soon(run, fn, *args)

        self.gate = SnapshotGate(step=self.stepped.append, writer=lambda: self.writer,
                                 decode=decode, next_tick=next_tick, spawn=spawn)

    async def submit(self, msg: InstallSnapshot) -> None:
        """Submit; if that started a check, wait for it to end."""
        before = self.checks
        self.gate.submit(msg)
        await trio.lowlevel.checkpoint()
        if self.checks == before and self.gate._busy:
            await self.checked.wait()


def last_chunk(data: bytes, at: int, meta: SnapshotMeta = META) -> InstallSnapshot:
    return InstallSnapshot(4, 1, 2, meta, at, data[at:], True)


async def test_a_snapshot_that_decodes_reaches_the_core_and_is_decoded_once(nursery) -> None:
    at = len(GOOD) - 700
    h = Harness(nursery, FakeWriter(META, GOOD[:at]))
    msg = last_chunk(GOOD, at)
    await h.submit(msg)
    assert h.stepped == [msg]
    state = h.gate.take(META)
    assert state is not None and state.data[b"k7"] == b"v" * 100
    assert h.gate.take(META) is None  # handed over once


async def test_a_single_chunk_snapshot_is_checked_from_the_message(nursery) -> None:
    h = Harness(nursery, None)
    await h.submit(last_chunk(GOOD, 0))
    assert len(h.stepped) == 1 and h.gate.take(META) is not None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong type"])
async def test_a_snapshot_that_does_not_decode_never_reaches_the_core(
        nursery, caplog, damage: str) -> None:
    """Before the gate the core took the last chunk as installed and the node then failed
    to decode the file and stopped; now the core never sees it and one line is logged."""
    bad = {"garbage": b"\xc1" + GOOD[1:], "truncated": GOOD[:-10],
           "wrong type": b"\x93\x01\x02\x03"}[damage]
    at = max(0, len(bad) - 5)
    h = Harness(nursery, FakeWriter(META, bad[:at]))
    with caplog.at_level(logging.WARNING, logger="raftkv.node"):
        await h.submit(last_chunk(bad, at))
    assert h.stepped == []
    assert [r.getMessage() for r in caplog.records] == ["snapshot refused"]
    assert h.gate.take(META) is None and h.gate.refusals == 1
    # The leader's resends of the same snapshot are dropped without decoding it again...
    await h.submit(last_chunk(bad, at))
    assert h.stepped == [] and h.decodes == 1
    # ...until the core gives up the partial receive: then a resend is checked again.
    h.gate.discarded()
    await h.submit(last_chunk(bad, at))
    assert h.stepped == [] and h.decodes == 2


async def test_without_the_earlier_chunks_the_core_gets_nothing_it_could_install(
        nursery) -> None:
    """The chunks before the last are not (all) written: after waiting, the message goes
    to the core without data and without ``done``, so it can only be rejected or
    acknowledged as a duplicate (the leader resends); never installed unchecked."""
    at = len(GOOD) - 700
    h = Harness(nursery, FakeWriter(META, GOOD[: at - 1]))
    msg = last_chunk(GOOD, at)
    await h.submit(msg)
    assert h.ticks == WAIT_TICKS
    assert h.stepped == [attrs.evolve(msg, data=b"", done=False)]
    assert h.decodes == 0
    # Another snapshot's writer does not count either.
    other = attrs.evolve(META, index=60)
    h.stepped.clear()
    h.writer = FakeWriter(other, GOOD[:at])
    await h.submit(msg)
    assert h.stepped == [attrs.evolve(msg, data=b"", done=False)]


async def test_the_writer_catching_up_while_it_waits_is_enough(nursery) -> None:
    at = len(GOOD) - 700
    h = Harness(nursery, FakeWriter(META, GOOD[:100]))
    h.hold_ticks = trio.Event()
    msg = last_chunk(GOOD, at)
    h.gate.submit(msg)
    await trio.testing.wait_all_tasks_blocked()  # waiting for the next tick
    assert h.writer is not None and h.stepped == [] and h.ticks == 1
    h.writer.data = GOOD[:at]  # the Ready with the earlier chunks was written
    h.hold_ticks.set()
    await h.checked.wait()
    assert h.stepped == [msg] and 0 < h.ticks < WAIT_TICKS


async def test_a_resend_during_a_long_check_keeps_the_cores_receive_alive(nursery) -> None:
    """Decoding a large snapshot takes seconds; the core abandons a receive with no chunk
    for snapshot_receive_ticks (2 s), after which the checked chunk would come too late and
    the transfer restart, for ever. So a resend during the check reaches the core
    stripped (a duplicate to it); a single-chunk one (offset 0) is dropped."""
    at = len(GOOD) - 700
    h = Harness(nursery, FakeWriter(META, GOOD[:at]))
    release = trio.Event()
    decode = h.gate._decode

    def slow_decode(stream: ReceivedData) -> KVState:
        trio.from_thread.run(release.wait)
        return decode(stream)

    h.gate._decode = slow_decode
    msg = last_chunk(GOOD, at)
    h.gate.submit(msg)
    await trio.testing.wait_all_tasks_blocked()
    h.gate.submit(msg)  # the leader's resend, while the first is decoded
    h.gate.submit(last_chunk(GOOD, 0))
    assert h.stepped == [attrs.evolve(msg, data=b"", done=False)]
    release.set()
    await h.checked.wait()
    assert h.stepped[-1] == msg and h.gate.take(META) is not None


async def test_the_received_chunks_are_read_back_in_pieces_not_whole(nursery) -> None:
    """The chunks before the last are streamed from the writer's file as the decoder needs
    them: the received snapshot's bytes are never all in memory beside the decoded state
    (they were read back whole, then joined with the last chunk: twice the file)."""
    big = encode_snapshot(KVState(data={b"k%05d" % i: b"v" * 100 for i in range(20_000)}))
    at = len(big) - 700
    h = Harness(nursery, FakeWriter(META, big[:at]))
    msg = last_chunk(big, at)
    await h.submit(msg)
    assert h.stepped == [msg]
    assert h.writer is not None and 0 < h.writer.largest_read <= 64 * 1024 < at


async def test_a_receive_dropped_while_it_is_decoded_is_not_refused(nursery) -> None:
    """The writer is aborted (the core gave the receive up) while the decoder streams it:
    the snapshot is not bad, so it is not refused; the core gets the harmless message."""
    big = encode_snapshot(KVState(data={b"k%05d" % i: b"v" * 100 for i in range(20_000)}))
    at = len(big) - 700
    h = Harness(nursery, FakeWriter(META, big[:at]))
    decode = h.gate._decode

    def drop_then_decode(stream: ReceivedData) -> KVState:
        assert h.writer is not None
        h.writer.dropped = True
        return decode(stream)

    h.gate._decode = drop_then_decode
    msg = last_chunk(big, at)
    await h.submit(msg)
    assert h.stepped == [attrs.evolve(msg, data=b"", done=False)]
    assert h.gate.refusals == 0 and h.gate.take(META) is None
