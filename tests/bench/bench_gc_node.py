"""The full garbage collections of real nodes (INFO ``gc_full_*``), for comparing trees.

``sets``: a 1-node cluster gets 100k SETs and 4,000 RAFT SESSION OPENs (the log keeps them
all: ``--snapshot-entries 1000000``), its stats are reset, then 100k more SETs: prints the
full passes during those, the last and longest, and the longest loop stall.
``mset``: a 3-node cluster gets 100k keys, then one 100,000-key MSET: prints every node's
figures for that MSET (the command of the issue-12 finding).

Run it once per tree, interleaved, with that tree on PYTHONPATH (the nodes inherit it)::

    cd /work/main && PYTHONPATH=$PWD python /path/to/bench_gc_node.py sets main
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import redis

from chaos.cluster import LocalCluster
from raftkv.probe import call, parse_info

FIELDS = ("gc_full_collections", "gc_full_last_ms", "gc_full_max_ms", "loop_lag_max_ms")


def info(c: LocalCluster, node_id: int) -> dict[str, str]:
    return parse_info(call(c.nodes[node_id].client_addr, "INFO", "everything", timeout=30))


def load(r: redis.Redis, prefix: bytes, n: int) -> None:
    for start in range(0, n, 2000):
        p = r.pipeline(transaction=False)
        for i in range(start, start + 2000):
            p.set(b"%s:%07d" % (prefix, i), b"v" * 16)
        p.execute()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["sets", "mset"])
    ap.add_argument("label")
    args = ap.parse_args()
    nodes = 1 if args.mode == "sets" else 3
    with tempfile.TemporaryDirectory() as tmp:
        c = LocalCluster(Path(tmp), nodes=nodes, fsync="never",
                         extra_args=["--snapshot-entries", "1000000", "--election-ticks", "100"])
        c.start()
        try:
            leader = c.wait_for_leader(timeout=60)
            host, port = c.client_addr(leader)
            r = redis.Redis(host=host, port=port, socket_timeout=120, protocol=2)
            load(r, b"k", 100_000)
            if args.mode == "sets":
                p = r.pipeline(transaction=False)
                for _ in range(4000):
                    p.execute_command("RAFT", "SESSION", "OPEN")
                p.execute()
            for node_id in c.nodes:
                call(c.nodes[node_id].client_addr, "CONFIG", "RESETSTAT", timeout=30)
            before = {node_id: info(c, node_id) for node_id in c.nodes}
            if args.mode == "sets":
                load(r, b"k", 100_000)
            else:
                r.mset({b"m:%06d" % i: b"w" for i in range(100_000)})
            for node_id in c.nodes:
                now = info(c, node_id)
                passes = int(now[FIELDS[0]]) - int(before[node_id][FIELDS[0]])
                role = "leader" if node_id == leader else "follower"
                print(f"{args.label} {args.mode} node {node_id} ({role}): full passes {passes}, "
                      + ", ".join(f"{f}={now[f]}" for f in FIELDS[1:]), flush=True)
        finally:
            c.close()


if __name__ == "__main__":
    main()
