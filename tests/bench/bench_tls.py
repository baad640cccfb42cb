"""What TLS costs: redis-benchmark SET with 50 clients and with 1, against a 3-node cluster
with TLS on both ports (client TLS + mutual peer TLS) and against the same cluster without.

Run: python tests/bench/bench_tls.py [--rounds 3] [--requests 20000] [--fsync always]

Both configurations require a password (so the difference is TLS alone) and are started
afresh in alternating rounds (plain, TLS, plain, TLS, ...): throughput on a shared machine
drifts between rounds more than between builds, so the medians of adjacent pairs are
compared. Prints each run and the TLS/plain ratio of the medians (ops/s, p50, p99).
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from common import BenchRun, load_line, redis_benchmark, roles, scratch_dir

from chaos.cluster import LocalCluster
from raftkv import certs

PASSWORD = "bench-password"


def start(workdir: Path, tls: Path | None, fsync: str) -> LocalCluster:
    args = ["--requirepass", PASSWORD]
    if tls is not None:
        args += ["--tls-cert", str(tls / "node.crt"), "--tls-key", str(tls / "node.key")]
    cluster = LocalCluster(workdir, nodes=3, fsync=fsync, extra_args=args, peer_tls=tls)
    cluster.start()
    cluster.wait_for_leader(timeout=30)
    return cluster


def bench(cluster: LocalCluster, tls: Path | None, clients: int, requests: int) -> BenchRun:
    leader, _ = roles(cluster)
    host, port = cluster.client_addr(leader)
    extra = ["-a", PASSWORD]
    if tls is not None:
        extra += ["--tls", "--cacert", str(tls / "ca.crt")]
    return redis_benchmark(port, "set", requests, clients, host=host, extra=extra)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000, help="for -c 50; -c 1 runs a tenth")
    parser.add_argument("--fsync", default="always", choices=["always", "never"])
    opts = parser.parse_args()
    results: dict[tuple[str, int], list[BenchRun]] = {}
    print(f"load before: {load_line()}")
    with scratch_dir(prefix="bench-tls-") as work:
        tls_dir = work / "certs"
        certs.create(tls_dir)
        # The harness's INFO calls (wait_for_leader, roles) authenticate, over TLS when on.
        os.environ["RAFTKV_PASSWORD"] = PASSWORD
        for n in range(opts.rounds):
            for name, tls in (("plain", None), ("tls", tls_dir)):
                if tls is None:
                    os.environ.pop("RAFTKV_CACERT", None)
                else:
                    os.environ["RAFTKV_CACERT"] = str(tls / "ca.crt")
                cluster = start(work / f"{name}-{n}", tls, opts.fsync)
                try:
                    for clients, requests in ((50, opts.requests), (1, opts.requests // 10)):
                        run = bench(cluster, tls, clients, requests)
                        row = run.rows.get("SET")
                        results.setdefault((name, clients), []).append(run)
                        shown = (f"{row.rps:9.0f} ops/s p50 {row.p50_ms:6.2f} ms p99 "
                                 f"{row.p99_ms:6.2f} ms" if row else "no result")
                        print(f"round {n} {name:5} -c {clients:2}: {shown} {run.alerts or ''}",
                              flush=True)
                finally:
                    cluster.close()
    print(f"load after: {load_line()}")
    for clients in (50, 1):
        med = {}
        for name in ("plain", "tls"):
            rows = [r.rows["SET"] for r in results[(name, clients)] if "SET" in r.rows]
            med[name] = (statistics.median(r.rps for r in rows),
                         statistics.median(r.p50_ms for r in rows),
                         statistics.median(r.p99_ms for r in rows))
        (prps, pp50, pp99), (trps, tp50, tp99) = med["plain"], med["tls"]
        print(f"-c {clients:2} median: plain {prps:.0f} ops/s (p50 {pp50:.2f}, p99 {pp99:.2f} ms)"
              f"; TLS {trps:.0f} ops/s (p50 {tp50:.2f}, p99 {tp99:.2f} ms); TLS throughput "
              f"{100 * (trps / prps - 1):+.1f}%, p50 x{tp50 / pp50:.2f}")


if __name__ == "__main__":
    main()
