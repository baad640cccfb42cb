"""The ready loop sends what may leave early while a Ready's fsync is still running
(issue 12 item 2): a follower writing a large entry answers its leader's heartbeats meanwhile,
and the acknowledgement of the entry itself still waits for the fsync."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace
from typing import Any

import trio

from raftkv.node.driver import CoreDriver
from raftkv.raft import MemoryStorage, RaftConfig, RaftCore
from wire.raft import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    HardState,
    Member,
)


class Storage(MemoryStorage):
    """MemoryStorage whose ``sync`` blocks (in the sync thread) until the test lets it."""

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config)
        self.may_sync = threading.Event()
        self.syncing = threading.Event()
        self.buffered_bytes = 0

    def sync(self) -> None:
        self.syncing.set()
        assert self.may_sync.wait(10)
        super().sync()


class SyncThread:
    async def run(self, fn: Any) -> Any:
        return await trio.to_thread.run_sync(fn)

    async def sync(self, fn: Any, nbytes: int,
                   split: Any = None) -> Any:  # (this fsync blocks: never inline)
        return await self.run(fn)


class Transport:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.more = trio.Event()

    def send(self, msg: Any) -> bool:
        self.sent.append(msg)
        self.more.set()
        self.more = trio.Event()
        return True

    def send_many(self, msgs: Any) -> int:
        return sum(self.send(msg) for msg in msgs)

    def backlog(self) -> bool:
        return False


def nothing(*_: Any, **__: Any) -> Any:
    return None


async def test_a_follower_answers_heartbeats_while_its_fsync_runs(nursery) -> None:
    config = ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}") for i in (1, 2, 3)))
    storage = Storage(config)
    storage.set_hard_state(HardState(1, 0, 0))  # term 1 is durable: its replies may go early
    storage.may_sync.set()
    storage.sync()
    storage.may_sync.clear()
    storage.syncing.clear()
    core = RaftCore(2, storage, RaftConfig(), rng=random.Random(0))
    transport = Transport()
    stub = SimpleNamespace(observe=nothing, maybe_start=nothing, receive=nothing,
                           log_sends=nothing, apply=lambda entries, until: len(entries),
                           applied=0, inc=nothing,
                           read_confirmed=nothing, read_failed=nothing, parked=False,
                           leader_changed=nothing)
    metrics = SimpleNamespace(wal_fsync=stub, wal_bytes=stub)
    driver = CoreDriver(core, storage, trio.Lock(), SyncThread(), transport, stub, stub,
                        stub, stub, stub, metrics, {"leader_changes": 0, "wal_syncs": 0}, nothing,
                        nothing)
    nursery.start_soon(driver.run)

    big = Entry(1, 1, 0, b"x" * 1000)
    core.step(AppendEntries(1, 1, 2, 0, 0, (big,), 0, 0))
    driver.wake()
    await trio.to_thread.run_sync(storage.syncing.wait, 10)  # the write is in flight
    core.step(AppendEntries(1, 1, 2, 1, 1, (), 0, 5))  # a heartbeat meanwhile
    driver.wake()
    assert transport.sent == [AppendEntriesResponse(1, 2, 1, True, 0, seq=5)]
    storage.may_sync.set()
    with trio.fail_after(10):
        while len(transport.sent) < 2:
            await transport.more.wait()
    assert transport.sent[1] == AppendEntriesResponse(1, 2, 1, True, 1, seq=0)  # the ack
