"""How long a follower takes to catch up by snapshot, with real processes.

Run: /work/venv/bin/python tests/bench/bench_snapshot.py [--keys 100000] [--value-size 100]
     [--compare] [--dir DIR]

A 3-node cluster (fsync always) with automatic snapshots off; one follower is killed; the
leader takes --keys SETs (pipelined) and then a snapshot (RAFT SNAPSHOT, timed from the
client and from the leader's "snapshot taken" line); the follower is restarted and timed
until its log says "snapshot installed" and until it serves the last key (a restart
includes starting Python, about 0.5 s). With --compare,
the same catch-up is run without the snapshot (the follower replays the log instead).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import conn, field, load_keys, scratch_dir, serves, wait

from chaos.cluster import LocalCluster


def run(workdir: Path, keys: int, value_size: int, snapshot: bool) -> None:
    args = ["--snapshot-entries", "0"]
    with LocalCluster(workdir, extra_args=args) as c:
        leader = c.wait_for_leader(timeout=30)
        lagging = next(i for i in c.nodes if i != leader)
        c.kill(lagging)
        r = conn(c, leader)
        value = b"v" * value_size
        last = load_keys(r, keys, value)
        if snapshot:
            t0 = time.monotonic()
            index = r.execute_command("RAFT", "SNAPSHOT")
            log = c.nodes[leader].log_path
            print(f"  RAFT SNAPSHOT -> {index} in {time.monotonic() - t0:.3f} s "
                  f"(leader: {field(log, 'snapshot taken', 'bytes')} bytes, "
                  f"{field(log, 'snapshot taken', 'ms')} ms)")
        restarted = time.monotonic()
        c.start(lagging)
        log = c.nodes[lagging].log_path
        if snapshot:
            installed = wait(lambda: "snapshot installed" in log.read_text(errors="replace"))
            print(f"  restart -> snapshot installed: {installed:.2f} s "
                  f"(install + restore: {field(log, 'snapshot installed', 'ms')} ms)")
        wait(lambda: serves(c, lagging, last, value))
        served = time.monotonic() - restarted
        print(f"  restart -> follower serves the last key: {served:.2f} s")
        assert snapshot == ("snapshot installed" in log.read_text(errors="replace"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--compare", action="store_true", help="also catch up by log replay")
    ap.add_argument("--dir", default=None, help="scratch base (a real disk)")
    a = ap.parse_args()
    with scratch_dir(a.dir, "bench-snapshot-") as d:
        print("catch-up by snapshot:")
        run(d / "snap", a.keys, a.value_size, snapshot=True)
        if a.compare:
            print("catch-up by log replay (no snapshot):")
            run(d / "replay", a.keys, a.value_size, snapshot=False)


if __name__ == "__main__":
    main()
