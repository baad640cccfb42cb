"""redis-benchmark against a 3-node RaftKV cluster, beside redis-server on the same disk.

Run: .venv/bin/python tests/bench/bench_cluster.py [--requests N | --quick] [--dir DIR]
                                                    [--baseline REF]

Starts a 3-node cluster (fsync always) and a ``redis-server --appendonly yes --appendfsync
always`` on free ports, and runs ``redis-benchmark -t set,get`` with 50 clients unpipelined
(-P 1) and pipelined (-P 16), and with one client (-c 1 -n 5000), through a FOLLOWER (which
forwards to the leader), through the LEADER, and against redis-server. Prints ops/s, p50 and
p99 latency of each and the ratio of RaftKV's ops/s to redis-server's. Both are durable per
write: redis fsyncs its AOF before replying; RaftKV fsyncs on a majority before replying,
so a RaftKV write costs at least one network round trip and two fsyncs in sequence.

Any output line of redis-benchmark mentioning WARNING or ERROR is printed (redis-benchmark
asks the server ``CONFIG GET save`` / ``appendonly`` before it starts). The script also
reports a leader change (term moved) during the runs. ``--baseline REF`` adds a second
cluster running git ref REF's raftkv/ and wire/, through the same rows, and prints this
tree's ops/s over the baseline's (a before/after in one run, on the same machine load).
Everything runs under a scratch directory on the disk of --dir (default /work/tmp), removed
at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import time

from common import (
    BenchRun,
    CpuSampler,
    baseline_cluster,
    load_line,
    raft_cluster,
    redis_benchmark,
    redis_server,
    revive_dead,
    roles,
    save_logs,
    scratch_dir,
)

from chaos.cluster import LocalCluster


def terms(cluster: LocalCluster) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    for i in cluster.nodes:
        info = cluster.info(i, timeout=2.0)
        out[i] = int(info["term"]) if info else None
    return out


def fmt_row(target: str, config: str, run: BenchRun, test: str,
            ref: BenchRun | None) -> str:
    row = run.rows.get(test)
    if row is None:
        return f"{target:<24} {config:<16} {test:<4} (no result)"
    ratio = ""
    if ref is not None and test in ref.rows and ref.rows[test].rps > 0:
        ratio = f"{row.rps / ref.rows[test].rps:8.3f}"
    return (f"{target:<24} {config:<16} {test:<4} {row.rps:>10.0f} {row.p50_ms:>9.3f} "
            f"{row.p99_ms:>9.3f} {row.max_ms:>9.3f} {ratio:>8}")


def run_targets(cluster: LocalCluster, system: str, configs: list[tuple[str, int, int, int]],
                results: dict[tuple[str, str], BenchRun], alerts: list[str]) -> None:
    """Every config through a follower, then through the leader, of one cluster."""
    for where in ("follower", "leader"):
        target = f"{system}-{where}"
        for name, c, p, req in configs:
            leader, followers = roles(cluster)
            node = followers[0] if where == "follower" else leader
            _, port = cluster.client_addr(node)
            run = redis_benchmark(port, "set,get", req, c, p)
            results[(target, name)] = run
            alerts += [f"{target} n{node} {name}: {a}" for a in run.alerts]
            alerts += [f"after {target} n{node} {name}: {d} (restarted)"
                       for d in revive_dead(cluster)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000, help="-n of the c50 runs")
    ap.add_argument("--quick", action="store_true", help="shorthand for --requests 20000")
    ap.add_argument("--c1-requests", type=int, default=5000, help="-n of the -c 1 runs")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    ap.add_argument("--baseline", default=None, metavar="REF",
                    help="also run a cluster of git ref REF (before/after in one run)")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.requests
    n1 = min(args.c1_requests, n)
    configs = [("-c 50 -P 1", 50, 1, n), ("-c 50 -P 16", 50, 16, n), ("-c 1 -P 1", 1, 1, n1)]
    systems = ["raftkv"] + ([f"raftkv@{args.baseline}"] if args.baseline else [])

    results: dict[tuple[str, str], BenchRun] = {}
    alerts: list[str] = []
    started = time.perf_counter()
    print(load_line())
    with scratch_dir(args.dir, "bench-cluster-") as work:
        with redis_server(work) as rport:
            for name, c, p, req in configs:
                run = redis_benchmark(rport, "set,get", req, c, p)
                results[("redis-server", name)] = run
                alerts += [f"redis-server {name}: {a}" for a in run.alerts]
        with contextlib.ExitStack() as stack:
            this = stack.enter_context(raft_cluster(work / "raftkv", fsync="always"))
            clusters = {"raftkv": this}
            if args.baseline:
                clusters[systems[1]] = stack.enter_context(
                    baseline_cluster(work / "baseline", args.baseline))
            before = {system: terms(c) for system, c in clusters.items()}
            for system, c in clusters.items():
                leader, followers = roles(c)
                print(f"{system}: leader n{leader}, followers {followers}, terms {before[system]}")
            cpu = CpuSampler(clusters["raftkv"])
            for system, cluster in clusters.items():
                run_targets(cluster, system, configs, results, alerts)
            cpu_line = cpu.report()
            after = {system: terms(c) for system, c in clusters.items()}
            kept = [save_logs(c, system) for system, c in clusters.items()
                    if alerts or after[system] != before[system]]

    print(f"\nredis-benchmark -t set,get; c50 runs n={n}, c1 runs n={n1}; "
          f"raftkv 3 nodes fsync=always; redis-server appendfsync=always")
    print(f"{'target':<24} {'config':<16} {'test':<4} {'ops/s':>10} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'max ms':>9} {'x redis':>8}")
    targets = [f"{system}-{where}" for system in systems for where in ("follower", "leader")]
    for name, *_ in configs:
        ref = results[("redis-server", name)]
        for target in [*targets, "redis-server"]:
            run = results[(target, name)]
            for test in ("SET", "GET"):
                print(fmt_row(target, name, run, test, None if target == "redis-server" else ref))
        print()
    if args.baseline:
        print(f"this tree / {systems[1]} (ops/s ratio; above 1 is faster now):")
        for where in ("follower", "leader"):
            for name, *_ in configs:
                now = results[(f"raftkv-{where}", name)]
                then = results[(f"{systems[1]}-{where}", name)]
                cells = []
                for test in ("SET", "GET"):
                    if test in now.rows and test in then.rows and then.rows[test].rps > 0:
                        cells.append(f"{test} {now.rows[test].rps / then.rows[test].rps:.3f}")
                print(f"  {where:<9} {name:<12} " + "  ".join(cells))
        print()
    for system in systems:
        changed = {i: (before[system][i], after[system][i]) for i in before[system]
                   if before[system][i] != after[system][i]}
        verdict = f"LEADER CHANGE during the runs {changed}" if changed else "no leader change"
        print(f"{system}: terms before {before[system]}, after {after[system]}: {verdict}")
    print("redis-benchmark WARNING/ERROR lines and node deaths: "
          + ("none" if not alerts else str(len(alerts))))
    for line in alerts:
        print("  " + line)
    for path in kept:
        print(f"node logs kept in {path}")
    print(cpu_line + " (during this tree's raftkv runs)")
    print(load_line())
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
