"""py-spy profiles of a 3-node RaftKV leader and follower under a redis-benchmark SET load.

Run (py-spy in the venv; root, or ptrace allowed):
  .venv/bin/python tests/bench/profile_nodes.py [--clients 1] [--pipeline 1] [--seconds 10]
      [--out DIR]

Starts a 3-node cluster (fsync always), runs ``redis-benchmark -t set -c CLIENTS`` on the
leader, and meanwhile records ``py-spy record`` of the leader and of a follower twice: with
``--idle`` (wall time: where a write waits) and without (CPU only). Writes
``raw`` (collapsed stack) files DIR/c{CLIENTS}-{leader,follower}{,-idle}.txt and prints, per
thread (the trio loop; the fsync worker), each stage's share of the samples and what that
is in microseconds per write (the profile's wall time over the writes the leader applied
meanwhile). With ``--idle`` the shares are of wall time: where a write waits. Every process
is killed on exit.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from common import CpuSampler, raft_cluster, redis_benchmark, roles, scratch_dir

from chaos.cluster import LocalCluster

# Stages of a write, by the frames a sample's stack holds (first match wins; py-spy names
# methods Class.method). Stacks under the node's trio loop (run_node) are the main thread;
# the rest is the fsync worker. The WAL fsync runs on the loop while the disk is quick
# (raftkv.node.sync_thread), so it shows under both.
MAIN = [
    ("idle: epoll wait", ("get_events",)),
    ("trio scheduler", ("process_events", "reschedule")),
    ("peer send (encode + send syscall)", ("_send_loop", "_encode_batch")),
    ("peer receive + decode", ("_receive_loop", "_serve_inbound", "_watch_outbound")),
    ("core.step of peer messages", ("deliver",)),
    ("client reply send", ("ClientServer._writer",)),
    ("client recv", ("ClientServer._reader;", "receive_some")),
    ("client parse + dispatch + propose", ("ClientServer",)),
    ("WAL fsync on the loop", ("fsync_fd",)),
    ("fsync hand-off (loop side)", ("to_thread", "start_thread_soon", "SyncThread.run")),
    ("fsync by AIO (submit + reap)", ("AioFsync",)),
    ("persist (WAL encode + write)", ("persist", "wal.py", "DiskStorage.sync")),
    ("apply + answer", ("Applier.apply",)),
    ("ready (core.ready / advance)", ("CoreDriver.run", "_handle_ready")),
    ("ticker / sweeper / loop lag", ("Ticker.run", "run_sweeper", "LoopLagMonitor")),
]
WORKER = [
    ("fsync", ("fsync_fd",)),
    ("sync: other (WAL write)", ("DiskStorage.sync",)),
    ("idle: waiting for a job", ("_thread_cache", "SyncThread._work")),
]


def classify(stack: str) -> str:
    main = "run_node" in stack
    for label, needles in MAIN if main else WORKER:
        if label == "client recv":
            if all(n in stack for n in needles):
                return "main: " + label
            continue
        if any(n in stack for n in needles):
            return ("main: " if main else "worker: ") + label
    return "main: other" if main else "worker: other"


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return exe


def record(pid: int, out: Path, seconds: float, idle: bool) -> subprocess.Popen[bytes]:
    cmd = [py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)),
           "--rate", "500", "--format", "raw", "--output", str(out), "--nonblocking"]
    if idle:
        cmd.append("--idle")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def shares(path: Path) -> dict[str, tuple[int, int]]:
    """label -> (samples, samples of its thread) of a collapsed-stack file."""
    hits, per_thread = collections.Counter[str](), collections.Counter[str]()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        label = classify(stack)
        hits[label] += int(count)
        per_thread[label.split(":")[0]] += int(count)
    return {label: (n, per_thread[label.split(":")[0]]) for label, n in sorted(hits.items())}


def applied(cluster: LocalCluster, node: int, key: str = "last_applied") -> int:
    """INFO raft's ``key``, or INFO stats' ``raft_reads`` (reads this node served)."""
    if key == "last_applied":
        return int((cluster.info(node, 2.0) or {}).get(key, 0))
    host, port = cluster.client_addr(node)
    out = subprocess.run(["redis-cli", "-h", host, "-p", str(port), "INFO", "stats"],
                         capture_output=True, text=True, timeout=10, check=False).stdout
    for line in out.splitlines():
        if line.startswith(key + ":"):
            return int(line.partition(":")[2])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--pipeline", type=int, default=1, help="redis-benchmark -P")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--test", default="set", choices=("set", "get"),
                    help="redis-benchmark -t (get: linearizable reads)")
    ap.add_argument("--on", default="leader", choices=("leader", "follower"),
                    help="the node redis-benchmark talks to")
    ap.add_argument("--out", default="profiles", help="directory for the collapsed stacks")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with scratch_dir(args.dir, "bench-profile-") as work, \
            raft_cluster(work / "raftkv", fsync="always") as cluster:
        leader, followers = roles(cluster)
        port = cluster.client_addr(leader if args.on == "leader" else followers[0])[1]
        if args.test == "get":  # the key redis-benchmark reads, so a GET finds a value
            redis_benchmark(cluster.client_addr(leader)[1], "set", 1, 1)
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                redis_benchmark(port, args.test, 2000 if args.clients == 1 else 20_000,
                                args.clients, args.pipeline)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        cpu = CpuSampler(cluster)
        files = {}
        writes: dict[bool, int] = {}
        for idle in (True, False):
            # operations done: writes applied, or reads served by the node under load
            target = leader if args.on == "leader" else followers[0]
            key = "last_applied" if args.test == "set" else "raft_reads"
            first = applied(cluster, target, key)
            procs = []
            for name, node in (("leader", leader), ("follower", followers[0])):
                proc = cluster.nodes[node].proc
                assert proc is not None
                path = out / (f"c{args.clients}p{args.pipeline}-{name}"
                              f"{'-idle' if idle else ''}.txt")
                files[path.stem] = path
                procs.append(record(proc.pid, path, args.seconds, idle))
            for p in procs:
                p.wait(timeout=args.seconds + 60)
            writes[idle] = applied(cluster, target, key) - first
        stop.set()
        cpu_line = cpu.report()
        loader.join()
    # "idle" below includes time a thread was runnable but waiting for a CPU (py-spy sees
    # the stack it was preempted in): the schedstat line says how much of that there was.
    print(cpu_line)
    for stem, path in files.items():
        if not path.exists():
            print(f"{stem}: no profile written")
            continue
        n = writes[stem.endswith("-idle")]
        print(f"{stem}: ~{n} writes in {args.seconds:g} s "
              f"({args.seconds / max(n, 1) * 1e6:.0f} us of wall time each); share of the "
              f"thread's samples, and us per write")
        for label, (hits, total) in shares(path).items():
            share = hits / total
            print(f"  {share:6.1%} {share * args.seconds / max(n, 1) * 1e6:8.0f} us  {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
