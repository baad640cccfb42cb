"""How long a fresh node takes to join a loaded cluster and catch up, with real processes.

Run: /work/venv/bin/python tests/bench/bench_join.py [--keys 100000] [--value-size 100]
     [--compare] [--dir DIR]

A 3-node cluster (fsync always) takes --keys SETs (pipelined), the leader snapshots
(RAFT SNAPSHOT: its log is compacted, so the new node must get the snapshot), then node 4
starts with an empty data directory and ``--join``. Timed from its start (which includes
starting Python, about 0.5 s): ADDNODE committed ("joined the cluster"), snapshot
installed, promoted to voter (INFO raft members), serving the last key. With --compare,
the same join without a snapshot (the new node replays the whole log).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import conn, field, load_keys, scratch_dir, serves, wait

from chaos.cluster import LocalCluster
from raftkv.probe import parse_members


def is_voter(c: LocalCluster, node_id: int) -> bool:
    info = c.info(node_id) or {}
    return parse_members(info.get("members", "")).get(node_id, ("", ""))[1] == "voter"


def run(workdir: Path, keys: int, value_size: int, snapshot: bool) -> None:
    with LocalCluster(workdir, extra_args=["--snapshot-entries", "0"]) as c:
        leader = c.wait_for_leader(timeout=30)
        r = conn(c, leader)
        value = b"v" * value_size
        last = load_keys(r, keys, value)
        if snapshot:
            index = r.execute_command("RAFT", "SNAPSHOT")
            print(f"  leader snapshot at index {index} "
                  f"({field(c.nodes[leader].log_path, 'snapshot taken', 'bytes')} bytes)")
        t0 = time.monotonic()
        node = c.add_node(4)
        log = node.log_path

        def logged(line: str) -> bool:
            return log.exists() and line in log.read_text(errors="replace")

        joined = wait(lambda: logged("joined the cluster"))
        print(f"  start -> ADDNODE committed (learner): {joined:.2f} s")
        if snapshot:
            wait(lambda: logged("snapshot installed"))
            print(f"  start -> snapshot installed: {time.monotonic() - t0:.2f} s "
                  f"(install + restore: {field(log, 'snapshot installed', 'ms')} ms)")
        wait(lambda: is_voter(c, 4))
        print(f"  start -> promoted to voter: {time.monotonic() - t0:.2f} s")
        wait(lambda: serves(c, 4, last, value))
        print(f"  start -> serves the last key: {time.monotonic() - t0:.2f} s")
        assert snapshot == logged("snapshot installed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--compare", action="store_true", help="also join by log replay")
    ap.add_argument("--dir", default=None, help="scratch base (a real disk)")
    a = ap.parse_args()
    with scratch_dir(a.dir, "bench-join-") as d:
        print("join, catching up by snapshot:")
        run(d / "snap", a.keys, a.value_size, snapshot=True)
        if a.compare:
            print("join, catching up by log replay (no snapshot):")
            run(d / "replay", a.keys, a.value_size, snapshot=False)


if __name__ == "__main__":
    main()
