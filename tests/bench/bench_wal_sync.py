"""One WAL group commit (DiskStorage.append + sync, fsync=always), this tree against a git
ref, interleaved: wall and CPU time per group.

Run: .venv/bin/python tests/bench/bench_wal_sync.py --baseline main [--rounds 6]
         [--groups 1500] [--entries 1] [--dir DIR]

Each round runs this tree's storage and the baseline's (raftkv/ and wire/ of that ref) in
child processes, alternating the order (A B, then B A, ...), each appending ``--groups``
groups of ``--entries`` 100-byte entries to a fresh data dir on a real disk and syncing
each group. It prints wall and CPU (this process: the write and sync system calls) per
group, each round's paired ratios (this tree over the baseline) and their median. This is
the per-sync cost a node pays for every Ready that must sync (issue 15: one on the leader
and one on a follower in every write's path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import export_tree, load_line, scratch_dir

CHILD = """
import os, sys, time
from raftkv.storage import open_storage
from wire.raft import ClusterConfig, Entry, HardState, Member
d, groups, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = ClusterConfig((Member(1, "127.0.0.1:7801"),))
s = open_storage(d, "bench", 1, config, fsync="always")
data = b"x" * 100
index = 0
def group():
    global index
    s.append([Entry(1, index + i + 1, 0, data) for i in range(per)])
    index += per
    s.set_hard_state(HardState(1, 1, index - 1))
    s.sync()
for _ in range(50):  # warm up: the first groups allocate space ahead
    group()
cpu, wall = time.process_time(), time.perf_counter()
for _ in range(groups):
    group()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
s.close()
print(wall / groups * 1e6, cpu / groups * 1e6)
"""


def run(src: Path | None, workdir: Path, groups: int, per: int) -> tuple[float, float]:
    data = workdir / "data"
    subprocess.run(["rm", "-rf", str(data)], check=True)
    env = dict(os.environ)
    root = src or Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), str(groups), str(per)],
                         capture_output=True, text=True, env=env, cwd=str(root), check=True)
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--groups", type=int, default=1500)
    ap.add_argument("--entries", type=int, default=1)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    print(load_line(), flush=True)
    with scratch_dir(args.dir, prefix="bench-walsync-") as work:
        base_src = export_tree(args.baseline, work / "src")
        wall_r, cpu_r = [], []
        for rnd in range(args.rounds):
            order = ("this", "base") if rnd % 2 == 0 else ("base", "this")
            got = {}
            for who in order:
                got[who] = run(None if who == "this" else base_src, work, args.groups,
                               args.entries)
                print(f"round {rnd + 1} {who:5s} wall {got[who][0]:7.1f} us  "
                      f"cpu {got[who][1]:6.1f} us per group", flush=True)
            wall_r.append(got["this"][0] / got["base"][0])
            cpu_r.append(got["this"][1] / got["base"][1])
        print(f"\nthis / {args.baseline} over {args.rounds} rounds ({load_line()}):")
        for name, r in (("wall", wall_r), ("cpu", cpu_r)):
            print(f"  {name}: median {statistics.median(r):.3f} "
                  f"(rounds {', '.join(f'{x:.2f}' for x in r)})")


if __name__ == "__main__":
    main()
