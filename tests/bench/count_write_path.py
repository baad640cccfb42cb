"""What one client's write costs in events, not time: syscalls and context switches per SET.

Run: .venv/bin/python tests/bench/count_write_path.py --baseline main [--rounds 2]
         [--requests 1000]

Starts a 3-node cluster of this tree and one of ``--baseline`` (fsync always on both) and,
round by round with the two alternating, runs ``redis-benchmark -c 1`` SET on the leader
while ``strace -c -f`` counts the system calls of the leader and of one follower (every
thread: the loop, the sync thread). Also the context switches of each node process (every
thread, voluntary + involuntary, from /proc/PID/task/*/status) per SET, less what the idle
cluster does in the same time. These are counts: a loaded machine moves them far less than
ops/s or latency (README "Performance", issue 15). strace slows the traced processes, so
the run's ops/s are not figures of anything; ``bench_write_path.py`` measures speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

from common import baseline_cluster, load_line, raft_cluster, redis_benchmark, roles, scratch_dir

from chaos.cluster import LocalCluster

IDLE_SECONDS = 2.0
SHOWN = ("epoll_wait", "recvfrom", "sendto", "write", "fsync", "fdatasync", "futex",
         "epoll_ctl", "io_submit", "io_getevents", "read")


def ctx_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid``."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt")):
                        total += int(line.split()[1])
    return total


def cluster_switches(cluster: LocalCluster) -> dict[int, int]:
    return {i: ctx_switches(n.proc.pid) for i, n in cluster.nodes.items()
            if n.proc is not None and n.proc.poll() is None}


def parse_strace(text: str) -> dict[str, int]:
    """Calls per syscall from ``strace -c`` output (the 'calls' column)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m:
            calls[m.group(2)] = int(m.group(1))
    return calls


def trace(pids: dict[str, int], work: Path, tag: str) -> dict[str, subprocess.Popen[bytes]]:
    """Start ``strace -c -f`` on each process (every thread), output in ``work``."""
    procs = {role: subprocess.Popen(["strace", "-c", "-f", "-q", "-o",
                                     str(work / f"strace-{tag}-{role}.txt"), "-p", str(pid)])
             for role, pid in pids.items()}
    time.sleep(0.5)  # strace attaches to every thread
    return procs


def stop_trace(procs: dict[str, subprocess.Popen[bytes]], work: Path,
               tag: str) -> dict[str, dict[str, int]]:
    calls = {}
    for role, proc in procs.items():
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        calls[role] = parse_strace((work / f"strace-{tag}-{role}.txt").read_text())
    return calls


def one_round(cluster: LocalCluster, requests: int, work: Path) -> dict[str, float]:
    """Counts per SET at c1, each less the idle cluster's own rate (ticks, heartbeats)
    over the same time: context switches untraced, then syscalls under strace."""
    leader, followers = roles(cluster)
    node_of = {"leader": leader, "follower": followers[0]}
    pids = {role: cluster.nodes[node].proc.pid for role, node in node_of.items()}
    port = cluster.client_addr(leader)[1]
    result: dict[str, float] = {}
    # Context switches, untraced.
    before = cluster_switches(cluster)
    time.sleep(IDLE_SECONDS)
    idle_rate = {i: (n - before[i]) / IDLE_SECONDS for i, n in cluster_switches(cluster).items()}
    before = cluster_switches(cluster)
    started = time.monotonic()
    run = redis_benchmark(port, "set", requests, 1)
    elapsed = time.monotonic() - started
    after = cluster_switches(cluster)
    if run.returncode or "SET" not in run.rows:
        print(f"  redis-benchmark failed: {'; '.join(run.alerts[:2])}", flush=True)
        return {}
    for role, node in node_of.items():
        result[f"{role} ctx switches"] = (
            after[node] - before[node] - idle_rate[node] * elapsed) / requests
    result["cluster ctx switches"] = sum(
        after[i] - before[i] - idle_rate[i] * elapsed for i in after) / requests
    # Syscalls, under strace: the idle rate first, then the run.
    procs = trace(pids, work, "idle")
    time.sleep(IDLE_SECONDS)
    idle = stop_trace(procs, work, "idle")
    procs = trace(pids, work, "run")
    started = time.monotonic()
    run = redis_benchmark(port, "set", requests, 1)
    elapsed = time.monotonic() - started + 0.5  # (the attach wait is traced too)
    busy = stop_trace(procs, work, "run")
    if run.returncode or "SET" not in run.rows:
        print(f"  redis-benchmark failed under strace: {'; '.join(run.alerts[:2])}", flush=True)
        return result
    for role in pids:
        scale = elapsed / (IDLE_SECONDS + 0.5)
        per = {name: (n - idle[role].get(name, 0) * scale) / requests
               for name, n in busy[role].items()}
        result[f"{role} syscalls"] = sum(per.values())
        for name in SHOWN:  # (one not made at all is a 0, not a gap in the table)
            result[f"{role} {name}"] = per.get(name, 0.0)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    names = ["this", f"base@{args.baseline}"]
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    print(load_line(), flush=True)
    with scratch_dir(args.dir, "bench-count-") as work, contextlib.ExitStack() as stack:
        clusters = {names[0]: stack.enter_context(raft_cluster(work / "this", fsync="always")),
                    names[1]: stack.enter_context(baseline_cluster(work / "base",
                                                                   args.baseline))}
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                res = one_round(clusters[name], args.requests, work)
                results[name].append(res)
                print(f"round {rnd + 1} {name}: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in res.items()), flush=True)
    print(f"\nmedians per SET at c1 ({load_line()}):")
    keys = sorted({k for rs in results.values() for r in rs for k in r})
    print(f"  {'':<28}" + "".join(f"{n:>16}" for n in names))
    for k in keys:
        meds = [statistics.median([r[k] for r in results[n] if k in r] or [float("nan")])
                for n in names]
        print(f"  {k:<28}" + "".join(f"{m:>16.1f}" for m in meds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
