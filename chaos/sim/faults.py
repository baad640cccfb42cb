"""The fault schedule: which failure happens when, drawn from the seed.

Each seed draws a *profile* first (how much it favours crashes, partitions, lossy links,
delays...), so that across seeds the simulator visits very different worlds: a calm network
with frequent crashes, a lossy one with partitions flapping, long message delays that
deliver stale messages after elections, and so on. Then every tick the planner may start a
fault and schedules its end (a crashed node restarts, a partition heals, a lossy spell
calms down) a random number of ticks later.

The planner only decides; ``Cluster.apply_fault`` acts. It sees the cluster through a small
``View`` so it can be tested on fake inputs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

KINDS = (
    "partition",  # symmetric split into two random groups (majority/minority or even)
    "isolate_leader",  # cut the current leader off from everyone
    "one_way",  # a directed cut: some nodes cannot reach others, the reverse works
    "crash",  # power loss of a node (the leader half of the time); restarts later
    "torn_crash",  # the node crashes in the middle of its next Ready's persistence
    "send_crash",  # the node crashes while sending its next entries: some peers got them
    "vote_crash",  # the next node to grant a vote crashes right after, restarts at once
    "churn",  # the next few new leaders die young (mid-send or within a few ticks)
    "lossy",  # a spell of dropped and duplicated messages
    "slow",  # a spell of long delays: stale messages arrive after the world moved on
    "heal",  # all links up again
)


@attrs.frozen
class Fault:
    kind: str
    nodes: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    drop: float = 0.0
    dup: float = 0.0
    spike: float = 0.0
    hold: bool = False  # cut links hold messages until the heal instead of losing them
    count: int = 0


@attrs.frozen
class View:
    ids: tuple[int, ...]
    crashed: tuple[int, ...]
    leader: int  # 0 when no node is leader


class FaultPlanner:
    """Draws faults for a seed; ``plan(tick, view)`` returns what happens at ``tick``."""

    def __init__(self, rng: random.Random, ids: Sequence[int], intensity: float = 1.0) -> None:
        self.rng = rng
        self.ids = tuple(ids)
        # Per-seed profile: each kind's weight is skewed so seeds differ in character.
        self.weights = [rng.random() ** 2 + 0.1 for _ in KINDS]
        self.rate = intensity * rng.uniform(0.02, 0.10)  # new faults per tick
        self.max_crashed = rng.choice([len(ids) // 2, len(ids) // 2, len(ids)])
        self._later: dict[int, list[Fault]] = {}

    def later(self, tick: int, fault: Fault) -> None:
        self._later.setdefault(tick, []).append(fault)

    def plan(self, tick: int, view: View) -> list[Fault]:
        out = self._later.pop(tick, [])
        rng = self.rng
        if rng.random() >= self.rate:
            return out
        kind = rng.choices(KINDS, self.weights)[0]
        fault = self._draw(kind, tick, view)
        if fault is not None:
            out.append(fault)
        return out

    def _draw(self, kind: str, tick: int, view: View) -> Fault | None:
        rng = self.rng
        ids = list(view.ids)
        alive = [n for n in ids if n not in view.crashed]
        if len(ids) < 2 and kind in ("partition", "isolate_leader", "one_way"):
            return None  # a single node has no links to cut
        if kind == "partition":
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            self.later(tick + rng.randint(10, 200), Fault("heal"))
            groups = (tuple(sorted(ids[:cut])), tuple(sorted(ids[cut:])))
            return Fault(kind, groups=groups, hold=rng.random() < 0.5)
        if kind == "isolate_leader":
            if not view.leader:
                return None
            self.later(tick + rng.randint(10, 150), Fault("heal"))
            return Fault(kind, nodes=(view.leader,), hold=rng.random() < 0.5)
        if kind == "one_way":
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            src, dst = ids[:cut], ids[cut:]
            if view.leader and rng.random() < 0.5:
                others = [n for n in ids if n != view.leader]
                src, dst = [view.leader], others
                if rng.random() < 0.5:
                    src, dst = dst, src
            self.later(tick + rng.randint(10, 150), Fault("heal"))
            groups = (tuple(sorted(src)), tuple(sorted(dst)))
            return Fault(kind, groups=groups, hold=rng.random() < 0.5)
        if kind in ("crash", "torn_crash", "send_crash", "vote_crash"):
            if len(view.crashed) >= self.max_crashed or not alive:
                return None
            if kind == "vote_crash":
                return Fault(kind)
            leader_bias = 0.8 if kind == "send_crash" else 0.5
            if view.leader and view.leader in alive and rng.random() < leader_bias:
                node = view.leader
            else:
                node = rng.choice(alive)
            self.later(tick + rng.randint(1, 120), Fault("restart", nodes=(node,)))
            return Fault(kind, nodes=(node,))
        if kind == "churn":
            return Fault(kind, count=rng.randint(1, 4))
        if kind == "lossy":
            self.later(tick + rng.randint(10, 150), Fault("calm"))
            return Fault(kind, drop=rng.uniform(0.02, 0.5), dup=rng.uniform(0.0, 0.4))
        if kind == "slow":
            self.later(tick + rng.randint(10, 150), Fault("calm"))
            return Fault(kind, spike=rng.uniform(0.01, 0.2))
        return Fault("heal")
