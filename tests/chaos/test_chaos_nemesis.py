"""The nemesis: names, the seeded schedule, link sets, and what inject/heal do."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
import trio

from chaos.nemesis import (
    KINDS,
    PARTITIONS,
    Fault,
    Nemesis,
    Unsupported,
    all_links,
    bridge_links,
    isolate_links,
    kinds_of,
    node_links,
    parse_nemeses,
    partition_links,
    plan,
)

Link = tuple[int, int]


def test_parse_nemeses() -> None:
    assert parse_nemeses("kill,partition") == ("kill", "partition")
    assert parse_nemeses("all") == ("kill", "kill-leader", "pause", "partition", "one-way",
                                    "latency", "member")
    assert parse_nemeses("split, kill ,split") == ("split", "kill")
    assert parse_nemeses("none") == ()
    with pytest.raises(ValueError, match="unknown nemesis 'chaos-monkey'"):
        parse_nemeses("kill,chaos-monkey")


def test_plan_is_a_function_of_the_seed() -> None:
    names = ("kill", "pause", "partition")
    assert plan(7, names, 60, 3) == plan(7, names, 60, 3)
    assert plan(7, names, 60, 3) != plan(8, names, 60, 3)


@pytest.mark.parametrize("seed", range(20))
def test_a_short_plan_meets_every_name_one_fault_at_a_time(seed: int) -> None:
    names = ("kill", "pause", "partition")
    faults = plan(seed, names, 25, 3)
    kinds = [f.kind for f in faults]
    assert "kill" in kinds and "pause" in kinds
    assert any(k in PARTITIONS for k in kinds)
    assert faults[0].start >= 2.0
    for a, b in itertools.pairwise(faults):
        assert a.start + a.duration < b.start  # healed before the next one starts
    assert faults[-1].start + faults[-1].duration <= 25 - 3.75  # recovery time at the end


def test_a_long_plan_keeps_faulting_until_ten_seconds_before_the_end() -> None:
    faults = plan(1, ("kill",), 300, 3)
    last = faults[-1]
    assert 300 - 10 - 5 - 2.5 <= last.start + last.duration <= 300 - 10


def test_plan_leaves_out_what_the_backend_cannot_do() -> None:
    supported = set(KINDS) - {"latency", "bridge"}
    for seed in range(10):
        kinds = {f.kind for f in plan(seed, ("partition", "latency", "kill"), 120, 3,
                                      supported)}
        assert "latency" not in kinds and "bridge" not in kinds
        assert "kill" in kinds
    assert plan(1, ("latency",), 60, 3, supported) == []
    assert {f.kind for f in plan(1, ("partition",), 200, 2)} <= {
        "isolate-leader", "isolate-follower", "split"}  # no bridge with two nodes


def test_kinds_of() -> None:
    assert kinds_of("partition") == PARTITIONS
    assert kinds_of("one-way") == ("one-way",)


def test_link_sets() -> None:
    assert partition_links([[1], [2, 3]]) == {(1, 2), (1, 3), (2, 1), (3, 1)}
    assert isolate_links(2, [1, 2, 3]) == {(2, 1), (2, 3), (1, 2), (3, 2)}
    # The bridge (3) keeps both its links; only the two halves are cut from each other.
    assert bridge_links([1], [2]) == {(1, 2), (2, 1)}
    assert bridge_links([1, 4], [2, 5]) == {(1, 2), (1, 5), (4, 2), (4, 5),
                                            (2, 1), (5, 1), (2, 4), (5, 4)}
    assert node_links(1, [1, 2, 3]) == {(1, 2), (2, 1), (1, 3), (3, 1)}
    assert len(all_links([1, 2, 3])) == 6


class FakeControl:
    def __init__(self, nodes: int = 3, leader: int | None = 1) -> None:
        self.node_ids = list(range(1, nodes + 1))
        self.current_leader = leader
        self.log: list[tuple[str, int]] = []

    async def kill(self, node: int) -> None:
        self.log.append(("kill", node))

    async def start(self, node: int) -> None:
        self.log.append(("start", node))

    async def pause(self, node: int) -> None:
        self.log.append(("pause", node))

    async def resume(self, node: int) -> None:
        self.log.append(("resume", node))

    async def leader(self) -> int | None:
        return self.current_leader


class FakeNet:
    name = "fake"

    def __init__(self) -> None:
        self.cuts: list[frozenset[Link]] = []
        self.slowed: list[tuple[frozenset[Link], float, float]] = []
        self.heals = 0

    async def cut(self, links: Iterable[Link]) -> None:
        self.cuts.append(frozenset(links))

    async def slow(self, links: Iterable[Link], delay: float, jitter: float) -> None:
        self.slowed.append((frozenset(links), delay, jitter))

    async def heal(self) -> None:
        self.heals += 1

    async def close(self) -> None:
        pass


def fault(kind: str, seed: int = 0) -> Fault:
    return Fault(kind, 1.0, 2.0, seed)


async def test_kill_leader_kills_the_leader_and_heal_restarts_it(
        autojump_clock: object) -> None:
    control, net = FakeControl(leader=None), FakeNet()
    nemesis = Nemesis(control, net)

    async def elect() -> None:
        await trio.sleep(1.5)  # the leader lookup polls until one is elected
        control.current_leader = 2

    async with trio.open_nursery() as nursery:
        nursery.start_soon(elect)
        start = trio.current_time()
        desc, targets = await nemesis.inject(fault("kill-leader"))
    assert (desc, targets) == ("kill -9 n2", (2,))
    # The fault took effect when the signal went out, not when inject was called.
    assert nemesis.applied_at - start >= 1.5
    assert control.log == [("kill", 2)]
    await nemesis.heal()
    assert control.log == [("kill", 2), ("start", 2)]
    assert net.heals == 0  # the network was never touched
    await nemesis.heal()  # healing twice does nothing more
    assert control.log == [("kill", 2), ("start", 2)]


async def test_pause_is_resumed() -> None:
    control = FakeControl()
    nemesis = Nemesis(control, FakeNet())
    _, (node,) = await nemesis.inject(fault("pause", seed=3))
    await nemesis.heal()
    assert control.log == [("pause", node), ("resume", node)]


@pytest.mark.parametrize("seed", range(5))
async def test_partitions_cut_the_right_links(seed: int) -> None:
    control, net = FakeControl(nodes=5, leader=4), FakeNet()
    nemesis = Nemesis(control, net)
    nodes = [1, 2, 3, 4, 5]

    _, targets = await nemesis.inject(fault("isolate-leader", seed))
    assert targets == (4,) and net.cuts[-1] == isolate_links(4, nodes)

    _, (follower,) = await nemesis.inject(fault("isolate-follower", seed))
    assert follower != 4 and net.cuts[-1] == isolate_links(follower, nodes)

    _, minority = await nemesis.inject(fault("split", seed))
    assert len(minority) == 2
    majority = [n for n in nodes if n not in minority]
    assert net.cuts[-1] == partition_links([minority, majority])

    _, (bridge,) = await nemesis.inject(fault("bridge", seed))
    cut = net.cuts[-1]
    assert not any(bridge in link for link in cut)  # the bridge sees everyone
    others = [n for n in nodes if n != bridge]
    side = {n for n in others if (others[0], n) not in cut}
    assert cut == partition_links([side, set(others) - side]) and 1 <= len(side) <= 3

    _, (src, dst) = await nemesis.inject(fault("one-way", seed))
    assert net.cuts[-1] == {(src, dst)}
    await nemesis.heal()
    assert net.heals == 1


async def test_latency_slows_links_then_heals() -> None:
    net = FakeNet()
    nemesis = Nemesis(FakeControl(), net)
    await nemesis.inject(fault("latency", 1))
    (links, delay, jitter), = net.slowed
    assert 0.02 <= delay <= 0.15 and jitter == delay / 2
    assert links in (all_links([1, 2, 3]), *(node_links(n, [1, 2, 3]) for n in (1, 2, 3)))
    await nemesis.heal()
    assert net.heals == 1


async def test_no_leader_skips_a_leader_fault(autojump_clock: object) -> None:
    control = FakeControl(leader=None)
    nemesis = Nemesis(control, FakeNet(), leader_wait=2.0)
    desc, targets = await nemesis.inject(fault("kill-leader"))
    assert desc.startswith("skipped") and targets == ()
    assert control.log == []


async def test_unsupported_propagates_and_heal_still_clears_the_net() -> None:
    class NoCut(FakeNet):
        async def cut(self, links: Iterable[Link]) -> None:
            raise Unsupported("no")

    net = NoCut()
    nemesis = Nemesis(FakeControl(), net)
    with pytest.raises(Unsupported):
        await nemesis.inject(fault("split"))
    await nemesis.heal()  # a backend that failed half-way is healed anyway
    assert net.heals == 1


async def test_a_cut_takes_effect_when_the_backend_returns(autojump_clock: object) -> None:
    class SlowNet(FakeNet):
        async def cut(self, links: Iterable[Link]) -> None:
            await trio.sleep(0.25)  # e.g. spawning nft
            await super().cut(links)

    nemesis = Nemesis(FakeControl(), SlowNet())
    start = trio.current_time()
    await nemesis.inject(fault("split"))
    assert nemesis.applied_at - start >= 0.25
