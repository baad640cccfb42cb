"""Memory under a long overwrite load: is every node's RSS flat (issue 15, within 10 %)?

Run: .venv/bin/python tests/bench/bench_memory.py [--minutes 10] [--keys 100000]
                                                  [--interval 10] [--warmup 60] [--dir DIR]

Starts a 3-node RaftKV (fsync always, snapshots at their default, --snapshot-entries
100000, unless ``--snapshot-entries`` says otherwise) on free loopback ports, writes
``--keys`` keys first (``key:%012d``, the names ``redis-benchmark -r`` draws), then for
``--minutes`` runs ``redis-benchmark -t set -c 50 -r KEYS`` against the leader (of the
moment) without a pause (runs of 20k requests back to back; a run a leader change broke is
not counted) and, beside it, a lighter ``-t get -c 5 -r KEYS`` (some reads: their sessions,
buffers and ReadIndex state must not accumulate either). Every ``--interval`` seconds it
samples each node's resident set size from /proc/PID/status (VmRSS) and, from INFO, the
Raft log held in memory (last_log_index - snapshot_index), the key count and the full-GC
count, and prints one line per sample.

At the end it prints each node's RSS series, its min and max AFTER the warm-up (the first
``--warmup`` seconds of load, default one minute: the allocator's arenas, the first
snapshot and the log grow to their working size there; they are excluded and the report
says so), the spread max/min - 1 and the change from the first to the last sample after
the warm-up, and the verdict: flat when every node's spread is within ``--tolerance``
(default 10 %). Expect a saw-tooth inside the spread: the log grows until the next
snapshot compacts it. A node that grows shows up in both figures. Then the same figures
from the first sample after every node's second snapshot of the load (one full cycle of the
log, 0 to --snapshot-entries entries: the allocator keeps that high-water mark, so RSS
climbs through the first cycle however long it takes, and is the steady state after it).

Every node's process group and every redis-benchmark it started are killed at the end,
also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import attrs
import redis
from bench_scale import stop_on_signals
from common import HOST, load_line, raft_cluster, roles, scratch_dir

from chaos.cluster import LocalCluster

# requests per redis-benchmark run: short, so the load ends near the deadline
BATCH = {"set": 20_000, "get": 5_000}


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def info_all(cluster: LocalCluster, node: int) -> dict[str, str]:
    """INFO (default sections) and INFO raft of one node as one dict; {} if it did not
    answer within 5 s."""
    host, port = cluster.client_addr(node)
    try:
        r = redis.Redis(host=host, port=port, socket_timeout=5, protocol=2)
        out = {k: str(v) for k, v in r.info("all").items()}
        raft = cluster.info(node, 5.0) or {}
        r.close()
    except (redis.RedisError, OSError):
        return {}
    return {**out, **raft}


def load_keys(cluster: LocalCluster, keys: int, size: int) -> tuple[float, int]:
    """SET every ``key:%012d`` below ``keys`` in pipelined batches of 1000 through the
    leader; a batch a leader change broke is sent again to the new leader (SET is
    idempotent), at most 10 times. (seconds taken, batches sent again)."""
    value = b"x" * size
    start = time.monotonic()
    again = 0
    for lo in range(0, keys, 1000):
        for attempt in range(11):
            leader, _ = roles(cluster)
            host, port = cluster.client_addr(leader)
            r = redis.Redis(host=host, port=port, socket_timeout=60, protocol=2)
            try:
                with r.pipeline(transaction=False) as pipe:
                    for k in range(lo, min(lo + 1000, keys)):
                        pipe.set(f"key:{k:012d}", value)
                    pipe.execute()
                break
            except (redis.RedisError, OSError):
                if attempt == 10:
                    raise
                again += 1
            finally:
                r.close()
    return time.monotonic() - start, again


class Load:
    """redis-benchmark runs back to back until ``stop`` is set, in a thread, each on the
    leader of the moment (``port``); every child is tracked so ``kill`` can end the one
    running (on Ctrl-C too)."""

    def __init__(self, port: Callable[[], int], test: str, clients: int, keys: int,
                 size: int) -> None:
        self.batch = BATCH[test]
        self.port = port
        self.args = ["-t", test, "-n", str(self.batch), "-c", str(clients), "-r", str(keys),
                     "-d", str(size), "--csv"]
        self.stop = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.lock = threading.Lock()
        self.done = 0  # requests of the runs that completed
        self.rps: list[float] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                if self.stop.is_set():
                    return
                cmd = ["redis-benchmark", "-h", HOST, "-p", str(self.port()), *self.args]
                self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)
            try:
                out, err = self.proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
                err += " (killed after 600 s)"
            if self.stop.is_set():
                return  # killed at the deadline: a partial run has no figure
            rows = list(csv.DictReader(io.StringIO(out)))
            if self.proc.returncode or not rows:
                self.errors.append(f"exit {self.proc.returncode}: {err.strip()[:200]}")
                time.sleep(1)  # a failed run (leader change?): do not spin; the deadline ends it
                continue
            self.done += self.batch
            self.rps.append(float(rows[0]["rps"]))

    def kill(self) -> None:
        with self.lock:
            self.stop.set()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def loads(*items: Load) -> Iterator[tuple[Load, ...]]:
    try:
        for item in items:
            item.thread.start()
        yield items
    finally:
        for item in items:
            item.kill()
        for item in items:
            if item.thread.is_alive():
                item.thread.join(timeout=30)


@attrs.define
class Sample:
    t: float  # seconds since the load started
    rss: dict[int, int | None]  # node -> KiB
    log: dict[int, int | None]  # node -> entries held since the snapshot
    keys: dict[int, str]
    gc: dict[int, str]
    snap: dict[int, int | None] = attrs.Factory(dict)  # node -> snapshot_index


def sample(cluster: LocalCluster, t: float) -> Sample:
    s = Sample(t, {}, {}, {}, {})
    for i, node in cluster.nodes.items():
        s.rss[i] = rss_kib(node.proc.pid) if node.proc else None
        info = info_all(cluster, i)
        try:
            s.snap[i] = int(info["snapshot_index"])
            s.log[i] = int(info["last_log_index"]) - s.snap[i]
        except (KeyError, ValueError):
            s.log[i] = s.snap[i] = None
        s.keys[i] = info.get("db0", "?").split(",")[0].removeprefix("{'keys': ").rstrip("}")
        s.gc[i] = info.get("gc_full_collections", "?")
    return s


def mib(kib: int | None) -> str:
    return "gone" if kib is None else f"{kib / 1024:.1f}"


def judge(window: list[Sample], nodes: list[int], tolerance: float) -> bool:
    """Print each node's min, max, spread and first->last over ``window``; all flat?"""
    flat = bool(window)
    for i in nodes:
        vals = [s.rss[i] for s in window]
        got = [v for v in vals if v is not None]
        if not got or len(got) < len(vals):
            print(f"  n{i}: the node was gone in a sample: NOT flat")
            flat = False
            continue
        lo, hi = min(got), max(got)
        spread = hi / lo - 1
        drift = got[-1] / got[0] - 1
        logs = [s.log[i] for s in window if s.log[i] is not None]
        ok = spread <= tolerance
        flat = flat and ok
        print(f"  n{i}: min {mib(lo)} max {mib(hi)} MiB, spread {spread:+.1%}, "
              f"first->last {mib(got[0])} -> {mib(got[-1])} ({drift:+.1%}); Raft log held "
              f"{min(logs, default=0)}..{max(logs, default=0)} entries  "
              f"{'flat' if ok else 'NOT flat'}")
    return flat


def after_cycle(samples: list[Sample], nodes: list[int]) -> list[Sample]:
    """The samples after every node took its second snapshot of the load: the first one
    compacts the log of the initial key load, the second ends the first full cycle of the
    log (0 to --snapshot-entries entries), whose high-water mark the allocator keeps."""
    seen: dict[int, set[int]] = {i: set() for i in nodes}
    for k, s in enumerate(samples):
        for i in nodes:
            if s.snap.get(i) is not None:
                seen[i].add(s.snap[i])  # type: ignore[arg-type]
        if all(len(v) >= 3 for v in seen.values()):  # the index at t=0, then two more
            return samples[k:]
    return []


def report(samples: list[Sample], warmup: float, tolerance: float) -> bool:
    nodes = sorted(samples[0].rss)
    print("\nRSS per node, MiB, every sample (t = seconds since the load started):")
    for i in nodes:
        print(f"  n{i}: " + " ".join(f"{mib(s.rss[i])}" for s in samples))
    after = [s for s in samples if s.t >= warmup]
    print(f"\nafter the warm-up (samples at t >= {warmup:.0f} s: {len(after)} of "
          f"{len(samples)}; the first {warmup:.0f} s of load are excluded):")
    flat = judge(after, nodes, tolerance)
    print(f"verdict: RSS of every node {'flat' if flat else 'NOT flat'} within "
          f"{tolerance:.0%} after the warm-up")
    steady = after_cycle(samples, nodes)
    if steady:
        print(f"\nafter one full cycle of the log (every node's second snapshot of the load; "
              f"samples at t >= {steady[0].t:.0f} s: {len(steady)}):")
        ok = judge(steady, nodes, tolerance)
        print(f"  RSS of every node {'flat' if ok else 'NOT flat'} within {tolerance:.0%} "
              f"after one cycle of the log")
    else:
        print("\nthe load did not complete one cycle of the log (two snapshots on every "
              "node): run longer for the steady state")
    return flat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of load")
    ap.add_argument("--keys", type=int, default=100_000, help="key space, loaded first")
    ap.add_argument("--size", type=int, default=3, help="value bytes (redis-benchmark -d)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds of load excluded from the flatness verdict")
    ap.add_argument("--tolerance", type=float, default=0.10, help="allowed max/min - 1")
    ap.add_argument("--get-clients", type=int, default=5, help="GET connections beside SET c50")
    ap.add_argument("--snapshot-entries", type=int, default=None,
                    help="the nodes' --snapshot-entries (default: theirs, 100000)")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    stop_on_signals()
    extra = ([] if args.snapshot_entries is None
             else ["--snapshot-entries", str(args.snapshot_entries)])
    started = time.monotonic()
    print(load_line() + f"; python {sys.executable}", flush=True)
    with scratch_dir(args.dir, "bench-memory-") as work, \
            raft_cluster(work / "raftkv", fsync="always", extra_args=extra) as cluster:
        terms0 = {i: (cluster.info(i, 2.0) or {}).get("term") for i in cluster.nodes}
        took, again = load_keys(cluster, args.keys, args.size)
        leader, _ = roles(cluster)
        print(f"loaded {args.keys} keys of {args.size} B in {took:.1f} s ({again} batches "
              f"sent again after a leader change); leader n{leader}",
              flush=True)
        s0 = sample(cluster, 0.0)
        print("before the load: RSS MiB " + ", ".join(
            f"n{i} {mib(v)}" for i, v in s0.rss.items()), flush=True)
        samples: list[Sample] = []
        seconds = args.minutes * 60
        def port_of_leader() -> int:
            return cluster.client_addr(roles(cluster)[0])[1]

        with loads(Load(port_of_leader, "set", 50, args.keys, args.size),
                   Load(port_of_leader, "get", args.get_clients, args.keys,
                        args.size)) as (sets, gets):
            t0 = time.monotonic()
            while True:
                t = time.monotonic() - t0
                s = sample(cluster, t)
                samples.append(s)
                print(f"t={t:5.0f}s RSS MiB " + " ".join(
                    f"n{i} {mib(s.rss[i])}" for i in sorted(s.rss))
                    + " | log " + " ".join(f"n{i} {s.log[i]}" for i in sorted(s.log))
                    + " | keys " + "/".join(s.keys[i] for i in sorted(s.keys))
                    + " | full gc " + "/".join(s.gc[i] for i in sorted(s.gc))
                    + f" | SETs done {sets.done}", flush=True)
                if t >= seconds:
                    break
                # the sampling period: a deadline for the next sample, not a synchronisation
                time.sleep(max(0.0, min(args.interval * len(samples), seconds) - t))
        elapsed = time.monotonic() - t0
        terms1 = {i: (cluster.info(i, 2.0) or {}).get("term") for i in cluster.nodes}
        dead = cluster.crashed()
        print(f"\nload: {elapsed:.0f} s of SET c50 -r {args.keys} (+ GET c{args.get_clients}) on "
              f"the leader (n{leader} at the start); {sets.done} SETs in completed runs "
              f"({sets.done / elapsed:.0f}/s), {gets.done} GETs; failed runs: "
              f"{len(sets.errors) + len(gets.errors)}")
        for e in (sets.errors + gets.errors)[:5]:
            print(f"  {e}")
        print(f"terms before {terms0} after {terms1}"
              + ("" if terms0 == terms1 else "  LEADER CHANGE"))
        if dead:
            print(f"NODES DIED: {dead}")
        flat = report(samples, args.warmup, args.tolerance)
    print(f"\n{load_line()}; wall time {time.monotonic() - started:.0f} s")
    return 0 if flat and not dead else 1


if __name__ == "__main__":
    raise SystemExit(main())
