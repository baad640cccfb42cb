"""What TLS costs: redis-benchmark SET with 50 clients and with 1, against a 3-node cluster
with TLS on both ports (client TLS + mutual peer TLS) and against the same cluster without.

Run: python tests/bench/bench_tls.py [--rounds 3] [--requests 20000] [--fsync always]
                                     [--baseline REF]

Both configurations require a password (so the difference is TLS alone) and are started
afresh in alternating rounds (plain, TLS, plain, TLS, ...): throughput on a shared machine
drifts between rounds more than between builds, so the medians of adjacent pairs are
compared. Prints each run and the TLS/plain ratio of the medians (ops/s, p50, p99), and
the CPU time per SET summed over the three node processes (utime + stime from
/proc/PID/stat around each redis-benchmark run, less what the idle cluster used in as
long, sampled for 3 s before its runs): the load of a shared machine moves throughput
much more than it moves CPU per operation.

``--baseline REF`` adds, in every round, a TLS cluster running git ref REF's raftkv (a
before/after of a TLS change in one run: its TLS/plain ratio is against this tree's plain
runs, whose plain-text path the change does not touch).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path

from common import (
    BaselineCluster,
    BenchRun,
    export_tree,
    load_line,
    redis_benchmark,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster
from raftkv import certs

PASSWORD = "bench-password"
TICK = os.sysconf("SC_CLK_TCK")
IDLE_SAMPLE = 3.0  # seconds of an idle cluster's CPU sampled before its runs


def start(workdir: Path, tls: Path | None, fsync: str, src: Path | None) -> LocalCluster:
    """A running cluster; ``src``: a source tree to run instead of this one."""
    args = ["--requirepass", PASSWORD]
    if tls is not None:
        args += ["--tls-cert", str(tls / "node.crt"), "--tls-key", str(tls / "node.key")]
    kw = {"nodes": 3, "fsync": fsync, "extra_args": args, "peer_tls": tls}
    cluster = (LocalCluster(workdir, **kw) if src is None  # type: ignore[arg-type]
               else BaselineCluster(workdir, src, **kw))
    cluster.start()
    cluster.wait_for_leader(timeout=30)
    return cluster


def node_cpu(cluster: LocalCluster) -> float:
    """Seconds of CPU (user + system) used so far by the cluster's node processes."""
    total = 0
    for node in cluster.nodes.values():
        if node.proc is None:
            continue
        with contextlib.suppress(OSError), open(f"/proc/{node.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def idle_cpu(cluster: LocalCluster, seconds: float = IDLE_SAMPLE) -> float:
    """CPU seconds per second the idle cluster uses (heartbeats, timers, the sync thread)."""
    before = node_cpu(cluster)
    time.sleep(seconds)
    return (node_cpu(cluster) - before) / seconds


def bench(cluster: LocalCluster, tls: Path | None, clients: int, requests: int,
          idle: float) -> tuple[BenchRun, float]:
    """The run and the node CPU per request in microseconds, less the idle cluster's CPU
    over the run's duration (at 1 client, idle work is most of the CPU otherwise)."""
    leader, _ = roles(cluster)
    host, port = cluster.client_addr(leader)
    extra = ["-a", PASSWORD]
    if tls is not None:
        extra += ["--tls", "--cacert", str(tls / "ca.crt")]
    before = node_cpu(cluster)
    run = redis_benchmark(port, "set", requests, clients, host=host, extra=extra)
    used = node_cpu(cluster) - before - idle * run.seconds
    return run, used / requests * 1e6


def set_harness_env(tls: Path | None) -> None:
    """The harness's INFO calls (wait_for_leader, roles) authenticate, over TLS when on."""
    os.environ["RAFTKV_PASSWORD"] = PASSWORD
    if tls is None:
        os.environ.pop("RAFTKV_CACERT", None)
    else:
        os.environ["RAFTKV_CACERT"] = str(tls / "ca.crt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000, help="for -c 50; -c 1 runs a tenth")
    parser.add_argument("--fsync", default="always", choices=["always", "never"])
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also run TLS clusters of git ref REF (before/after in one run)")
    opts = parser.parse_args()
    results: dict[tuple[str, int], list[tuple[BenchRun, float]]] = {}
    print(f"load before: {load_line()}")
    with scratch_dir(prefix="bench-tls-") as work:
        tls_dir = work / "certs"
        certs.create(tls_dir)
        configs: list[tuple[str, Path | None, Path | None]] = [("plain", None, None),
                                                              ("tls", tls_dir, None)]
        if opts.baseline:
            src = export_tree(opts.baseline, work / "baseline-src")
            configs.append((f"tls@{opts.baseline}", tls_dir, src))
        for n in range(opts.rounds):
            # Alternate the order too (A B C, C B A, ...): no configuration always runs
            # first, when the machine may still be busy with the previous cluster's exit.
            for name, tls, src in (configs if n % 2 == 0 else configs[::-1]):
                set_harness_env(tls)
                cluster = start(work / f"{name}-{n}", tls, opts.fsync, src)
                try:
                    idle = idle_cpu(cluster)
                    for clients, requests in ((50, opts.requests), (1, opts.requests // 10)):
                        run, cpu = bench(cluster, tls, clients, requests, idle)
                        row = run.rows.get("SET")
                        results.setdefault((name, clients), []).append((run, cpu))
                        shown = (f"{row.rps:9.0f} ops/s p50 {row.p50_ms:6.2f} ms p99 "
                                 f"{row.p99_ms:6.2f} ms, node CPU {cpu:6.0f} us/SET"
                                 if row else "no result")
                        print(f"round {n} {name:10} -c {clients:2}: {shown} "
                              f"{run.alerts or ''}", flush=True)
                finally:
                    cluster.close()
    print(f"load after: {load_line()}")
    names = [name for name, _, _ in configs]
    for clients in (50, 1):
        med = {}
        for name in names:
            runs = [(r.rows["SET"], cpu) for r, cpu in results[(name, clients)]
                    if "SET" in r.rows]
            med[name] = (statistics.median(row.rps for row, _ in runs),
                         statistics.median(row.p50_ms for row, _ in runs),
                         statistics.median(row.p99_ms for row, _ in runs),
                         statistics.median(cpu for _, cpu in runs))
        prps, pp50, pp99, pcpu = med["plain"]
        print(f"-c {clients:2} median: plain {prps:.0f} ops/s (p50 {pp50:.2f}, p99 {pp99:.2f} "
              f"ms, {pcpu:.0f} us CPU/SET)")
        for name in names[1:]:
            trps, tp50, tp99, tcpu = med[name]
            print(f"      {name:>10}: {trps:.0f} ops/s (p50 {tp50:.2f}, p99 {tp99:.2f} ms, "
                  f"{tcpu:.0f} us CPU/SET); throughput vs plain {100 * (trps / prps - 1):+.1f}%,"
                  f" p50 x{tp50 / pp50:.2f}, CPU/SET x{tcpu / pcpu:.2f}")
            print(f"      {'':>10}  paired by round: {paired(results, name, clients)}")


def paired(results: dict[tuple[str, int], list[tuple[BenchRun, float]]], name: str,
           clients: int) -> str:
    """The per-round ratios of ``name`` to plain (same round: the same machine load), as
    median and range: the spread the ratio of medians hides."""
    rps, cpu = [], []
    pairs = zip(results[(name, clients)], results[("plain", clients)], strict=True)
    for (run, c), (base, bc) in pairs:
        if "SET" in run.rows and "SET" in base.rows and base.rows["SET"].rps and bc > 0:
            rps.append(run.rows["SET"].rps / base.rows["SET"].rps)
            cpu.append(c / bc)
    if not rps:
        return "no pairs"
    return (f"throughput x{statistics.median(rps):.3f} ({min(rps):.3f} .. {max(rps):.3f}), "
            f"CPU/SET x{statistics.median(cpu):.3f} ({min(cpu):.3f} .. {max(cpu):.3f}), "
            f"{len(rps)} rounds")


if __name__ == "__main__":
    main()
