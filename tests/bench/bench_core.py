"""Throughput of the consensus core alone: 3 in-process nodes, no faults, no I/O.

Prints committed entries per second of CPU (``time.process_time``). Each round the leader
takes ``--batch`` proposals of 100 bytes, then every node handles its Ready (in-memory
storage) and the messages of that round are delivered, so AppendEntries stay pipelined.

    python tests/bench/bench_core.py [--entries N] [--batch B]
"""

from __future__ import annotations

import argparse
import random
import time

from raftkv.raft import MemoryStorage, RaftConfig, RaftCore, Role
from wire.raft import NORMAL, ClusterConfig, Member


def run(entries: int, batch: int, size: int = 100) -> tuple[int, float]:
    ids = [1, 2, 3]
    conf = ClusterConfig(tuple(Member(i, f"n{i}") for i in ids))
    storages = {i: MemoryStorage(conf) for i in ids}
    nodes = {i: RaftCore(i, storages[i], RaftConfig(), random.Random(i)) for i in ids}
    queue: list = []
    applied = 0

    def handle_all() -> None:
        nonlocal applied
        for i in ids:
            node, st = nodes[i], storages[i]
            while node.has_ready():
                rd = node.ready()
                st.append(rd.entries)
                if rd.hard_state is not None:
                    st.set_hard_state(rd.hard_state)
                st.sync()
                queue.extend(rd.messages)
                if i == 1:
                    applied += sum(e.kind == NORMAL for e in rd.committed_entries)
                node.advance(rd)

    nodes[1].campaign()
    while nodes[1].role is not Role.LEADER or queue:
        handle_all()
        msgs, queue[:] = list(queue), []
        for m in msgs:
            nodes[m.dst].step(m)
    handle_all()
    start_applied = applied
    payload = b"x" * size
    proposed = 0
    t0 = time.process_time()
    while applied - start_applied < entries:
        for _ in range(min(batch, entries - proposed)):
            nodes[1].propose(payload)
            proposed += 1
        handle_all()
        msgs, queue[:] = list(queue), []
        for m in msgs:
            nodes[m.dst].step(m)
    return applied - start_applied, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    n, cpu = run(args.entries, args.batch)
    print(
        f"core: {n} entries of 100 B committed on 3 nodes in {cpu:.2f} s CPU: "
        f"{n / cpu:,.0f} entries/s (batch {args.batch})"
    )


if __name__ == "__main__":
    main()
