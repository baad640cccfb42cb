"""Is it the entry's bytes? c50 INCR plain, plain with a key padded so that its log entry is
as long as a ``RAFT ONCE`` one, and ``RAFT ONCE``, in one run.

Run: .venv/bin/python tests/bench/bench_sessions_bytes.py [--clients 50] [--seconds 4]
     [--rounds 8]

A ``RAFT ONCE sid seq INCR k`` entry is 56 bytes against a plain ``INCR k``'s 22 (the
session id's 19 digits, the sequence number, ``once``): more bytes in every WAL group,
AppendEntries frame and fsync. The ``padded`` kind sends plain INCRs whose key is 34 bytes
longer, so its entries are as long as the sessions' while its work per command is a plain
INCR's. One 3-node cluster (fsync always, bench_sessions.py's); each round runs the three
kinds in a rotated order (reversed every other round); printed: per kind and round the
INCR/s, the nodes' and the leader's CPU per INCR and the leader's WAL syncs per INCR (how
many INCRs share a group commit), then the median ratios to ``plain`` over the rounds with
a bootstrap 95% interval of the median, and each kind's median user and system (kernel)
CPU per INCR of the leader and of the two followers (``/proc/PID/stat``, 10 ms ticks).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics

import trio
from bench_sessions import _client, node_cpu_ns, slow_election_cluster
from common import conn, load_line, median_ci, roles, scratch_dir

from chaos.cluster import LocalCluster

PAD = b"x" * 34  # INCR ctr0 + PAD: 56 bytes as an entry, as RAFT ONCE's
KINDS = ("plain", "padded", "once")
FIGURES = ("INCR/s", "nodes' CPU/INCR", "leader's CPU/INCR", "leader's WAL syncs/INCR")
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def user_system_us(pid: int) -> tuple[float, float]:
    """The process's (user, system) CPU so far, in us (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) * TICK_US, int(fields[12]) * TICK_US


async def one_round(addr: tuple[str, int], kind: str, clients: int,
                    seconds: float) -> tuple[int, float, list[str]]:
    """(INCRs answered, wall seconds, errors) of one round of ``kind``."""
    counts, errors = [0], []
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            key = b"ctr%d" % (i % 8) + (PAD if kind == "padded" else b"")
            nursery.start_soon(_client, addr, kind == "once", key, started + seconds, counts,
                               errors)
    return counts[0], trio.current_time() - started, errors


def wal_syncs(cluster: LocalCluster, node: int) -> int:
    """The node's WAL group commits so far (INFO's ``raft_wal_syncs``)."""
    return int(conn(cluster, node).info("all").get("raft_wal_syncs", 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    print(load_line())
    rows: dict[str, list[tuple[float, float, float, float]]] = collections.defaultdict(list)
    # kind -> role -> [(user, system) us per INCR of the round]
    split: dict[str, dict[str, list[tuple[float, float]]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    with scratch_dir(args.dir, "bench-sessions-bytes-") as work, \
            slow_election_cluster(work / "c") as cluster:
        for r in range(args.rounds):
            order = list(KINDS[r % 3:] + KINDS[:r % 3])
            for kind in (order if r % 2 == 0 else order[::-1]):
                leader, _ = roles(cluster)
                pids = {i: node.proc.pid for i, node in cluster.nodes.items() if node.proc}
                times = {i: user_system_us(pid) for i, pid in pids.items()}
                syncs, cpu = wal_syncs(cluster, leader), node_cpu_ns(cluster)
                done, took, errors = trio.run(one_round, cluster.client_addr(leader), kind,
                                              args.clients, args.seconds)
                syncs = wal_syncs(cluster, leader) - syncs
                after = {i: user_system_us(pid) for i, pid in pids.items()}
                spent = {i: ns - cpu.get(i, ns) for i, ns in node_cpu_ns(cluster).items()}
                ok = done > 0 and not errors
                row = ((done / took, sum(spent.values()) / 1000 / done,
                        spent.get(leader, 0) / 1000 / done, syncs / done) if ok
                       else (0.0, 0.0, 0.0, 0.0))
                rows[kind].append(row)
                if ok:
                    for role, ids in (("leader", [leader]),
                                      ("followers", [i for i in pids if i != leader])):
                        split[kind][role].append(
                            (sum(after[i][0] - times[i][0] for i in ids) / done,
                             sum(after[i][1] - times[i][1] for i in ids) / done))
                note = f" errors: {errors[0][:80]} (x{len(errors)})" if errors else ""
                print(f"  round {r} {kind:>6}: {row[0]:6.0f} INCR/s, nodes' CPU {row[1]:5.1f} "
                      f"us/INCR (leader {row[2]:5.1f}), leader's WAL syncs/INCR "
                      f"{row[3]:.4f}{note}", flush=True)
    for kind in ("padded", "once"):
        for j, what in enumerate(FIGURES):
            ratios = [a[j] / b[j] for a, b in zip(rows[kind], rows["plain"], strict=True)
                      if a[j] and b[j]]
            if ratios:
                mid, lo, hi = median_ci(ratios)
                print(f"{kind}/plain {what}: median {(mid - 1) * 100:+.1f}% (95% CI of the "
                      f"median {(lo - 1) * 100:+.1f}% .. {(hi - 1) * 100:+.1f}%) over "
                      f"{len(ratios)} rounds")
    for kind in KINDS:
        print(f"{kind}: user + system CPU per INCR (medians): " + ", ".join(
            f"{role} {statistics.median(u for u, _ in v):.1f} + "
            f"{statistics.median(k for _, k in v):.1f} us" for role, v in split[kind].items()))
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
