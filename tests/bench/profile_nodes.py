"""py-spy profiles of a 3-node RaftKV leader and follower under a redis-benchmark SET load.

Run (py-spy in the venv; root, or ptrace allowed):
  .venv/bin/python tests/bench/profile_nodes.py [--clients 1] [--seconds 10] [--out DIR]

Starts a 3-node cluster (fsync always), runs ``redis-benchmark -t set -c CLIENTS`` on the
leader, and meanwhile records ``py-spy record`` of the leader and of a follower twice: with
``--idle`` (wall time: where a write waits) and without (CPU only). Writes speedscope-free
``raw`` (collapsed stack) files DIR/{leader,follower}{,-idle}.txt and prints, for each, the
share of samples in the frames that matter for one write (fsync, thread hand-off, socket
send/recv, epoll, the core, apply, RESP parse/encode). Every process is killed on exit.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from common import raft_cluster, redis_benchmark, roles, scratch_dir

# (label, substring of a collapsed frame); a sample counts once per label
STAGES = [
    ("fsync (os.fsync in the worker)", "sync (raftkv/storage"),
    ("waiting: epoll / trio idle", "get_events"),
    ("thread hand-off (to_thread / from_thread)", "to_thread"),
    ("peer send (transport)", "transport.py"),
    ("client port (parse, dispatch, reply)", "client_port.py"),
    ("raft core (step/ready/advance)", "raftkv/raft/"),
    ("persist (WAL append, encode)", "wal.py"),
    ("apply (kv)", "raftkv/kv/machine.py"),
    ("msgpack / frame codecs", "wire/"),
]


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


def shares(path: Path) -> tuple[int, dict[str, float]]:
    """(samples, label -> share) of a collapsed-stack file."""
    total, hits = 0, collections.Counter[str]()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for label, needle in STAGES:
            if needle in stack:
                hits[label] += int(count)
    return total, {label: hits[label] / total if total else 0.0 for label, _ in STAGES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="profiles", help="directory for the collapsed stacks")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with scratch_dir(args.dir, "bench-profile-") as work, \
            raft_cluster(work / "raftkv", fsync="always") as cluster:
        leader, followers = roles(cluster)
        port = cluster.client_addr(leader)[1]
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                redis_benchmark(port, "set", 2000 if args.clients == 1 else 20_000,
                                args.clients)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        files = {}
        for idle in (True, False):
            procs = []
            for name, node in (("leader", leader), ("follower", followers[0])):
                proc = cluster.nodes[node].proc
                assert proc is not None
                path = out / f"c{args.clients}-{name}{'-idle' if idle else ''}.txt"
                files[path.stem] = path
                procs.append(record(proc.pid, path, args.seconds, idle))
            for p in procs:
                p.wait(timeout=args.seconds + 60)
        stop.set()
        loader.join()
    for stem, path in files.items():
        if not path.exists():
            print(f"{stem}: no profile written")
            continue
        total, sh = shares(path)
        print(f"{stem}: {total} samples")
        for label, v in sh.items():
            print(f"  {v:6.1%}  {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
