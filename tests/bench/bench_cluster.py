"""redis-benchmark against a 3-node RaftKV cluster, beside redis-server on the same disk.

Run: /work/venv/bin/python tests/bench/bench_cluster.py [--requests N | --quick] [--dir DIR]

Starts a 3-node cluster (fsync always) and a ``redis-server --appendonly yes --appendfsync
always`` on free ports, and runs ``redis-benchmark -t set,get`` with 50 clients unpipelined
(-P 1) and pipelined (-P 16), and with one client (-c 1 -n 5000), through a FOLLOWER (which
forwards to the leader), through the LEADER, and against redis-server. Prints ops/s, p50 and
p99 latency of each and the ratio of RaftKV's ops/s to redis-server's. Both are durable per
write: redis fsyncs its AOF before replying; RaftKV fsyncs on a majority before replying,
so a RaftKV write costs at least one network round trip and two fsyncs in sequence.

Any output line of redis-benchmark mentioning WARNING or ERROR is printed (redis-benchmark
asks the server ``CONFIG GET save`` / ``appendonly`` before it starts). The script also
reports a leader change (term moved) during the runs. Everything runs under a scratch
directory on the disk of --dir (default /work/tmp), removed at the end.
"""

from __future__ import annotations

import argparse
import time

from common import (
    BenchRun,
    CpuSampler,
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
        return f"{target:<16} {config:<16} {test:<4} (no result)"
    ratio = ""
    if ref is not None and test in ref.rows and ref.rows[test].rps > 0:
        ratio = f"{row.rps / ref.rows[test].rps:8.3f}"
    return (f"{target:<16} {config:<16} {test:<4} {row.rps:>10.0f} {row.p50_ms:>9.3f} "
            f"{row.p99_ms:>9.3f} {row.max_ms:>9.3f} {ratio:>8}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000, help="-n of the c50 runs")
    ap.add_argument("--quick", action="store_true", help="shorthand for --requests 20000")
    ap.add_argument("--c1-requests", type=int, default=5000, help="-n of the -c 1 runs")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.requests
    n1 = min(args.c1_requests, n)
    configs = [("-c 50 -P 1", 50, 1, n), ("-c 50 -P 16", 50, 16, n), ("-c 1 -P 1", 1, 1, n1)]

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
        with raft_cluster(work / "raftkv", fsync="always") as cluster:
            leader, followers = roles(cluster)
            before = terms(cluster)
            print(f"raftkv: leader n{leader}, followers {followers}, terms {before}")
            cpu = CpuSampler(cluster)
            for target in ("raftkv-follower", "raftkv-leader"):
                for name, c, p, req in configs:
                    leader, followers = roles(cluster)
                    node = followers[0] if target == "raftkv-follower" else leader
                    _, port = cluster.client_addr(node)
                    run = redis_benchmark(port, "set,get", req, c, p)
                    results[(target, name)] = run
                    alerts += [f"{target} n{node} {name}: {a}" for a in run.alerts]
                    alerts += [f"after {target} n{node} {name}: {d} (restarted)"
                               for d in revive_dead(cluster)]
            cpu_line = cpu.report()
            after = terms(cluster)
            kept = save_logs(cluster, "cluster") if alerts or after != before else None
            final_leader, _ = roles(cluster)

    print(f"\nredis-benchmark -t set,get; c50 runs n={n}, c1 runs n={n1}; "
          f"raftkv 3 nodes fsync=always; redis-server appendfsync=always")
    print(f"{'target':<16} {'config':<16} {'test':<4} {'ops/s':>10} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'max ms':>9} {'x redis':>8}")
    for name, *_ in configs:
        ref = results[("redis-server", name)]
        for target in ("raftkv-follower", "raftkv-leader", "redis-server"):
            run = results[(target, name)]
            for test in ("SET", "GET"):
                print(fmt_row(target, name, run, test, None if target == "redis-server" else ref))
        print()
    changed = {i: (before[i], after[i]) for i in before if before[i] != after[i]}
    print(f"terms before {before}, after {after}; leader at the end n{final_leader}: "
          + ("LEADER CHANGE during the runs " + str(changed) if changed else "no leader change"))
    print("redis-benchmark WARNING/ERROR lines and node deaths: "
          + ("none" if not alerts else str(len(alerts))))
    for line in alerts:
        print("  " + line)
    if kept:
        print(f"node logs kept in {kept}")
    print(cpu_line + " (during the raftkv runs)")
    print(load_line())
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
