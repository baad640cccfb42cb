"""How long a node's own snapshot holds its event loop: worker thread against forked child.

Run: .venv/bin/python tests/bench/bench_snapshot_stall.py [--keys 100000] [--rounds 4]

One process builds a state machine by applying SETs over ``--keys`` random keys (the change
feed fills to its 100k cap, as in issue 15's stability run), then snapshots it
alternately (A B B A ...) the way main did (``snapshot_state`` on the loop, then
``encode_snapshot`` in a worker thread) and the way the node does now (``SnapshotChild``:
the encoder in a forked child, the loop reading its pipe). Meanwhile a task sleeps 1 ms
in a loop: the longest gap between its wakes is how long a heartbeat could have waited.
Also reported: the loop's turns during the snapshot, the parent's CPU time (all its
threads; the child's is its own), and the wall time. Paired ratios are fork / thread per
round (the machine is shared: absolute figures swing with its load).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import trio
from common import load_line

from raftkv.kv import KVStateMachine, encode_snapshot
from raftkv.kv.codec import encode_entry
from raftkv.node.snapshot_child import SnapshotChild


def build(keys: int, writes: int) -> KVStateMachine:
    m = KVStateMachine()
    rng = random.Random(1)
    for i in range(writes):
        key = b"key:%012d" % rng.randrange(keys)
        m.apply(encode_entry([b"SET", key, b"xxx"], 1_700_000_000_000 + i), i + 1)
    return m


async def thread_way(m: KVStateMachine) -> int:
    state = m.snapshot_state()
    return len(await trio.to_thread.run_sync(encode_snapshot, state))


FORKS: list[float] = []  # how long each fork held the loop (ms)


async def fork_way(m: KVStateMachine) -> int:
    t0 = time.perf_counter()
    child = SnapshotChild(lambda: encode_snapshot(m.snapshot_state()))
    FORKS.append(1000 * (time.perf_counter() - t0))
    return sum(map(len, await child.stream_to(list)))


async def one(way, m: KVStateMachine) -> dict[str, float]:  # type: ignore[no-untyped-def]
    gaps: list[float] = []
    done = trio.Event()

    async def monitor() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await trio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor)
        await trio.sleep(0.05)
        gaps.clear()
        cpu0, t0 = time.process_time(), time.perf_counter()
        size = await way(m)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        done.set()
    return {"stall_ms": 1000 * max(gaps), "turns": len(gaps), "cpu_ms": 1000 * cpu,
            "wall_ms": 1000 * wall, "bytes": size}


async def main(keys: int, rounds: int) -> None:
    m = build(keys, keys * 3 // 2)
    print(f"{load_line()}; {len(m)} keys, feed {len(m.feed.state().changes)} changes")
    got: dict[str, list[dict[str, float]]] = {"thread": [], "fork": []}
    ways = {"thread": thread_way, "fork": fork_way}
    for r in range(rounds):
        order = ["thread", "fork"] if r % 2 == 0 else ["fork", "thread"]
        for name in order:
            got[name].append(await one(ways[name], m))
            f = got[name][-1]
            print(f"  round {r + 1} {name:6}: longest stall {f['stall_ms']:6.1f} ms, "
                  f"{f['turns']:4.0f} turns, parent CPU {f['cpu_ms']:6.1f} ms, "
                  f"wall {f['wall_ms']:6.1f} ms, {f['bytes']:.0f} bytes", flush=True)
    for field in ("stall_ms", "cpu_ms", "wall_ms"):
        ratios = [b[field] / a[field] for a, b in zip(got["thread"], got["fork"], strict=True)]
        print(f"{field}: thread median {statistics.median(x[field] for x in got['thread']):.1f}"
              f", fork median {statistics.median(x[field] for x in got['fork']):.1f}; "
              f"fork/thread per round median {statistics.median(ratios):.2f} "
              f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"fork() itself: {', '.join(f'{x:.1f}' for x in FORKS)} ms; RSS {rss_mb():.0f} MB")
    print(load_line())


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    trio.run(main, a.keys, a.rounds)
