"""Operations figures: the cost of --metrics-addr, and backup/restore of a large state.

Run: .venv/bin/python tests/bench/bench_ops.py [--requests N] [--rounds R] [--keys K]

1. Metrics overhead. Each round starts two fresh 3-node clusters (fsync always) side by
   side, one with ``--metrics-addr`` and scraped every second during its runs (as
   Prometheus would), one without; warms both up, then runs ``redis-benchmark -t set -c 50``
   on each leader, in the order A B in even rounds and B A in odd ones, and closes both.
   Fresh clusters per round, because a cluster's throughput drifts as its state grows (the
   change feed's retained tail fills, the WAL lengthens; 4.7k -> 2.9k SET/s over one long
   run): with one pair of clusters for the whole run, the drift swamped a 3% question. The
   figures are the paired with/without ratios of each round (median and bootstrap 95%
   interval), of throughput and, the robust one on a shared machine, of the three nodes'
   CPU time per SET (summed over their threads, the scrapes included).
2. Backup and restore. A 3-node cluster is loaded with K keys of 100 B; ``raftkv backup``
   (through a follower) is timed, then ``raftkv restore`` of each member's directory, then
   the restored cluster's start until it serves the last key.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import redis
from common import (
    _schedstat,
    conn,
    load_line,
    median_ci,
    paired_ratios,
    redis_benchmark,
    roles,
    scratch_dir,
    wait,
)

from chaos.cluster import LocalCluster, free_ports


def scraper(urls: list[str], stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
                counts[0] += 1
            except OSError:
                pass


def cpu_ns(c: LocalCluster) -> int:
    total = 0
    for node in c.nodes.values():
        stat = _schedstat(node.proc.pid) if node.proc else None
        total += stat[0] if stat else 0
    return total


def metrics_overhead(work: Path, requests: int, rounds: int) -> None:
    results: dict[str, list[float]] = {"without": [], "with": []}  # SET/s, per run
    cpu: dict[str, list[float]] = {"without": [], "with": []}  # cluster CPU us per SET
    named_rps: list[tuple[str, float]] = []
    named_cpu: list[tuple[str, float]] = []
    counts = [0]
    for r in range(rounds):
        order = ["without", "with"] if r % 2 == 0 else ["with", "without"]
        got = metrics_round(work / f"round{r}", requests, order, counts)
        shutil.rmtree(work / f"round{r}", ignore_errors=True)
        for name in order:
            rps, per_set = got[name]
            named_rps.append((name, rps))
            named_cpu.append((name, per_set if rps else 0.0))  # (0: the pair is skipped)
            if rps:
                results[name].append(rps)
                cpu[name].append(per_set)
    med = {k: statistics.median(v) if v else 0.0 for k, v in results.items()}
    print(f"metrics overhead: median c50 SET without {med['without']:.0f}/s, with "
          f"{med['with']:.0f}/s (scraped {counts[0]} times); cluster CPU per SET without "
          f"{statistics.median(cpu['without'] or [0]):.0f} us, with "
          f"{statistics.median(cpu['with'] or [0]):.0f} us")
    ratios = paired_ratios(named_rps)
    if ratios:
        mid, lo, hi = median_ci(ratios)
        print(f"paired throughput with/without over {len(ratios)} rounds: median "
              f"{(mid - 1) * 100:+.1f}%, 95% CI of the median {(lo - 1) * 100:+.1f}% .. "
              f"{(hi - 1) * 100:+.1f}%")
    cpu_ratios = paired_ratios(named_cpu)
    if cpu_ratios:
        mid, lo, hi = median_ci(cpu_ratios)
        print(f"paired cluster CPU per SET with/without over {len(cpu_ratios)} rounds: median "
              f"{(mid - 1) * 100:+.1f}%, 95% CI of the median {(lo - 1) * 100:+.1f}% .. "
              f"{(hi - 1) * 100:+.1f}%")


def metrics_round(work: Path, requests: int, order: list[str], counts: list[int]
                  ) -> dict[str, tuple[float, float]]:
    """One round on two fresh clusters: (SET/s, cluster CPU us per SET) of each kind."""
    ports = free_ports(3)
    with_args = {i: ["--metrics-addr", f"127.0.0.1:{ports[i - 1]}"] for i in (1, 2, 3)}
    # A long election timeout for both: on a loaded 2-core machine a spurious election in
    # the middle of a run would end redis-benchmark and measure nothing.
    slow = ["--election-ticks", "100"]
    clusters = {"without": LocalCluster(work / "plain", extra_args=slow),
                "with": LocalCluster(work / "metrics", node_args=with_args, extra_args=slow)}
    urls = [f"http://127.0.0.1:{p}/metrics" for p in ports]
    stop = threading.Event()
    thread = threading.Thread(target=scraper, args=(urls, stop, counts), daemon=True)
    try:
        for c in clusters.values():
            c.start()
        for c in clusters.values():
            leader = c.wait_for_leader(timeout=30)
            # Warm up: connections, first WAL segment, the leader's first entries.
            redis_benchmark(c.client_addr(leader)[1], "set", min(requests, 2000), 50, 1)
        thread.start()
        got: dict[str, tuple[float, float]] = {}
        for name in order:
            c = clusters[name]
            for _ in range(3):  # a run cut short by a leader change is run again
                leader, _ = roles(c)
                before = cpu_ns(c)
                run = redis_benchmark(c.client_addr(leader)[1], "set", requests, 50, 1)
                per_set = (cpu_ns(c) - before) / 1000 / requests
                if "SET" in run.rows and not run.returncode:
                    break
            rps = run.rows["SET"].rps if "SET" in run.rows else 0.0
            got[name] = (rps, per_set)
            print(f"  c50 SET {name:>7} --metrics-addr: {rps:8.0f}/s "
                  f"p50 {run.rows['SET'].p50_ms if 'SET' in run.rows else 0:.2f} ms, "
                  f"cluster CPU {per_set:.0f} us/SET {' '.join(run.alerts)[:120]}")
        return got
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for c in clusters.values():
            c.close()


def load(c: LocalCluster, keys: int, value: bytes) -> str:
    """SET key:00000000 .. in pipelined batches of 1000, a batch again after a leader
    change (SET is idempotent); the last key."""
    started = time.monotonic()
    for lo in range(0, keys, 1000):
        for attempt in range(10):
            try:
                with conn(c, c.wait_for_leader(timeout=30)).pipeline(transaction=False) as pipe:
                    for k in range(lo, min(lo + 1000, keys)):
                        pipe.set(f"key:{k:08d}", value)
                    pipe.execute()
                break
            except redis.RedisError as exc:
                print(f"  batch {lo} again after: {exc}"[:150])
                if attempt == 9:
                    raise
    took = time.monotonic() - started
    print(f"  wrote {keys} keys of {len(value)} B in {took:.1f} s ({keys / took:.0f}/s)")
    return f"key:{keys - 1:08d}"


def raftkv(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "raftkv", *args], capture_output=True,
                         text=True, check=True)
    return time.perf_counter() - started, out.stdout.strip()


def backup_restore(work: Path, keys: int) -> None:
    old = LocalCluster(work / "old")
    try:
        old.start()
        old.wait_for_leader(timeout=30)
        last = load(old, keys, b"v" * 100)
        _, followers = roles(old)
        took, out = raftkv("backup", "--endpoints", old.nodes[followers[0]].client_addr,
                           str(work / "b.bak"))
        size = (work / "b.bak").stat().st_size
        print(f"backup of {keys} keys: {took:.2f} s wall (process start included), "
              f"{size / 1e6:.1f} MB\n  {out}")
    finally:
        old.close()
    took, _ = raftkv("backup", "verify", str(work / "b.bak"))
    print(f"backup verify: {took:.2f} s")
    new = LocalCluster(work / "new", extra_args=["--cluster-id", "restored"])
    for i, node in new.nodes.items():
        took, _ = raftkv("restore", str(work / "b.bak"), "--data-dir", str(node.data_dir),
                         "--id", str(i), "--cluster", new.cluster_arg_for(i),
                         "--cluster-id", "restored")
        print(f"restore of node {i}: {took:.2f} s")
    try:
        started = time.perf_counter()
        new.start()
        leader = new.wait_for_leader(timeout=60)
        wait(lambda: conn(new, leader).get(last) == b"v" * 100)
        print(f"restored cluster serving the last key {time.perf_counter() - started:.2f} s "
              f"after start; DBSIZE {conn(new, leader).dbsize()}")
    finally:
        new.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--skip-metrics", action="store_true")
    ap.add_argument("--skip-backup", action="store_true")
    args = ap.parse_args()
    print(load_line())
    with scratch_dir(args.dir, "bench-ops-") as work:
        if not args.skip_metrics:
            metrics_overhead(work, args.requests, args.rounds)
        if not args.skip_backup:
            backup_restore(work, args.keys)
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
