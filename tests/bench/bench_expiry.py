"""Active expiry under load: a c50 SET load with and without 100k keys expiring meanwhile.

Run: .venv/bin/python tests/bench/bench_expiry.py [--keys N] [--requests N] [--dir DIR]

Starts a 3-node cluster (fsync always) and runs ``redis-benchmark -t set -c 50`` against
the leader three times: before any TTL exists (baseline), while ``--keys`` keys that share
one deadline expire (the leader proposes ``EXPIRED`` batches of 500, one at a time), and
after. It prints each run's SET ops/s and latency, and how long after the deadline every
node's state held none of the expired keys (INFO keyspace).
"""

from __future__ import annotations

import argparse
import threading
import time

import redis
from common import conn, load_line, raft_cluster, redis_benchmark, roles, scratch_dir

_EXPIRE_ALL = "for i = 1, #KEYS do redis.call('PEXPIREAT', KEYS[i], ARGV[1]) end"


def keyspace_keys(client: redis.Redis) -> int:
    info = client.info("keyspace")
    return int(info.get("db0", {}).get("keys", 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=20_000, help="-n of each c50 SET run")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    print(load_line())
    with scratch_dir(args.dir, "bench-expiry-") as work, \
            raft_cluster(work / "raftkv", fsync="always") as cluster:
        leader, _ = roles(cluster)
        _, port = cluster.client_addr(leader)
        r = conn(cluster, leader)
        base = redis_benchmark(port, "set", args.requests, 50)
        started = time.time()
        for lo in range(0, args.keys, 1000):
            for _ in range(20):  # SET is idempotent: retry a batch a leader change lost
                try:
                    with r.pipeline(transaction=False) as pipe:
                        for k in range(lo, min(lo + 1000, args.keys)):
                            pipe.set(f"ttl:{k:08d}", b"x" * 32)
                        pipe.execute()
                    break
                except (redis.ResponseError, redis.ConnectionError) as exc:
                    print(f"  retrying a batch: {exc!s:.80}")
                    time.sleep(0.5)
                    leader, _ = roles(cluster)
                    r = conn(cluster, leader)
        print(f"  loaded {args.keys} keys in {time.time() - started:.1f} s")
        # Then one deadline for all, a few seconds ahead, set by scripts of 1000 keys each
        # (a script is one entry; a short one keeps the apply loop, heartbeats, flowing).
        probe = time.time()
        r.eval(_EXPIRE_ALL, 1, "ttl:00000000", int((probe + 3600) * 1000))
        budget = 15 + 3 * (time.time() - probe) * args.keys / 1000  # a loaded box is slow
        deadline_ms = int((time.time() + budget) * 1000)
        for lo in range(0, args.keys, 1000):
            keys = [f"ttl:{k:08d}" for k in range(lo, min(lo + 1000, args.keys))]
            for _ in range(20):  # PEXPIREAT is idempotent
                try:
                    r.eval(_EXPIRE_ALL, len(keys), *keys, deadline_ms)
                    break
                except (redis.ResponseError, redis.ConnectionError) as exc:
                    print(f"  retrying a script: {exc!s:.80}")
                    time.sleep(0.5)
                    leader, _ = roles(cluster)
                    r = conn(cluster, leader)
        left = deadline_ms / 1000 - time.time()
        print(f"  deadlines set; {left:.1f} s before they pass")
        clients = {i: conn(cluster, i) for i in cluster.nodes}  # one connection each
        baseline_keys = keyspace_keys(clients[leader]) - args.keys
        time.sleep(max(deadline_ms / 1000 - time.time() - 0.2, 0))
        expiring = keyspace_keys(clients[leader]) - baseline_keys
        gone: dict[int, float] = {}

        def watch_expiry() -> None:
            while len(gone) < len(cluster.nodes) and time.time() < deadline_ms / 1000 + 300:
                for i in cluster.nodes:  # (the SET load adds a key or two of its own)
                    try:
                        if i not in gone and keyspace_keys(clients[i]) <= baseline_keys + 10:
                            gone[i] = time.time() - deadline_ms / 1000
                    except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
                        pass  # an election or a busy node: ask again
                time.sleep(0.05)  # polling other processes: there is no event to wait on

        watcher = threading.Thread(target=watch_expiry)
        watcher.start()
        during = redis_benchmark(port, "set", args.requests, 50)
        watcher.join()
        after = redis_benchmark(port, "set", args.requests, 50)
    print(f"\nredis-benchmark -t set -c 50 -n {args.requests} on the leader; "
          f"{expiring} keys expiring at once during the second run")
    print(f"{'run':<22} {'SET ops/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, run in (("no TTLs", base), ("while keys expire", during), ("after", after)):
        row = run.rows.get("SET")
        if row is None:
            print(f"{name:<22} (no result) {run.alerts}")
        else:
            print(f"{name:<22} {row.rps:>10.0f} {row.p50_ms:>8.2f} {row.p99_ms:>8.2f}")
    print("expired keys gone from every node's state after the deadline: "
          + ", ".join(f"n{i} {s:.1f} s" for i, s in sorted(gone.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
