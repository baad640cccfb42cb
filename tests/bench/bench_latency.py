"""Replication latency of single SETs, and leader stability under a full-load soak.

Run: /work/venv/bin/python tests/bench/bench_latency.py [--requests 5000] [--soak 60] [--dir DIR]

1. Latency: one client, sequential SETs (each waits for its reply), after a warm-up, through
   the LEADER and through a FOLLOWER (which forwards to the leader) of a 3-node cluster with
   fsync always, and against ``redis-server --appendfsync always`` on the same disk in the
   same run. Prints p50/p90/p99/max in ms and RaftKV / redis ratios. A RaftKV write is
   acknowledged after a majority fsynced it and the leader applied it.
2. Soak: ``redis-benchmark -t set -c 50 -P 16 -r 100000`` in a loop through the leader and,
   at the same time, through a follower, for --soak seconds. INFO raft of every node is
   polled every 0.5 s; the run reports any term or leader change (the issue wants none in
   60 s of full load without faults), the slowest INFO answer (a stalled event loop shows
   there), throughput per benchmark run, and whether all nodes converge afterwards.
"""

from __future__ import annotations

import argparse
import threading
import time

from common import (
    BenchRun,
    CpuSampler,
    RespConn,
    is_ok,
    load_line,
    percentile,
    raft_cluster,
    redis_benchmark,
    redis_server,
    revive_dead,
    roles,
    save_logs,
    scratch_dir,
)

from chaos.cluster import LocalCluster


def sequential_sets(port: int, requests: int, warmup: int, tag: str) -> list[float]:
    """Latencies (ms) of ``requests`` sequential SETs after ``warmup`` unmeasured ones."""
    out: list[float] = []
    with RespConn("127.0.0.1", port, timeout=10) as conn:
        for i in range(warmup + requests):
            t0 = time.perf_counter()
            reply = conn.call("SET", f"lat:{tag}:{i % 1000}", "x" * 100)
            dt = (time.perf_counter() - t0) * 1000
            if not is_ok(reply):
                raise RuntimeError(f"SET through {tag} failed: {reply!r}")
            if i >= warmup:
                out.append(dt)
    return out


def stats_line(name: str, lat: list[float], ref: dict[str, float] | None) -> dict[str, float]:
    s = sorted(lat)
    st = {"p50": percentile(s, 50), "p90": percentile(s, 90), "p99": percentile(s, 99),
          "max": s[-1], "ops": len(s) / (sum(s) / 1000)}
    ratio = ""
    if ref:
        ratio = "  x redis: " + " ".join(f"{k} {st[k] / ref[k]:.1f}" for k in
                                         ("p50", "p90", "p99"))
    print(f"{name:<16} p50 {st['p50']:7.2f}  p90 {st['p90']:7.2f}  p99 {st['p99']:7.2f}  "
          f"max {st['max']:8.2f} ms  ({st['ops']:.0f} ops/s){ratio}", flush=True)
    return st


class Watcher:
    """Polls INFO raft of every node; remembers terms, leaders and the slowest answer. A node
    in ``away`` (down on purpose) is not polled, and its view is taken afresh once back."""

    def __init__(self, cluster: LocalCluster, every: float = 0.5) -> None:
        self.cluster = cluster
        self.every = every
        self.stop = threading.Event()
        self.changes: list[str] = []
        self.slowest: dict[int, float] = {i: 0.0 for i in cluster.nodes}
        self.failed: dict[int, int] = {i: 0 for i in cluster.nodes}
        self.seen: dict[int, tuple[int, int]] = {}  # node -> (term, leader)
        self.away: set[int] = set()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(self.every):
            for i in self.cluster.nodes:
                if i in self.away:
                    continue
                t = time.monotonic()
                info = self.cluster.info(i, timeout=5.0)
                self.slowest[i] = max(self.slowest[i], time.monotonic() - t)
                if info is None:
                    self.failed[i] += 1
                    continue
                now = (int(info["term"]), int(info["leader_id"]))
                if i in self.seen and self.seen[i] != now:
                    self.changes.append(f"t={t - self.t0:5.1f}s n{i}: term/leader "
                                        f"{self.seen[i]} -> {now} (role {info['role']})")
                self.seen[i] = now


def bench_loop(port: int, deadline: float, runs: list[BenchRun], requests: int) -> None:
    while (left := deadline - time.monotonic()) > 0:
        runs.append(redis_benchmark(port, "set", requests, 50, 16, extra=["-r", "100000"],
                                    timeout=left + 30))


def soak(cluster: LocalCluster, seconds: float, requests: int) -> None:
    leader, followers = roles(cluster)
    before = {i: cluster.info(i, timeout=2.0) for i in cluster.nodes}
    watcher = Watcher(cluster)
    watcher.thread.start()
    cpu = CpuSampler(cluster)
    deadline = time.monotonic() + seconds
    loads: dict[str, list[BenchRun]] = {f"leader n{leader}": [],
                                        f"follower n{followers[0]}": []}
    threads = [threading.Thread(target=bench_loop, daemon=True,
                                args=(cluster.client_addr(node)[1], deadline, runs, requests))
               for node, runs in zip((leader, followers[0]), loads.values(), strict=True)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu_line = cpu.report()
    watcher.stop.set()
    watcher.thread.join()
    after = {i: cluster.info(i, timeout=2.0) for i in cluster.nodes}
    print(f"\nsoak: {elapsed:.0f} s of redis-benchmark -t set -c 50 -P 16 -r 100000 "
          f"(n={requests} per run, looped) through the leader and a follower at once")
    total = 0
    for name, runs in loads.items():
        rps = [r.rows["SET"].rps for r in runs if "SET" in r.rows]
        p99 = [r.rows["SET"].p99_ms for r in runs if "SET" in r.rows]
        mx = [r.rows["SET"].max_ms for r in runs if "SET" in r.rows]
        total += len(rps) * requests
        alerts = [a for r in runs for a in r.alerts]
        print(f"  via {name:<12} {len(runs)} runs; SET ops/s per run min {min(rps, default=0):.0f}"
              f" mean {sum(rps) / max(1, len(rps)):.0f} max {max(rps, default=0):.0f}; "
              f"p99 worst {max(p99, default=0):.0f} ms; max latency {max(mx, default=0):.0f} ms"
              + (f"; {len(alerts)} WARNING/ERROR lines: {alerts[:3]}" if alerts else ""))
    print(f"  total ~{total / elapsed:.0f} SET/s committed")
    deaths = revive_dead(cluster)
    for death in deaths:
        print(f"  {death} (restarted)")
    print(f"  {cpu_line}")
    print(f"  {load_line()}")
    terms_b = {i: before[i] and (before[i]["term"], before[i]["leader_id"]) for i in before}
    terms_a = {i: after[i] and (after[i]["term"], after[i]["leader_id"]) for i in after}
    print(f"  (term, leader) before {terms_b}")
    print(f"  (term, leader) after  {terms_a}")
    print("  snapshot_index after " + str({i: a and a["snapshot_index"] for i, a in after.items()}))
    print("  slowest INFO answer per node during the soak: "
          + ", ".join(f"n{i} {v * 1000:.0f} ms" for i, v in watcher.slowest.items())
          + (f"; INFO failures {watcher.failed}" if any(watcher.failed.values()) else ""))
    for line in watcher.changes:
        print("  CHANGE " + line)
    changed = terms_a != terms_b or bool(watcher.changes)
    if changed or deaths:
        print(f"  node logs kept in {save_logs(cluster, 'soak')}")
    print("  result: " + ("LEADER CHANGE under load" if changed
                          else f"no leader change in {elapsed:.0f} s of full load"))
    # Convergence: once the load stops, every node applies the same last index.
    t = time.monotonic()
    while True:
        infos = [cluster.info(i, timeout=2.0) for i in cluster.nodes]
        applied = {int(x["last_applied"]) for x in infos if x}
        if len(applied) == 1 and all(infos):
            print(f"  all nodes applied index {applied.pop()} "
                  f"{time.monotonic() - t:.1f} s after the load stopped")
            break
        if time.monotonic() - t > 30:
            applied_now = [x and x["last_applied"] for x in infos]
            print(f"  NOT converged 30 s after the load: last_applied {applied_now}")
            break
        time.sleep(0.1)  # polling other processes: there is no event to wait on


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5000, help="measured SETs per target")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--soak", type=float, default=60.0, help="seconds of full load (0: skip)")
    ap.add_argument("--soak-requests", type=int, default=20_000, help="-n of each soak run")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    print(load_line())
    with scratch_dir(args.dir, "bench-latency-") as work:
        print(f"sequential SET, 1 client, 100-byte values, {args.requests} measured after "
              f"{args.warmup} warm-up; latency in ms")
        with redis_server(work) as rport:
            ref = stats_line("redis-server", sequential_sets(rport, args.requests, args.warmup,
                                                             "redis"), None)
        with raft_cluster(work / "raftkv", fsync="always") as cluster:
            leader, followers = roles(cluster)
            cpu = CpuSampler(cluster)
            for name, node in (("leader", leader), ("follower", followers[0])):
                lat = sequential_sets(cluster.client_addr(node)[1], args.requests,
                                      args.warmup, name)
                stats_line(f"raftkv {name}", lat, ref)
                for death in revive_dead(cluster):
                    print(f"  {death} (restarted)")
            print(cpu.report())
            print(load_line())
            if args.soak > 0:
                soak(cluster, args.soak, args.soak_requests)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
