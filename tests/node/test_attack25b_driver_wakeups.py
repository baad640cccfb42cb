"""attack25b: three real ``CoreDriver``s (raftkv.node.driver) around three cores, wired by
in-memory links whose receiving tasks call ``deliver`` (as a node's peer links do: a
message is stepped in its receiving task), fsyncs and receives that yield a random number
of times, under trio's MockClock with autojump: virtual time only moves when every task is
blocked. A write or read that is answered only after time moved waited for a tick (a lost
wake-up: nothing woke the loop for a Ready left unhandled). Checked too: every node applies
the same entries, each once, in order."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
import trio.testing

from raftkv.node.driver import CoreDriver
from raftkv.node.membership import Membership
from raftkv.raft import MemoryStorage, NotLeader, RaftConfig, RaftCore, Role
from wire.raft import ClusterConfig, Entry, Member

CONFIG = ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}") for i in (1, 2, 3)))
TICK = 0.01


def nothing(*_: Any, **__: Any) -> Any:
    return None


class Storage(MemoryStorage):
    def __init__(self, config: ClusterConfig = CONFIG) -> None:
        super().__init__(config)
        self.buffered_bytes = 0
        self.durable_last = 0

    def sync(self) -> None:
        super().sync()
        self.durable_last = self.last_index()


class YieldingSync:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def may_inline(self, nbytes: int, split: bool = False) -> bool:
        return True

    async def sync(self, fn: Any, nbytes: int, split: Any = None) -> None:
        for _ in range(self.rng.randint(0, 3)):
            await trio.lowlevel.checkpoint()
        fn()


class Applier:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.applied = 0
        self.clock = SimpleNamespace(now=lambda: 0)
        self.kv = SimpleNamespace(read_deferred=nothing)
        self.changed = trio.Event()
        self.on_apply: Any = nothing  # what applying an entry does besides (see Node)

    def apply(self, entries: list[Entry], until: float = float("inf")) -> int:
        for e in entries:
            assert e.index == self.applied + 1, f"applied {e.index} after {self.applied}"
            self.entries.append(e)
            self.applied = e.index
            self.on_apply(e)
        self.changed.set()
        self.changed = trio.Event()
        return len(entries)


class Requests:
    """The reads asked by clients: asked to the core at the loop's next look (as
    Node._before_look does), answered through ``read_confirmed``."""

    def __init__(self) -> None:
        self.to_ask: list[bytes] = []
        self.done: dict[bytes, trio.Event] = {}
        self.failed: set[bytes] = set()
        self.parked = False

    def read_confirmed(self, ctx: bytes, index: int, applied: int) -> None:
        self.done[ctx].set()

    def read_failed(self, ctx: bytes) -> None:
        self.failed.add(ctx)
        self.done[ctx].set()

    def leader_changed(self, leader: int) -> None:
        pass


class Net:
    def __init__(self, rng: random.Random, ids: tuple[int, ...] = (1, 2, 3)) -> None:
        self.rng = rng
        self.inbox: dict[int, tuple[trio.MemorySendChannel[Any],
                                    trio.MemoryReceiveChannel[Any]]] = {
            i: trio.open_memory_channel[Any](100_000) for i in ids}
        self.cut: set[int] = set()  # nodes whose messages, both ways, are dropped
        self.violations: list[str] = []

    def transport(self) -> Any:
        net = self

        class Transport:
            def send(self, msg: Any) -> bool:
                if msg.src in net.cut or msg.dst in net.cut:
                    return True
                net.inbox[msg.dst][0].send_nowait(msg)
                return True

            def send_many(self, msgs: Any) -> int:
                return sum(self.send(m) for m in msgs)

            def backlog(self) -> bool:
                return False

            def update_peers(self, peers: Any) -> None:
                pass

        return Transport()

    async def receive(self, node: int, driver: CoreDriver) -> None:
        async for msg in self.inbox[node][1]:
            if node in self.cut:
                continue
            driver.deliver(msg)
            me = driver.core.progress(node)
            durable = cast(Storage, driver.storage).durable_last
            if me is not None and me.match > durable:
                self.violations.append(f"node {node} leads counting {me.match} as its own, "
                                       f"durable to {durable}")
            if self.rng.random() < 0.5:  # the receiving task's next read yields (or not)
                await trio.lowlevel.checkpoint()


class Node:
    def __init__(self, i: int, net: Net, rng: random.Random,
                 config: ClusterConfig = CONFIG) -> None:
        self.storage = Storage(config)
        self.core = RaftCore(i, self.storage, RaftConfig(lazy_commit=True),
                             rng=random.Random(rng.random()))
        self.applier = Applier()
        self.requests = Requests()
        stub = SimpleNamespace(observe=nothing, maybe_start=nothing, receive=nothing,
                               log_sends=nothing, inc=nothing, observe_time=nothing)
        metrics = SimpleNamespace(wal_fsync=SimpleNamespace(observe=nothing),
                                  wal_bytes=SimpleNamespace(inc=nothing))
        transport = net.transport()
        membership: Any = stub
        if any(m.learner for m in config.members):  # the real one: it auto-promotes
            membership = Membership(i, SimpleNamespace(promote_lag=100),  # type: ignore[arg-type]
                                    self.core, transport, SimpleNamespace(forward_leaders=set),  # type: ignore[arg-type]
                                    random.Random(0), lambda: self.driver.wake())
        self.driver = CoreDriver(
            self.core, self.storage, trio.Lock(), YieldingSync(rng),  # type: ignore[arg-type]
            transport, self.applier, self.requests, stub, stub,  # type: ignore[arg-type]
            membership, metrics, {"leader_changes": 0, "wal_syncs": 0},  # type: ignore[arg-type]
            nothing, nothing, ask_reads=self.ask_reads)

    def on_apply(self, e: Entry) -> None:
        """As a leader's apply may: propose (an EXEC unparked, a level) or ask a read."""
        if self.core.role is not Role.LEADER:
            return
        if e.data.endswith(b"!p"):
            try:
                self.core.propose(e.data[:-2] + b"+follow")
            except NotLeader:  # (handing over)
                return
            self.driver.proposed()
        elif e.data.endswith(b"!r"):
            ctx = b"apply" + e.data
            self.requests.done[ctx] = trio.Event()
            self.requests.to_ask.append(ctx)
            self.driver.wake()

    async def hold_lock(self, rng: random.Random) -> None:
        """A snapshot switch now and then: the storage lock held over a few yields."""
        while True:
            await trio.sleep(rng.random() * TICK)
            async with self.driver.storage_lock:
                for _ in range(rng.randint(1, 4)):
                    await trio.lowlevel.checkpoint()

    def ask_reads(self) -> None:
        asked, self.requests.to_ask = self.requests.to_ask, []
        for ctx in asked:
            self.core.read_index(ctx)

    async def tick(self) -> None:
        while True:
            await trio.sleep(TICK)
            self.core.tick()
            self.driver.wake()


def start(nursery: trio.Nursery, net: Any, nodes: dict[int, Any]) -> None:
    """Each node's ready loop, its receiving link and its ticks."""
    for i, n in nodes.items():
        nursery.start_soon(n.driver.run)
        nursery.start_soon(net.receive, i, n.driver)
        nursery.start_soon(n.tick)


async def run_seed(seed: int, clients: int, ops: int, lock_holder: bool) -> list[str]:
    rng = random.Random(seed)
    net = Net(rng)
    nodes = {i: Node(i, net, rng) for i in (1, 2, 3)}
    stalls: list[str] = []
    async with trio.open_nursery() as nursery:
        start(nursery, net, nodes)
        for n in nodes.values():
            n.applier.on_apply = n.on_apply
            if lock_holder:
                nursery.start_soon(n.hold_lock, random.Random(rng.random()))
        nodes[1].core.campaign()
        nodes[1].driver.wake()
        while not (nodes[1].core.role is Role.LEADER
                   and nodes[1].applier.applied >= nodes[1].core.last_index):
            await nodes[1].applier.changed.wait()  # (elected: its no-op applied)
        leader = nodes[1]
        counter = iter(range(10**9))

        async def client(c: int) -> None:
            for k in range(ops):
                if rng.random() < 0.3:
                    ctx = next(counter).to_bytes(8, "big")
                    done = leader.requests.done[ctx] = trio.Event()
                    leader.requests.to_ask.append(ctx)
                    leader.driver.wake()
                    t0 = trio.current_time()
                    await done.wait()
                    if trio.current_time() > t0:
                        stalls.append(f"seed {seed} client {c} op {k}: read waited "
                                      f"{trio.current_time() - t0:.3f}s of virtual time")
                    continue
                suffix = rng.choice([b"", b"", b"!p", b"!r"])
                index, _ = leader.core.propose(f"{c}:{k}".encode() + suffix)
                leader.driver.proposed()
                t0 = trio.current_time()
                while leader.applier.applied < index:
                    await leader.applier.changed.wait()
                if trio.current_time() > t0:
                    stalls.append(f"seed {seed} client {c} op {k}: write {index} applied "
                                  f"after {trio.current_time() - t0:.3f}s of virtual time")
                if rng.random() < 0.3:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as clients_nursery:
            for c in range(clients):
                clients_nursery.start_soon(client, c)
        # What applies proposed or asked (follow-up entries, reads) is done without a tick:
        # spin on checkpoints (virtual time cannot move meanwhile), a bounded number.
        for _ in range(10_000):
            if (leader.applier.applied == leader.core.last_index
                    and all(e.is_set() for e in leader.requests.done.values())):
                break
            await trio.lowlevel.checkpoint()
        else:
            stalls.append(f"seed {seed}: the leader left {leader.core.last_index} - "
                          f"{leader.applier.applied} entries unapplied or "
                          f"{sum(not e.is_set() for e in leader.requests.done.values())} "
                          "reads unanswered until a tick")
        last = leader.core.last_index
        for n in nodes.values():  # (followers learn the last commit at a heartbeat)
            while n.applier.applied < last:
                await n.applier.changed.wait()
        nursery.cancel_scope.cancel()
    logs = {i: [(e.index, e.term, e.data) for e in n.applier.entries] for i, n in nodes.items()}
    assert logs[1] == logs[2] == logs[3]
    return stalls


@pytest.mark.parametrize("lock_holder", [False, True])
@pytest.mark.parametrize("clients", [1, 5])
async def test_no_write_or_read_waits_for_a_tick(clients: int, lock_holder: bool,
                                                 autojump_clock: Any) -> None:
    stalls: list[str] = []
    for seed in range(20):
        stalls += await run_seed(seed, clients, 60, lock_holder)
    assert not stalls, f"{len(stalls)} stalls, first: {stalls[:5]}"


async def run_faults(seed: int) -> list[str]:
    """Leaders cut off, transfers, elections, while 3 clients write to whoever leads: at
    the end (healed) every node applied the same entries, each once, in order, and every
    write a leader applied is among them."""
    rng = random.Random(seed)
    net = Net(rng)
    nodes = {i: Node(i, net, rng) for i in (1, 2, 3)}
    acked: list[tuple[int, bytes]] = []
    async with trio.open_nursery() as nursery:
        start(nursery, net, nodes)
        for n in nodes.values():
            n.applier.on_apply = n.on_apply

        def leader() -> Node | None:
            leaders = [n for n in nodes.values() if n.core.role is Role.LEADER
                       and n.core.id not in net.cut]
            return max(leaders, key=lambda n: n.core.term) if leaders else None

        async def client(c: int) -> None:
            for k in range(80):
                n = leader()
                if n is None:
                    await trio.sleep(TICK)
                    continue
                try:
                    index, term = n.core.propose(f"{c}:{k}".encode()
                                                 + rng.choice([b"", b"!p", b"!r"]))
                except Exception:  # NotLeader, a transfer in progress
                    await trio.sleep(TICK)
                    continue
                n.driver.proposed()
                with trio.move_on_after(50 * TICK):
                    while n.applier.applied < index:
                        await n.applier.changed.wait()
                    e = n.applier.entries[index - 1]
                    if e.term == term:
                        acked.append((index, e.data))

        async def faults() -> None:
            for _ in range(30):
                await trio.sleep(rng.randint(5, 40) * TICK)
                n = leader()
                what = rng.random()
                if what < 0.4 and n is not None:
                    net.cut.add(n.core.id)
                    await trio.sleep(rng.randint(5, 60) * TICK)
                    net.cut.clear()
                elif what < 0.7 and n is not None:
                    n.core.transfer_leadership(rng.choice([i for i in nodes if i != n.core.id]))
                    n.driver.wake()
                else:
                    f = nodes[rng.randint(1, 3)]
                    f.core.campaign()
                    f.driver.wake()

        async with trio.open_nursery() as work:
            work.start_soon(faults)
            for c in range(3):
                work.start_soon(client, c)
        net.cut.clear()
        with trio.fail_after(600 * TICK):
            while True:
                n = leader()
                if n is not None and n.core.transferee == 0:
                    n.core.propose(b"final")
                    n.driver.proposed()
                    last = n.core.last_index
                    with trio.move_on_after(100 * TICK):
                        for m in nodes.values():
                            while m.applier.applied < last:
                                await m.applier.changed.wait()
                        break
                await trio.sleep(TICK)
        nursery.cancel_scope.cancel()
    logs = {i: [(e.index, e.term, e.data) for e in n.applier.entries] for i, n in nodes.items()}
    shortest = min(len(v) for v in logs.values())
    problems = list(net.violations)
    if not logs[1][:shortest] == logs[2][:shortest] == logs[3][:shortest]:
        problems.append(f"seed {seed}: applied logs differ")
    applied = {(i, d) for i, _, d in logs[1]}
    problems += [f"seed {seed}: acknowledged {a} not applied" for a in acked if a not in applied]
    return problems


async def test_faults_keep_one_applied_log_and_every_acknowledged_write(
        autojump_clock: Any) -> None:
    problems: list[str] = []
    for seed in range(12):
        problems += await run_faults(seed)
    assert not problems, f"{len(problems)} problems, first: {problems[:5]}"


LEARNER_CONFIG = ClusterConfig((*CONFIG.members,
                                Member(4, "127.0.0.1:7104", learner=True, promote=True)))


async def run_promotion(seed: int) -> list[str]:
    """Voters 1-3 and learner 4 (to be promoted once caught up), the real Membership on
    every node, one client writing to leader 1: the leader's own match never passes what
    its storage synced."""
    rng = random.Random(seed)
    net = Net(rng, (1, 2, 3, 4))
    nodes = {i: Node(i, net, rng, LEARNER_CONFIG) for i in (1, 2, 3, 4)}
    async with trio.open_nursery() as nursery:
        start(nursery, net, nodes)
        nodes[1].core.campaign()
        nodes[1].driver.wake()
        leader = nodes[1]
        while not (leader.core.role is Role.LEADER
                   and leader.applier.applied >= leader.core.last_index):
            await leader.applier.changed.wait()
        for k in range(300):
            if not leader.core.config_pending and not any(
                    m.learner for m in leader.core.cluster_config.members) and k > 20:
                break
            index, _ = leader.core.propose(f"w{k}".encode())
            leader.driver.proposed()
            while leader.applier.applied < index:
                await leader.applier.changed.wait()
        nursery.cancel_scope.cancel()
    promoted = not any(m.learner for m in nodes[1].core.cluster_config.members)
    assert promoted, f"seed {seed}: learner 4 never promoted"
    return [f"seed {seed}: {v}" for v in net.violations]


async def test_a_promotion_under_writes_never_counts_an_unsynced_entry(
        autojump_clock: Any) -> None:
    problems: list[str] = []
    hit = 0
    seeds = 20
    for seed in range(seeds):
        found = await run_promotion(seed)
        hit += bool(found)
        problems += found
    assert not problems, f"{hit} of {seeds} seeds: {problems[:3]}"
