"""The change feed under load: events/s delivered to 1, 10 and 100 watchers while
``redis-benchmark -t set -c 50`` runs, and what 100 watchers cost the SET throughput.

Run: .venv/bin/python tests/bench/bench_watch.py [--requests 3000] [--pairs 3] [--dir D]

One 3-node cluster (fsync always). In each round, N watchers (client.watch on the whole
feed, spread over the three nodes, each on its own connection, all in this process) follow
the feed from its newest id while redis-benchmark sends ``--requests`` SETs from 50
connections to the leader. A round reports the SET rate, the changes delivered per second
to all watchers together and to each, and how long after the last SET the slowest watcher
had them all. Rounds of 0 and 100 watchers alternate (A B B A ...) so both see the same
machine load; the cost figure is the median of the 100/0 SET-rate ratios of adjacent
rounds with a bootstrap 95% interval. On a shared 2-core machine the watchers' own CPU (in
this process) competes with the nodes: the cost measured includes it, so each round also
prints the CPU the nodes and the watchers used (cores: CPU seconds per second).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from typing import Any

import trio
from common import (
    load_line,
    median_ci,
    paired_ratios,
    raft_cluster,
    redis_benchmark,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster
from chaos.watchers import newest_id
from client.feed import ZERO
from client.watch import Watch


async def one_round(cluster: LocalCluster, leader: int, watchers: int, requests: int,
                    clients: int) -> dict[str, Any]:
    nodes = sorted(cluster.nodes)
    start = await newest_id([cluster.client_addr(leader)])
    counts = [0] * watchers
    last = [ZERO] * watchers
    progress = [trio.Event()]

    async def follow(i: int, w: Watch) -> None:
        async for change in w:
            counts[i] += 1
            last[i] = change.id
            progress[0].set()
            progress[0] = trio.Event()

    async with trio.open_nursery() as nursery:
        for i in range(watchers):
            first = i % len(nodes)
            eps = [cluster.nodes[n].client_addr for n in nodes[first:] + nodes[:first]]
            nursery.start_soon(follow, i, Watch(eps, "*", str(start), block=1.0))
        nodes_cpu = _cpu([n.proc.pid for n in cluster.nodes.values() if n.proc])
        own_cpu = time.process_time()
        began = trio.current_time()
        run = await trio.to_thread.run_sync(redis_benchmark, cluster.client_addr(leader)[1],
                                            "set", requests, clients)
        seconds = trio.current_time() - began
        nodes_cpu = _cpu([n.proc.pid for n in cluster.nodes.values() if n.proc]) - nodes_cpu
        own_cpu = time.process_time() - own_cpu
        delivered = sum(counts)
        end = await newest_id([cluster.client_addr(leader)])
        drain = 0.0
        if watchers:
            with trio.move_on_after(60):
                while min(last) < end:
                    await progress[0].wait()
            drain = (trio.current_time() - began - seconds if min(last) >= end
                     else math.inf)
        nursery.cancel_scope.cancel()
    row = run.rows.get("SET")
    return {"set": row.rps if row and not run.returncode else 0.0,
            "events": delivered / seconds, "drain": drain,
            "per_watcher": delivered / seconds / watchers if watchers else 0.0,
            "nodes_cpu": nodes_cpu / seconds, "own_cpu": own_cpu / seconds,
            "alerts": float(len(run.alerts)), "alert": run.alerts[0][:200] if run.alerts else ""}


def _cpu(pids: list[int]) -> float:
    """CPU seconds the processes have used (utime + stime, all threads)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError), \
                open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=3, help="0/100-watcher round pairs")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    print(load_line())
    with scratch_dir(args.dir, "bench-watch-") as work, raft_cluster(work) as cluster:
        leader, _ = roles(cluster)
        order: list[int] = []
        for p in range(args.pairs):
            order += [0, 100] if p % 2 == 0 else [100, 0]
        order += [1, 10]
        named: list[tuple[str, float]] = []
        for n in order:
            r = trio.run(one_round, cluster, leader, n, args.requests, args.clients)
            if n in (0, 100):
                named.append(("with" if n == 100 else "without", r["set"]))
            extra = (f", {r['events']:8.0f} changes/s delivered in all "
                     f"({r['per_watcher']:.0f}/s each), all delivered "
                     f"{r['drain']:.2f} s after the last SET" if n else "")
            warn = f" ({r['alerts']:.0f} alerts, first: {r['alert']})" if r["alerts"] else ""
            print(f"  {n:3d} watchers: c{args.clients} SET {r['set']:7.0f}/s{extra}{warn}; "
                  f"CPU: nodes {r['nodes_cpu']:.2f} cores, watchers {r['own_cpu']:.2f}",
                  flush=True)
        ratios = paired_ratios(named)
        if ratios:
            mid, lo, hi = median_ci(ratios)
            print(f"watch: c{args.clients} SET with 100 watchers / with none over "
                  f"{len(ratios)} adjacent pairs: ratio {mid:.3f} (cost "
                  f"{(1 - mid) * 100:+.1f}%), 95% CI of the median {lo:.3f} .. {hi:.3f}; "
                  f"ratios {', '.join(f'{x:.3f}' for x in ratios)}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
