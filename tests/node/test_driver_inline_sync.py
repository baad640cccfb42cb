"""The leader's WAL fsync on the event loop (raftkv.node.sync_thread: the disk is quick)
starts only once its appends are on the wire: the followers' writes overlap its own, as
when the fsync runs in the sync thread (dissertation 10.2.1, Ready.send_before_sync).

trio runs each batch of runnable tasks in a random order, so the test proposes many times:
with fewer than two scheduler passes before the fsync, some proposal finds its append
still queued."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from raftkv.node.driver import CoreDriver
from raftkv.raft import MemoryStorage, RaftConfig, RaftCore, Role, persist
from wire.raft import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Member,
    RequestVote,
    RequestVoteResponse,
)


class Storage(MemoryStorage):
    """Notes, at every sync, which entries the sender task had put on the wire."""

    def __init__(self, config: ClusterConfig, wire: list[Any]) -> None:
        super().__init__(config)
        self.wire = wire
        self.buffered_bytes = 0
        self.at_sync: list[set[int]] = []

    def sync(self) -> None:
        self.at_sync.append({e.index for m in self.wire if type(m) is AppendEntries
                             for e in m.entries})
        super().sync()


class InlineSync:
    """A SyncThread on a quick disk: every sync runs on the loop."""

    def may_inline(self, nbytes: int, split: bool = False) -> bool:
        return True

    async def sync(self, fn: Any, nbytes: int, split: Any = None) -> None:
        fn()

    async def run(self, fn: Any) -> Any:
        raise AssertionError("the quick disk's fsync went to the thread")


class Transport:
    """``send`` queues, as PeerTransport does; a sender task puts messages on the wire,
    and node 2 acknowledges every append at once (so the leader keeps replicating)."""

    def __init__(self) -> None:
        self.queue_in, self.queue_out = trio.open_memory_channel[Any](1000)
        self.wire: list[Any] = []
        self.queued = 0
        self.driver: CoreDriver | None = None

    def send(self, msg: Any) -> bool:
        self.queue_in.send_nowait(msg)
        self.queued += 1
        return True

    def send_many(self, msgs: Any) -> int:
        return sum(self.send(msg) for msg in msgs)

    def backlog(self) -> bool:
        return len(self.wire) < self.queued  # some message is not on the wire yet

    async def sender(self) -> None:
        async for msg in self.queue_out:
            self.wire.append(msg)
            await trio.lowlevel.checkpoint()  # as send_all's syscall, then its yield
            if type(msg) is AppendEntries and msg.dst == 2 and self.driver is not None:
                match = msg.entries[-1].index if msg.entries else msg.prev_index
                self.driver.core.step(AppendEntriesResponse(msg.term, 2, 1, True, match))
                self.driver.wake()


def nothing(*_: Any, **__: Any) -> Any:
    return None


def elected_leader(storage: Storage) -> RaftCore:
    core = RaftCore(1, storage, RaftConfig(), rng=random.Random(0))
    core.campaign()
    for _ in range(2):  # the pre-vote, then the vote, granted by node 2
        rd = core.ready()
        persist(storage, rd)
        storage.sync()
        core.advance(rd)
        for m in rd.messages:
            if type(m) is RequestVote and m.dst == 2:
                core.step(RequestVoteResponse(m.term, 2, 1, True, m.pre_vote))
    assert core.role is Role.LEADER
    return core


async def test_the_leaders_appends_leave_before_its_fsync_on_the_loop(nursery) -> None:
    config = ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}") for i in (1, 2, 3)))
    transport = Transport()
    storage = Storage(config, transport.wire)
    core = elected_leader(storage)
    stub = SimpleNamespace(observe=nothing, maybe_start=nothing, receive=nothing,
                           log_sends=nothing, apply=lambda entries, until: len(entries),
                           applied=0, inc=nothing,
                           read_confirmed=nothing, read_failed=nothing, parked=False,
                           leader_changed=nothing)
    metrics = SimpleNamespace(wal_fsync=stub, wal_bytes=stub)
    driver = CoreDriver(core, storage, trio.Lock(), InlineSync(), transport, stub, stub,
                        stub, stub, stub, metrics, {"leader_changes": 0, "wal_syncs": 0}, nothing,
                        nothing)
    transport.driver = driver
    nursery.start_soon(transport.sender)
    nursery.start_soon(driver.run)
    driver.wake()
    await trio.testing.wait_all_tasks_blocked()
    for _ in range(40):
        index, _term = core.propose(b"x")
        driver.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert index in storage.at_sync[-1]  # its append was sent before this fsync
