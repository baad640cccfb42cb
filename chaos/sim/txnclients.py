"""The ``--txn`` clients: MULTI/EXEC transactions, WATCHed read-modify-writes and scripts.

Each transaction is proposed as the entry the server's EXEC builds (``EXEC payload``,
``raftkv.kv.encode_exec``: the watched versions and the queued commands) and each script
as its ``EVAL`` invocation, at a live node (the leader hint, else any), stamped by that
node's clock like every KV entry. All of them write the pair ``pa``/``pb`` to one value
(and one TTL), so a read that sees them differ saw an entry applied in part (txncheck.py):

* **plain** (most): ``SET pa v``, sometimes ``GET``, an ``INCR pa`` that fails on the data
  (``v`` is not a number: Redis's WRONGTYPE has no analogue here, every value is a string),
  ``SET pb v``, then a TTL on both: ``SET ... PX`` with one ``ms``, ``PEXPIRE``/``EXPIRE`` of
  both, ``PERSIST`` of both, or none; or ``DEL pa pb``;
* **watched** (a read-modify-write, as redis-py's ``WATCH`` + ``multi()``): the client's
  WATCH is served with the next linearizable read (any node; ``TxnChecks.served``), then it
  proposes ``SET pa n+1`` and ``SET pb n+1`` with the versions it read, from its value;
* **script**: ``EVAL`` of a script that GETs ``pa``, SETs ``pa`` and ``pb`` to it plus
  ``ARGV[1]`` and INCRs ``sc``; or one that SETs ``pa``, INCRs it (a non-number: fails) and
  SETs ``pb``, which must fail and leave no write.

Transactions are fire-and-forget (no retry: the checks are on what applies).
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from chaos.sim.cluster import Cluster
from chaos.sim.kvmode import KVStats
from chaos.sim.txncheck import PA, PB, TxnChecks, TxnOp, WatchRead
from raftkv.kv import encode_exec

SCRIPT_COUNTER = b"sc"
SCRIPT_ADD = b"""local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local n = tostring(v + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], n)
redis.call('SET', KEYS[2], n)
return redis.call('INCR', KEYS[3])"""
SCRIPT_FAILS = b"""redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return 1"""
WATCH_TICKS = 40  # a WATCH not served by then is given up


@attrs.define(eq=False)
class TxnClient:
    id: int
    asked: int = -1  # tick its WATCH was asked, -1: none
    watched: WatchRead | None = None


class TxnWorkload:
    """One tick of transaction and script traffic (see the module docstring)."""

    def __init__(self, rng: random.Random, checks: TxnChecks) -> None:
        self.rng = rng
        self.checks = checks
        self.p_txn = rng.uniform(0.03, 0.2)
        self.p_watch = rng.choice((0.1, 0.3, 0.6))
        self.p_script = rng.choice((0.02, 0.05))
        self.clients = [TxnClient(i) for i in range(rng.randint(1, 3))]
        self.hint = 0
        self.values = 0
        self.stats = KVStats()

    def act(self, cluster: Cluster, tick: int, propose: bool = True) -> None:
        if not propose:
            return
        for client in self.clients:
            if client.watched is not None:
                self._watched(cluster, client)
            elif client.asked >= 0:
                if tick - client.asked > WATCH_TICKS:
                    self.checks.watch_wanted.remove(client)
                    client.asked = -1
            elif self.rng.random() < self.p_txn:
                r = self.rng.random()
                if r < self.p_script:
                    self._script(cluster)
                elif r < self.p_script + (1 - self.p_script) * self.p_watch:
                    client.asked = tick
                    self.checks.watch_wanted.append(client)
                else:
                    self._plain(cluster)

    def _propose(self, cluster: Cluster, args: list[bytes], op: TxnOp) -> None:
        alive = [n for n in cluster.nodes.values() if n.alive]
        if not alive:
            return
        node = cluster.nodes.get(self.hint)
        if node is None or not node.alive or self.rng.random() < 0.1:
            node = self.rng.choice(alive)
        hint, _ = cluster.propose_command(node, args, op)
        if hint is not None:
            self.hint = hint

    def _value(self) -> bytes:
        self.values += 1
        return b"x%d" % self.values

    def _plain(self, cluster: Cluster) -> None:
        rng = self.rng
        if rng.random() < 0.1:
            self._exec(cluster, [[b"DEL", PA, PB]], frozenset(), None)
            return
        v = self._value()
        commands: list[list[bytes]] = [[b"SET", PA, v]]
        errors = set()
        if rng.random() < 0.3:
            commands.append([b"GET", PB])
        if rng.random() < 0.5:
            errors.add(len(commands))
            commands.append([b"INCR", PA])  # "x..." is not a number: fails alone
        commands.append([b"SET", PB, v])
        ms = b"%d" % rng.randint(20, 1500)
        kind = rng.randrange(5)
        if kind == 0:
            commands[0] += [b"PX", ms]
            commands[-1] += [b"PX", ms]
        elif kind == 1:
            commands += [[b"PEXPIRE", PA, ms], [b"PEXPIRE", PB, ms]]
        elif kind == 2:
            commands += [[b"EXPIRE", PA, b"1"], [b"EXPIRE", PB, b"1"]]
        elif kind == 3:
            commands += [[b"PERSIST", PA], [b"PERSIST", PB]]
        self._exec(cluster, commands, frozenset(errors), None)

    def _watched(self, cluster: Cluster, client: TxnClient) -> None:
        watch = client.watched
        assert watch is not None
        client.watched, client.asked = None, -1
        current = watch.values[0]
        n = int(current[1:]) if current is not None and current[1:].isdigit() else 0
        v = b"x%d" % (n + 1)
        self._exec(cluster, [[b"SET", PA, v], [b"SET", PB, v]], frozenset(), watch)

    def _exec(self, cluster: Cluster, commands: list[list[bytes]], errors: frozenset[int],
              watch: WatchRead | None) -> None:
        watches = watch.versions if watch is not None else []
        op = TxnOp("exec", commands=len(commands), errors=errors, watch=watch)
        self._propose(cluster, [b"EXEC", encode_exec(watches, commands)], op)

    def _script(self, cluster: Cluster) -> None:
        if self.rng.random() < 0.3:
            args = [b"EVAL", SCRIPT_FAILS, b"2", PA, PB, self._value()]
            op = TxnOp("eval", script_fails=True)
        else:
            args = [b"EVAL", SCRIPT_ADD, b"3", PA, PB, SCRIPT_COUNTER,
                    b"%d" % self.rng.randint(1, 9)]
            op = TxnOp("eval")
        self._propose(cluster, args, op)


def make(rng: random.Random, stats: Any) -> tuple[TxnWorkload, TxnChecks]:
    """The workload and its checks, sharing the KV layer's counters."""
    checks = TxnChecks()
    checks.stats = stats
    workload = TxnWorkload(rng, checks)
    workload.stats = stats
    return workload, checks
