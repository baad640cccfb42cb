"""Node CPU per client round trip (PING, GET on the leader), this tree against a baseline.

Run: .venv/bin/python tests/bench/bench_roundtrip.py [--baseline main] [--requests N]
                                                     [--rounds R]

Starts a 3-node cluster of this tree and one of git ref ``--baseline`` (common.py's
baseline_cluster), and from one client connection per cluster sends commands one at a
time, each waiting for its reply (a watcher's or an unpipelined client's pattern: every
request is its own round trip). For each command and cluster it prints the CPU the node
processes spent per request (summed over the three nodes and their threads, from
/proc/PID/task/*/schedstat, less the cluster's idle CPU rate measured just before over the
same wall time), the median over rounds run interleaved A B B A ..., and this
tree's over the baseline's: CPU per operation barely moves with the machine's load, and
the interleaving exposes both trees to the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import time

from common import (
    _schedstat,
    baseline_cluster,
    load_line,
    raft_cluster,
    redis_benchmark,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster

IDLE_SAMPLE = 1.0  # seconds of idle CPU measured before each round
COMMANDS = {"PING": b"*1\r\n$4\r\nPING\r\n",
            "GET": b"*2\r\n$3\r\nGET\r\n$6\r\nbench0\r\n"}


def node_cpu_ns(cluster: LocalCluster) -> int:
    total = 0
    for node in cluster.nodes.values():
        if node.proc is not None:
            stat = _schedstat(node.proc.pid)
            total += stat[0] if stat else 0
    return total


def round_trips(sock: socket.socket, request: bytes, n: int) -> None:
    """``n`` requests, each after the previous one's whole reply (a line, or a bulk)."""
    buf = b""
    for _ in range(n):
        sock.sendall(request)
        while True:
            buf += sock.recv(65536)
            end = buf.find(b"\r\n")
            if end < 0:
                continue
            if buf[:1] == b"$" and buf[1:2] != b"-":
                need = end + 2 + int(buf[1:end]) + 2
                if len(buf) < need:
                    continue
                buf = buf[need:]
            else:
                buf = buf[end + 2:]
            break


def c50(trees: dict[str, LocalCluster], names: list[str], n: int, rounds: int) -> None:
    """``redis-benchmark -t get -c 50 -P 1`` on each leader, interleaved: node CPU per GET
    (ReadIndex rounds shared by the GETs waiting together) and ops/s."""
    per_op: dict[str, list[float]] = {name: [] for name in names}
    rps: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            leader, _ = roles(trees[name])
            _host, port = trees[name].client_addr(leader)
            before = node_cpu_ns(trees[name])
            run = redis_benchmark(port, "get", n, 50, 1)
            per_op[name].append((node_cpu_ns(trees[name]) - before) / n / 1000)
            rps[name].append(run.rows["GET"].rps if "GET" in run.rows else 0.0)
    ratios = [a / b for a, b in zip(per_op[names[0]], per_op[names[1]], strict=True)]
    print(f"GET c50 node CPU per request: this {statistics.median(per_op[names[0]]):6.1f} us, "
          f"{names[1]} {statistics.median(per_op[names[1]]):6.1f} us, this/{names[1]} median "
          f"{statistics.median(ratios):.2f} (rounds {', '.join(f'{x:.2f}' for x in ratios)}); "
          f"ops/s {statistics.median(rps[names[0]]):.0f}, {statistics.median(rps[names[1]]):.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--requests", type=int, default=3000, help="round trips per round")
    ap.add_argument("--rounds", type=int, default=6, help="rounds per tree and command")
    ap.add_argument("--c50", type=int, default=20000, metavar="N",
                    help="GETs per redis-benchmark -c 50 round (0: skip)")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    print(load_line())
    with scratch_dir(args.dir) as work, contextlib.ExitStack() as stack:
        trees = {"this": stack.enter_context(raft_cluster(work / "this")),
                 args.baseline: stack.enter_context(baseline_cluster(work / "base",
                                                                     args.baseline))}
        socks = {}
        for name, cluster in trees.items():
            leader, _ = roles(cluster)
            host, port = cluster.client_addr(leader)
            sock = socket.create_connection((host, port), timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$6\r\nbench0\r\n$16\r\n" + b"v" * 16 + b"\r\n")
            assert sock.recv(100) == b"+OK\r\n"
            round_trips(sock, COMMANDS["PING"], 200)  # warm up
            socks[name] = sock
        names = list(trees)
        for command, request in COMMANDS.items():
            per_op: dict[str, list[float]] = {name: [] for name in names}
            wall: dict[str, list[float]] = {name: [] for name in names}
            for r in range(args.rounds):
                order = names if r % 2 == 0 else names[::-1]  # A B B A ...
                for name in order:
                    # The cluster's idle CPU (ticks, heartbeats) over the same wall time is
                    # taken out: a GET waits for a ReadIndex round, and three idle nodes
                    # would otherwise count towards it.
                    idle0, t0 = node_cpu_ns(trees[name]), time.monotonic()
                    time.sleep(IDLE_SAMPLE)
                    idle_rate = (node_cpu_ns(trees[name]) - idle0) / (time.monotonic() - t0)
                    before, t0 = node_cpu_ns(trees[name]), time.monotonic()
                    round_trips(socks[name], request, args.requests)
                    elapsed = time.monotonic() - t0
                    spent = node_cpu_ns(trees[name]) - before - idle_rate * elapsed
                    per_op[name].append(spent / args.requests / 1000)
                    wall[name].append(elapsed / args.requests * 1e6)
            this, base = (statistics.median(per_op[n]) for n in names)
            ratios = [a / b for a, b in zip(per_op[names[0]], per_op[names[1]], strict=True)]
            print(f"{command:<5} node CPU per round trip: this {this:6.1f} us, "
                  f"{args.baseline} {base:6.1f} us, this/{args.baseline} "
                  f"median {statistics.median(ratios):.2f} "
                  f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}); wall per round trip "
                  f"{statistics.median(wall[names[0]]):.0f} us, "
                  f"{statistics.median(wall[names[1]]):.0f} us")
        for sock in socks.values():
            sock.close()
        if args.c50:
            c50(trees, names, args.c50, args.rounds)
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
