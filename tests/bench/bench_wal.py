"""WAL group commit throughput against the disk's raw fsync rate.

Run: /work/venv/bin/python tests/bench/bench_wal.py [--dir DIR] [--seconds S]   (~15 s)

For batches of 1, 16 and 256 entries of 100 bytes, each batch appended to a DiskStorage
and synced (one write + one fsync per batch, fsync=always), it reports appends (entries)/s,
syncs/s and payload MB/s. In the same run it measures the raw fsync rate of the same disk:
a loop of a 100-byte write + fsync on a plain file in the same directory. ``x raw`` is
entries/s divided by raw fsyncs/s: what group commit buys over one fsync per entry (and,
for batches of 1, what the storage layer costs on top of a bare write + fsync). The
fsync=never lines show the CPU cost alone (encoding, buffering, writes).

The directory must be on a real disk: /tmp is often tmpfs, where fsync is free.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from common import fs_type, scratch_dir

from raftkv.storage import open_storage
from wire.raft import ClusterConfig, Entry, HardState, Member

PAYLOAD = 100
CONFIG = ClusterConfig((Member(1, "127.0.0.1:7101"),))


def raw_fsync_rate(directory: str, seconds: float) -> float:
    path = os.path.join(directory, "raw-fsync.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    block = b"r" * PAYLOAD
    n = 0
    start = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - start) < seconds:
            os.write(fd, block)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return n / elapsed


def group_commit(directory: str, batch: int, fsync: str, seconds: float) -> tuple[float, float]:
    """(entries/s, syncs/s) appending ``batch`` entries then syncing, for ``seconds``."""
    data_dir = os.path.join(directory, f"wal-{batch}-{fsync}")
    storage = open_storage(data_dir, "bench", 1, CONFIG, fsync=fsync)
    data = b"d" * PAYLOAD
    index, syncs = 1, 0
    start = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - start) < seconds:
            storage.append([Entry(1, i, 0, data) for i in range(index, index + batch)])
            index += batch
            storage.set_hard_state(HardState(1, 1, index - 1))  # as a Ready usually carries
            storage.sync()
            syncs += 1
    finally:
        storage.close()
        shutil.rmtree(data_dir)
    return (index - 1) / elapsed, syncs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.getcwd(), help="scratch base (a real disk)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    with scratch_dir(args.dir, "bench-wal-") as path:
        work = str(path)
        print(f"directory {work} ({fs_type(work)}); {PAYLOAD}-byte entries; "
              f"{args.seconds:g} s per line")
        raw = raw_fsync_rate(work, args.seconds)
        print(f"raw write+fsync: {raw:10.0f} fsyncs/s")
        print(
            f"{'batch':>5} {'fsync':>6} {'entries/s':>11} {'syncs/s':>9} {'MB/s':>7} {'x raw':>7}"
        )
        for fsync in ("always", "never"):
            for batch in (1, 16, 256):
                eps, sps = group_commit(work, batch, fsync, args.seconds)
                mbs = eps * PAYLOAD / 1e6
                ratio = f"{eps / raw:7.2f}" if fsync == "always" else "    cpu"
                print(f"{batch:>5} {fsync:>6} {eps:11.0f} {sps:9.0f} {mbs:7.2f} {ratio}")

if __name__ == "__main__":
    main()
