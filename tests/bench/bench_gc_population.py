"""What a node with a large state makes the garbage collector walk, and what a full pass costs.

Builds, in one process, what a busy node holds: a DiskStorage log of ``--entries`` SET
entries (the Raft log kept in memory), a state machine that applied them (``--entries``
keys, the change feed's tail), ``--sessions`` client sessions each with a few recorded
replies, then prints the GC-tracked objects by type and the time of full collections
(``gc.collect()``), before and after ``gc.freeze()`` as the node runs it.

    python tests/bench/bench_gc_population.py --entries 100000 --sessions 16000
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections import Counter

from raftkv.kv.codec import encode_entry
from raftkv.kv.machine import KVStateMachine
from raftkv.storage.disk_storage import open_storage
from wire.raft import NORMAL, ClusterConfig, Entry, Member


def full_ms(repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def census(top: int = 12) -> tuple[int, list[tuple[str, int]]]:
    objs = gc.get_objects()
    counts = Counter(type(o).__name__ for o in objs)
    return len(objs), counts.most_common(top)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--sessions", type=int, default=16_000)
    args = ap.parse_args()
    gc.collect()
    base, _ = census()
    with tempfile.TemporaryDirectory() as tmp:
        config = ClusterConfig(members=(Member(1, "127.0.0.1:1"),))
        storage = open_storage(tmp, "c", 1, config, fsync="never")
        machine = KVStateMachine()
        entries = []
        index = storage.last_index()
        seq = 0
        for s in range(args.sessions):
            index += 1
            entries.append(Entry(1, index, NORMAL,
                                 encode_entry([b"session_open", b"300000", b"%d" % (s + 1)], 1)))
        for i in range(args.entries):
            index += 1
            if args.sessions and i < args.sessions * 4:
                sid = i % args.sessions + 1
                seq = i // args.sessions + 1
                cmd = [b"once", b"%d" % sid, b"%d" % seq, b"SET", b"k:%07d" % i, b"v" * 16]
            else:
                cmd = [b"SET", b"k:%07d" % i, b"v" * 16]
            entries.append(Entry(1, index, NORMAL, encode_entry(cmd, 2)))
        for start in range(0, len(entries), 5000):
            batch = entries[start:start + 5000]
            storage.append(batch)
            storage.sync()
            for e in batch:
                machine.apply(e.data, e.index)
        del entries, batch
        gc.collect()
        total, top = census()
        print(f"keys={len(machine)} log={storage.last_index() - storage.first_index() + 1} "
              f"sessions={args.sessions}")
        print(f"tracked objects: {total} ({total - base} above the empty interpreter's {base})")
        for name, n in top:
            print(f"  {name:24s} {n}")
        big = [(type(o).__name__, len(o)) for o in gc.get_objects()
               if isinstance(o, (dict, list, set)) and len(o) >= 1000]
        print(f"tracked containers of 1000+ items: {sorted(big, key=lambda b: -b[1])[:10]}")
        print(f"full collection: {full_ms():.1f} ms (best of 5)")
        gc.freeze()
        print(f"after gc.freeze(): {full_ms():.1f} ms, frozen {gc.get_freeze_count()}")
        gc.unfreeze()
        storage.close()


if __name__ == "__main__":
    main()
