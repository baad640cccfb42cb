"""Peak RSS of one node under ``redis-benchmark -P 16`` SETs, with and without write runs
(attack24). Not a test: ``python tests/attack/mem_write_runs.py WRITE_RUN
[WATCH_RETENTION_ENTRIES]``.

Entry-counted bounds (``--snapshot-entries``: the in-memory Raft log; and
``--watch-retention-entries``: the change feed) hold up to a run's length (16 here) times
the commands they held before."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from chaos.cluster import free_ports
from raftkv.testing import one_node_leader


def _rss_mib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


async def main(write_run: int, retention: int | None) -> None:
    extra: dict[str, Any] = {} if retention is None else {"watch_retention_entries": retention}
    with tempfile.TemporaryDirectory() as tmp:
        async with one_node_leader(Path(tmp), *free_ports(2), write_run=write_run,
                                   fsync="never", snapshot_entries=50_000, **extra) as node:
            port = str(node.client_port)
            base = peak = _rss_mib()
            done = trio.Event()

            def bench() -> None:
                subprocess.run(["redis-benchmark", "-p", port, "-P", "16", "-c", "4", "-n",
                                "800000", "-t", "set", "-r", "100000", "-d", "16", "-q"],
                               capture_output=True, check=False)

            async def run_bench() -> None:
                await trio.to_thread.run_sync(bench)
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_bench)
                while not done.is_set():
                    with trio.move_on_after(0.2):  # (sampling, not synchronisation)
                        await done.wait()
                    peak = max(peak, _rss_mib())
            print(f"write_run {write_run}: {node.applied} entries applied; "
                  f"RSS {base} MiB at start, peak {peak} MiB")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
