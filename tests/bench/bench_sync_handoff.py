"""The WAL fsync on the event loop vs in the sync thread: wall and CPU time per write+fsync.

Run: .venv/bin/python tests/bench/bench_sync_handoff.py [--ops 300] [--rounds 6] [--dir DIR]

A trio loop writes 100 bytes and fsyncs them ``--ops`` times on the loop (what
``SyncThread.sync`` does while the disk is quick), then the same through
``SyncThread.run`` (the hand-off to the worker thread and back), and the same write with
its fsync run by the kernel's AIO (``SyncThread.sync`` given a split WAL: the node's path
for a small group where the kernel has AIO fsync), rotating the order every round. Prints
the medians per operation: wall time (the disk plus, for the thread,
the hand-off) and this process's CPU time (the hand-off's cost, which the machine's load
moves little). The AIO fsync's kernel work runs in a kworker, outside this process: its
CPU figure leaves that out (``bench_write_path.py`` prints the kworkers' CPU too). The
file is under --dir (default /work/tmp): a real disk, not tmpfs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import trio
from common import scratch_dir

from raftkv.node.sync_thread import SyncThread


async def measure(fd: int, ops: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    def sync() -> None:
        os.write(fd, b"x" * 100)
        os.fsync(fd)

    class Split:  # SplitSync over the one file: the write here, the fsync by the kernel
        def sync_write(self) -> tuple[int, bool]:
            os.write(fd, b"x" * 100)
            return fd, False

        def sync_fd(self, fd_: int, datasync: bool) -> None:
            os.fsync(fd_)

        def synced(self, error: OSError | None) -> None:
            if error is not None:
                raise error

    split = Split()
    modes = ["loop", "thread", "aio"]
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    async with SyncThread() as worker:
        if not worker.uses_aio:
            modes.remove("aio")
            del results["aio"]
        for rnd in range(rounds):
            for mode in modes[rnd % len(modes):] + modes[:rnd % len(modes)]:
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(ops):
                    if mode == "loop":
                        sync()
                    elif mode == "thread":
                        await worker.run(sync)
                    else:
                        await worker.sync(sync, 100, split)
                results[mode].append(((time.perf_counter() - wall) / ops * 1e6,
                                      (time.process_time() - cpu) / ops * 1e6))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    with scratch_dir(args.dir, "bench-handoff-") as work:
        fd = os.open(work / "wal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            results = trio.run(measure, fd, args.ops, args.rounds)
        finally:
            os.close(fd)
    for mode, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"{mode:<7} wall {wall:8.0f} us/op  cpu {cpu:6.0f} us/op  "
              f"(rounds' wall: {', '.join(f'{r[0]:.0f}' for r in runs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
