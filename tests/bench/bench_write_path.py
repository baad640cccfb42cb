"""The write path, this tree against a git ref, interleaved: SET ops/s, latency and CPU per SET.

Run: .venv/bin/python tests/bench/bench_write_path.py --baseline main [--rounds 3]
         [--c1-requests 2000] [--c50-requests 20000] [--rows c1,c50,p16]

Starts a 3-node cluster of this tree and one of ``--baseline`` (raftkv/ and wire/ of that
git ref; fsync always on both) and runs the SET rows (redis-benchmark on the leader: ``c1``
one client, ``c50`` 50 clients, ``p16`` 50 clients pipelining 16) round by round, the two
clusters alternating (A B, then B A, ...), so both see the same machine load. Besides
redis-benchmark's ops/s, p50 and p99 it prints the CPU time the three node processes used
per SET (utime + stime of every thread, from /proc/PID/stat, summed over the nodes, less
what the idle cluster used in the 2 s before the run at the same rate), the same for the
kernel's worker threads (``kworker*``, ``jbd2*``: an fsync submitted through AIO runs in a
kworker, not in the node; the figure includes other processes' disk work, so compare it
paired, and ``cpu+k`` is the two summed) and the leader's
SETs per WAL sync (its group size, from INFO): on a shared machine
the load moves throughput and latency a lot and CPU per operation much less. The
leader's own share is printed beside it (the leader's work, such as encoding the appends
for every follower, is diluted by the followers' in the sum). Medians over the rounds,
each round's paired ratios (this tree's run over the baseline's in the same round) and
their median close the output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

from common import (
    baseline_cluster,
    conn,
    load_line,
    raft_cluster,
    redis_benchmark,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster

TICKS = os.sysconf("SC_CLK_TCK")


def kernel_workers_seconds() -> float:
    """utime + stime of the kernel's worker and journal threads (kworker*, jbd2*)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry.name}/stat") as f:
            text = f.read()
        name = text[text.find("(") + 1:text.rfind(")")]
        if name.startswith(("kworker", "jbd2")):
            fields = text.rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def cpu_seconds(cluster: LocalCluster, only: int | None = None) -> float:
    """utime + stime of every live node process (all threads; or of node ``only``), in
    seconds."""
    total = 0
    for node in cluster.nodes.values():
        if node.proc is None or node.proc.poll() is not None or only not in (None, node.id):
            continue
        with contextlib.suppress(OSError), open(f"/proc/{node.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICKS


ROWS = {"c1": (1, 1), "c50": (50, 1), "p16": (50, 16)}


IDLE_SECONDS = 2.0  # the cluster's own CPU (ticks, heartbeats) measured this long first


def run_row(cluster: LocalCluster, row: str, requests: int) -> dict[str, float]:
    """One redis-benchmark run; CPU per SET without what the idle cluster uses meanwhile
    (at c1 the ticks and heartbeats of three nodes are a large part of the total)."""
    clients, pipeline = ROWS[row]
    leader, _ = roles(cluster)
    port = cluster.client_addr(leader)[1]
    before, lbefore = cpu_seconds(cluster), cpu_seconds(cluster, leader)
    kbefore = kernel_workers_seconds()
    time.sleep(IDLE_SECONDS)
    idle_rate = (cpu_seconds(cluster) - before) / IDLE_SECONDS
    lidle_rate = (cpu_seconds(cluster, leader) - lbefore) / IDLE_SECONDS
    kidle_rate = (kernel_workers_seconds() - kbefore) / IDLE_SECONDS
    syncs = wal_syncs(cluster, leader)
    before, lbefore = cpu_seconds(cluster), cpu_seconds(cluster, leader)
    kbefore = kernel_workers_seconds()
    started = time.monotonic()
    run = redis_benchmark(port, "set", requests, clients, pipeline)
    elapsed = time.monotonic() - started
    used = cpu_seconds(cluster) - before - idle_rate * elapsed
    lused = cpu_seconds(cluster, leader) - lbefore - lidle_rate * elapsed
    kused = kernel_workers_seconds() - kbefore - kidle_rate * elapsed
    syncs = wal_syncs(cluster, leader) - syncs
    result = run.rows.get("SET")
    if result is None or run.returncode:
        print(f"  failed: {'; '.join(run.alerts[:3]) or 'no SET row'}", flush=True)
        return {}
    return {"rps": result.rps, "p50": result.p50_ms, "p99": result.p99_ms,
            "cpu_us": used / requests * 1e6, "leader_us": lused / requests * 1e6,
            "kworker_us": kused / requests * 1e6, "cpu_k_us": (used + kused) / requests * 1e6,
            "sets_per_sync": requests / max(syncs, 1)}


def wal_syncs(cluster: LocalCluster, node: int) -> int:
    """The node's WAL group commits so far (INFO's ``raft_wal_syncs``): SETs per sync is
    the group size, which a faster sync shrinks (and CPU per SET then rises with it)."""
    return int(conn(cluster, node).info("all").get("raft_wal_syncs", 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--this", default=None, metavar="REF",
                    help="run git ref REF instead of this working tree as the first cluster")
    ap.add_argument("--also", default="", metavar="REF,...",
                    help="more git refs, each its own cluster in the same rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", default="c1,c50,p16")
    ap.add_argument("--c1-requests", type=int, default=2000)
    ap.add_argument("--c50-requests", type=int, default=20000)
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    for r in rows:
        if r not in ROWS:
            raise SystemExit(f"unknown row {r!r} (choose from {', '.join(ROWS)})")
    extra = [r for r in args.also.split(",") if r]
    names = ([f"this@{args.this}" if args.this else "this", f"base@{args.baseline}"]
             + [f"also@{r}" for r in extra])
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    print(load_line())
    started = time.perf_counter()
    with scratch_dir(args.dir, "bench-wpath-") as work, contextlib.ExitStack() as stack:
        first = (baseline_cluster(work / "this", args.this) if args.this
                 else raft_cluster(work / "this", fsync="always"))
        clusters = {names[0]: stack.enter_context(first),
                    names[1]: stack.enter_context(baseline_cluster(work / "base",
                                                                   args.baseline))}
        for i, ref in enumerate(extra):
            clusters[names[2 + i]] = stack.enter_context(
                baseline_cluster(work / f"also{i}", ref))
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            if rnd % 2 and len(names) > 2:  # (two clusters: the rotation alone alternates)
                order.reverse()
            for row in rows:
                n = args.c1_requests if row == "c1" else args.c50_requests
                for name in order:
                    res = run_row(clusters[name], row, n)
                    results.setdefault((name, row), []).append(res)
                    shown = (f"{res['rps']:8.0f}/s p50 {res['p50']:6.2f} p99 {res['p99']:6.2f} "
                             f"ms  cpu {res['cpu_us']:6.0f} us/SET (leader {res['leader_us']:5.0f})"
                             f" kworkers {res['kworker_us']:5.0f} cpu+k {res['cpu_k_us']:6.0f}"
                             f"  {res['sets_per_sync']:5.1f} SET/sync" if res else "(failed)")
                    print(f"round {rnd + 1} {row:<4} {name:<16} {shown}", flush=True)
    print(f"\nmedians over {args.rounds} rounds ({load_line()}):")
    for row in rows:
        meds = {}
        for name in names:
            got = [r for r in results[(name, row)] if r]
            if got:
                meds[name] = {k: statistics.median(r[k] for r in got) for k in got[0]}
                m = meds[name]
                print(f"  {row:<4} {name:<16} {m['rps']:8.0f}/s p50 {m['p50']:6.2f} "
                      f"p99 {m['p99']:6.2f} ms  cpu {m['cpu_us']:6.0f} us/SET "
                      f"(leader {m['leader_us']:5.0f}) kworkers {m['kworker_us']:5.0f} "
                      f"cpu+k {m['cpu_k_us']:6.0f}  {m['sets_per_sync']:5.1f} SET/sync")
        b = meds.get(names[1])
        for name in [names[0], *names[2:]]:
            pairs = [(x, y) for x, y in zip(results[(name, row)], results[(names[1], row)],
                                            strict=True) if x and y]
            if pairs:  # the same round's two runs: the machine's load moved both
                for key in ("rps", "cpu_us", "cpu_k_us", "leader_us", "sets_per_sync"):
                    ratios = sorted(x[key] / y[key] for x, y in pairs)
                    print(f"  {row:<4} {name} / {names[1]} {key} per round: "
                          f"{' '.join(f'{r:.2f}' for r in ratios)}; "
                          f"median x{statistics.median(ratios):.2f}")
            a = meds.get(name)
            if a and b:
                print(f"  {row:<4} {name} / {names[1]}: ops/s x{a['rps'] / b['rps']:.2f}, "
                      f"p50 x{a['p50'] / b['p50']:.2f}, "
                      f"cpu/SET x{a['cpu_us'] / b['cpu_us']:.2f}")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
