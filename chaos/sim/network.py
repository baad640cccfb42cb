"""The simulated network: latency, drop, duplication, reordering and partitions.

Every decision comes from the ``random.Random`` handed in, and in-flight messages sit in a
heap ordered by ``(deliver_at, seq)``: the same seed gives the same deliveries in the same
order. Reordering needs no special mode: each copy draws its own latency, and occasional
long "spikes" deliver a message far in the future (a stale AppendEntries or vote arriving
after the world moved on is exactly what breaks careless Raft implementations).

A link ``(src, dst)`` is cut when it is in ``blocked``; a cut is checked both when the
message is sent and when it would be delivered (a cable pulled mid-flight loses the packet).
A cut either loses what crosses it or *holds* it until the heal, like a transport that
queues for a peer and flushes after reconnecting: then a burst of stale messages (an old
leader's AppendEntries, old votes) lands on a cluster that has moved on.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from typing import Any

import attrs

TICK = 10  # virtual time units per node tick (latencies are finer than a tick)


@attrs.define
class LinkModel:
    """Knobs of the network; the fault scheduler changes them during a run."""

    drop: float = 0.0  # probability a copy is lost
    dup: float = 0.0  # probability a message is sent twice
    min_latency: int = 1  # time units
    max_latency: int = 12
    spike: float = 0.0  # probability of a long delay
    spike_max: int = 60 * TICK


@attrs.define
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    cut: int = 0
    held: int = 0
    duplicated: int = 0
    spiked: int = 0


class Network:
    """In-flight messages and the links between nodes."""

    def __init__(self, rng: random.Random, ids: Iterable[int]) -> None:
        self.rng = rng
        self.ids = tuple(sorted(ids))
        self.model = LinkModel()
        self.blocked: dict[tuple[int, int], bool] = {}  # link -> hold (True) or lose
        self.stats = NetStats()
        self._heap: list[tuple[int, int, Any]] = []
        self._held: list[Any] = []
        self._seq = 0

    # -- topology ----------------------------------------------------------------------------
    def cut(self, src: int, dst: int, hold: bool = False) -> None:
        if src != dst:
            self.blocked[(src, dst)] = hold

    def partition(self, groups: Iterable[Iterable[int]], hold: bool = False) -> None:
        """Symmetric partition: nodes talk only within their group (others are isolated)."""
        side = {n: i for i, group in enumerate(groups) for n in group}
        for a in self.ids:
            for b in self.ids:
                if a != b and side.get(a, -1 - a) != side.get(b, -1 - b):
                    self.cut(a, b, hold)

    def one_way(self, srcs: Iterable[int], dsts: Iterable[int], hold: bool = False) -> None:
        """Messages from ``srcs`` to ``dsts`` are cut; the other direction still works."""
        dst_list = list(dsts)
        for a in srcs:
            for b in dst_list:
                self.cut(a, b, hold)

    def isolate(self, node: int, hold: bool = False) -> None:
        self.partition([[node], [n for n in self.ids if n != node]], hold)

    def heal(self, now: int) -> None:
        """All links up; held messages go out now, each after its own latency."""
        self.blocked.clear()
        held, self._held = self._held, []
        for msg in held:
            self._schedule(now, msg)

    def reachable(self, src: int, dst: int) -> bool:
        return (src, dst) not in self.blocked

    # -- traffic -----------------------------------------------------------------------------
    def send(self, now: int, msg: Any) -> None:
        """Queue ``msg`` (it has ``.src`` and ``.dst``) for delivery after a random latency."""
        stats = self.stats
        stats.sent += 1
        if (msg.src, msg.dst) in self.blocked:
            self._cut(msg)
            return
        model = self.model
        rng = self.rng
        copies = 2 if model.dup and rng.random() < model.dup else 1
        if copies == 2:
            stats.duplicated += 1
        for copy in range(copies):
            if model.drop and rng.random() < model.drop:
                stats.dropped += 1
                continue
            self._schedule(now, msg, late=copy > 0 and rng.random() < 0.5)

    def _schedule(self, now: int, msg: Any, late: bool = False) -> None:
        """Queue one copy; ``late``: a duplicate that turns up much later."""
        model, rng = self.model, self.rng
        delay = rng.randint(model.min_latency, model.max_latency)
        if late or (model.spike and rng.random() < model.spike):
            delay += rng.randint(TICK, model.spike_max)
            self.stats.spiked += 1
        self._seq += 1
        heapq.heappush(self._heap, (now + delay, self._seq, msg))

    def _cut(self, msg: Any) -> None:
        if self.blocked[(msg.src, msg.dst)]:
            self._held.append(msg)
            self.stats.held += 1
        else:
            self.stats.cut += 1

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> Any | None:
        """The next message due at or before ``now`` whose link is up, or None."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            msg = heapq.heappop(heap)[2]
            if (msg.src, msg.dst) in self.blocked:
                self._cut(msg)
                continue
            self.stats.delivered += 1
            return msg
        return None

    def in_flight(self) -> int:
        return len(self._heap) + len(self._held)

    def messages(self) -> list[Any]:
        """Every message still in flight or held, in no particular order."""
        return [item[2] for item in self._heap] + list(self._held)
