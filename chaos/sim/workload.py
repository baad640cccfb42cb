"""Simulated clients: unique proposals, linearizable reads, leadership transfers.

Clients do not know who leads: they remember the last leader hint a ``NotLeader`` gave
them, and otherwise pick a live node at random. Reads go to any live node (leaders answer
them with ReadIndex, followers ask the leader), deliberately including deposed leaders that
still believe they lead.
"""

from __future__ import annotations

import random

from chaos.sim.cluster import Cluster


class Workload:
    def __init__(self, rng: random.Random, ids: list[int]) -> None:
        self.rng = rng
        self.ids = ids
        self.p_propose = rng.uniform(0.05, 0.8)
        self.p_read = rng.uniform(0.02, 0.5)
        self.p_transfer = rng.choice([0.0, 0.002, 0.01, 0.03])
        self.hint = 0
        self.proposals = 0
        self.reads = 0

    def act(self, cluster: Cluster, propose: bool = True) -> None:
        """One tick of client activity; ``propose=False``: reads only (the cluster settles)."""
        rng = self.rng
        nodes = cluster.nodes
        alive = [n for n in nodes.values() if n.alive]
        if not alive:
            return
        if propose:
            for _ in range(3):
                if rng.random() >= self.p_propose:
                    break
                target = nodes.get(self.hint)
                if target is None or not target.alive or rng.random() < 0.1:
                    target = rng.choice(alive)
                self.proposals += 1
                hint = cluster.propose(target, b"v%d" % self.proposals)
                if hint is not None:
                    self.hint = hint
                    break
        if rng.random() < self.p_read:
            self.reads += 1
            cluster.read(rng.choice(alive), b"r%d" % self.reads)
        if propose and self.p_transfer and rng.random() < self.p_transfer:
            lid = cluster.leader()
            others = [i for i in self.ids if i != lid]
            if lid and others:
                cluster.transfer(nodes[lid], rng.choice(others))
