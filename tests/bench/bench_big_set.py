"""CPU per 8 MiB SET on the leader (and over all nodes), this tree against a git ref, interleaved.

Run: .venv/bin/python tests/bench/bench_big_set.py --baseline main [--rounds 4] [--sets 10]

Why (issue 12): an 8 MiB SET cost the leader 10.6 ms of GIL per follower to encode and frame
its AppendEntries (harden6's py-spy), time in which its event loop sent no heartbeat. This
starts a 3-node cluster of this tree and one of ``--baseline`` (fsync always on both), and
per round, the two alternating (A B, then B A, ...) so that both see the same machine load,
writes ``--sets`` values of 8 MiB - 4 KiB one after another and reads utime + stime of each
node process (every thread, /proc/PID/stat) before and after, less what the idle cluster
used in the 2 s before at the same rate. CPU per operation is what the load moves least;
absolute figures from a shared machine mean little, the ratio is the result. The leader's
loop-lag monitor (``INFO stats``: ``loop_lag_max_ms``, ``loop_lag_stalls``, reset before the
writes) says how long its event loop was held meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import redis
from common import baseline_cluster, load_line, raft_cluster, roles, scratch_dir

from chaos.cluster import LocalCluster
from wire.frames import encode_frame
from wire.raft import AppendEntries, Entry
from wire.record import encode, encode_frame_pieces

TICKS = os.sysconf("SC_CLK_TCK")
VALUE = 8 * 1024 * 1024 - 4096  # as tests/cluster/test_big_writes.py: fits 8 MiB requests
IDLE_SECONDS = 2.0


def cpu(cluster: LocalCluster, node_id: int) -> float:
    """utime + stime of one node process (all threads), in seconds."""
    proc = cluster.nodes[node_id].proc
    if proc is None or proc.poll() is not None:
        return 0.0
    with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    return 0.0


def run_round(cluster: LocalCluster, sets: int, value: bytes) -> dict[str, float]:
    leader, followers = roles(cluster)
    ids = [leader, *followers]
    host, port = cluster.client_addr(leader)
    r = redis.Redis(host=host, port=port, socket_timeout=30, protocol=2)
    try:
        r.set("warm", value)  # first big write: buffers grown, plans compiled
        idle0, t0 = [cpu(cluster, i) for i in ids], time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle1, t1 = [cpu(cluster, i) for i in ids], time.monotonic()
        rate = [(b - a) / (t1 - t0) for a, b in zip(idle0, idle1, strict=True)]
        r.config_resetstat()
        start = time.monotonic()
        for n in range(sets):
            assert r.set(f"big{n % 2}", value) is True
        elapsed = time.monotonic() - start
        after = [cpu(cluster, i) for i in ids]
        stats = r.info("stats")
    finally:
        r.close()
    used = [b - a - rt * elapsed for a, b, rt in zip(idle1, after, rate, strict=True)]
    return {"leader_ms": 1000 * used[0] / sets, "all_ms": 1000 * sum(used) / sets,
            "wall_ms": 1000 * elapsed / sets, "lag_max_ms": float(stats["loop_lag_max_ms"]),
            "stalls": float(stats["loop_lag_stalls"])}


def encode_cpu(value: bytes, rounds: int = 10, each: int = 10) -> dict[str, float]:
    """CPU ms to frame one 8 MiB AppendEntries, joined (as before) and in pieces, in-process,
    interleaved; medians."""
    msg = AppendEntries(3, 1, 2, 6, 3, (Entry(3, 7, 0, value),), 6, 1)
    ways = {"joined": lambda: encode_frame(encode(msg)),
            "pieces": lambda: encode_frame_pieces(msg, 16 << 20)}
    got: dict[str, list[float]] = {k: [] for k in ways}
    for rnd in range(rounds):
        for name in list(ways) if rnd % 2 == 0 else list(ways)[::-1]:
            t0 = time.process_time()
            for _ in range(each):
                ways[name]()
            got[name].append(1000 * (time.process_time() - t0) / each)
    return {k: statistics.median(v) for k, v in got.items()}


def line(got: dict[str, float]) -> str:
    return (f"leader {got['leader_ms']:6.1f} ms CPU/SET, all nodes {got['all_ms']:6.1f} ms, "
            f"wall {got['wall_ms']:6.1f} ms; leader loop lag max {got['lag_max_ms']:5.0f} ms, "
            f"stalls >50 ms {got['stalls']:3.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--sets", type=int, default=10)
    args = ap.parse_args()
    value = os.urandom(VALUE)
    print(load_line())
    enc = encode_cpu(value)
    print(f"framing one 8 MiB AppendEntries in-process: joined {enc['joined']:.3f} ms CPU, "
          f"in pieces {enc['pieces']:.3f} ms CPU")
    results: dict[str, list[dict[str, float]]] = {"this": [], args.baseline: []}
    with scratch_dir() as work, \
            raft_cluster(work / "this") as this, \
            baseline_cluster(work / "base", args.baseline) as base:
        clusters = {"this": this, args.baseline: base}
        order = ["this", args.baseline]
        for rnd in range(args.rounds):
            for name in order if rnd % 2 == 0 else order[::-1]:
                got = run_round(clusters[name], args.sets, value)
                results[name].append(got)
                print(f"round {rnd} {name:>8}: {line(got)}")
    print(load_line())
    med = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
           for name, rows in results.items()}
    for name, m in med.items():
        print(f"median {name:>8}: {line(m)}")
    for k in ("leader_ms", "all_ms", "lag_max_ms"):
        print(f"this / {args.baseline} {k}: {med['this'][k] / med[args.baseline][k]:.2f}")


if __name__ == "__main__":
    main()
