"""The read path, this tree against a git ref, interleaved: linearizable GET ops/s and CPU
per GET on the leader and on a follower.

Run: .venv/bin/python tests/bench/bench_read_path.py --baseline main [--rounds 3]
         [--requests 50000] [--clients 50] [--rows leader,follower]

Starts a 3-node cluster of this tree and one of ``--baseline`` (fsync always on both), sets
the key redis-benchmark reads (``key:__rand_int__``, 3 bytes, as ``-t set`` leaves it) and
runs ``redis-benchmark -t get`` on the leader and on a follower (both ReadIndex reads)
round by round, the clusters alternating (A B, then B A, ...), so both see the same machine
load. Besides ops/s and p50 it prints the CPU the three node processes used per GET
(bench_write_path's measure: utime + stime less the idle cluster's rate): on a shared
machine CPU per operation moves much less than throughput. Medians over the rounds, and
this tree's figures over the baseline's (median of the per-round paired ratios, with their
range), close the output.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import time

from bench_write_path import IDLE_SECONDS, cpu_seconds
from common import (
    HOST,
    baseline_cluster,
    load_line,
    raft_cluster,
    redis_benchmark,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster

KEY, VALUE = "key:__rand_int__", "xxx"  # what redis-benchmark -t set,get uses by default


def run_row(cluster: LocalCluster, row: str, requests: int, clients: int) -> dict[str, float]:
    leader, followers = roles(cluster)
    port = cluster.client_addr(leader if row == "leader" else followers[0])[1]
    before = cpu_seconds(cluster)
    time.sleep(IDLE_SECONDS)
    idle_rate = (cpu_seconds(cluster) - before) / IDLE_SECONDS
    before = cpu_seconds(cluster)
    started = time.monotonic()
    run = redis_benchmark(port, "get", requests, clients)
    used = cpu_seconds(cluster) - before - idle_rate * (time.monotonic() - started)
    result = run.rows.get("GET")
    if result is None or run.returncode or run.alerts:
        print(f"  failed: {'; '.join(run.alerts[:3]) or 'no GET row'}", flush=True)
        return {}
    return {"rps": result.rps, "p50": result.p50_ms, "p99": result.p99_ms,
            "cpu_us": used / requests * 1e6}


def set_key(cluster: LocalCluster) -> None:
    leader, _ = roles(cluster)
    port = cluster.client_addr(leader)[1]
    out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), "SET", KEY, VALUE],
                         capture_output=True, text=True, timeout=30, check=False).stdout
    if out.strip() != "OK":
        raise SystemExit(f"SET {KEY} answered {out!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", default="leader,follower")
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    for r in rows:
        if r not in ("leader", "follower"):
            raise SystemExit(f"unknown row {r!r} (leader, follower)")
    names = ["this", f"base@{args.baseline}"]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    print(load_line())
    started = time.perf_counter()
    with scratch_dir(args.dir, "bench-rpath-") as work, contextlib.ExitStack() as stack:
        clusters = {names[0]: stack.enter_context(raft_cluster(work / "this", fsync="always")),
                    names[1]: stack.enter_context(baseline_cluster(work / "base",
                                                                   args.baseline))}
        for cluster in clusters.values():
            set_key(cluster)
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for row in rows:
                for name in order:
                    res = run_row(clusters[name], row, args.requests, args.clients)
                    results.setdefault((name, row), []).append(res)
                    shown = (f"{res['rps']:8.0f}/s p50 {res['p50']:6.2f} p99 {res['p99']:6.2f} "
                             f"ms  cpu {res['cpu_us']:6.1f} us/GET" if res else "(failed)")
                    print(f"round {rnd + 1} {row:<8} {name:<16} {shown}", flush=True)
    print(f"\nGET c{args.clients}, medians over {args.rounds} rounds ({load_line()}):")
    for row in rows:
        for name in names:
            got = [r for r in results[(name, row)] if r]
            if got:
                m = {k: statistics.median(r[k] for r in got) for k in got[0]}
                print(f"  {row:<8} {name:<16} {m['rps']:8.0f}/s p50 {m['p50']:6.2f} "
                      f"p99 {m['p99']:6.2f} ms  cpu {m['cpu_us']:6.1f} us/GET")
        pairs = [(a, b) for a, b in zip(results[(names[0], row)], results[(names[1], row)],
                                        strict=True) if a and b]
        if pairs:
            rps = sorted(a["rps"] / b["rps"] for a, b in pairs)
            cpu = sorted(a["cpu_us"] / b["cpu_us"] for a, b in pairs)
            print(f"  {row:<8} this / {names[1]} per round: ops/s x{statistics.median(rps):.2f} "
                  f"({rps[0]:.2f} .. {rps[-1]:.2f}), cpu/GET x{statistics.median(cpu):.2f} "
                  f"({cpu[0]:.2f} .. {cpu[-1]:.2f}), {len(pairs)} pairs")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
