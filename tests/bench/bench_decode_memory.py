"""Peak memory to decode a 16 MiB peer frame and a snapshot's state (issue 12: "snapshot
install without holding file and decoded state twice"), with tracemalloc, per input byte.

Run: .venv/bin/python tests/bench/bench_decode_memory.py [--mib 16] [--baseline REF]
[--cpu-rounds N]

Frames: an AppendEntries of tiny entries (1-byte values), of small ones (32 bytes), of mid
ones (256 KiB) and one of a single big entry,
decoded by ``wire.record.decode``. Each case runs in a fresh child process per tree; the
figure is tracemalloc's peak during the decode over the input's size (the input itself
excluded), next to the decoded value's own size (the peak at best).

With ``--cpu-rounds N`` (and a baseline), the CPU time of one decode (process time, no
tracemalloc; the median of several decodes in one child) is then measured per case in N
rounds, the trees alternating (A B B A ...), and the median of the per-round ratios this
tree / baseline is printed with their range.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import export_tree, load_line

CASES = ("tiny", "small", "mid", "big")

CHILD = r"""
import gc, json, statistics, sys, time, tracemalloc
from wire.raft import AppendEntries, Entry
from wire.record import decode, encode

case, mib, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = mib << 20
if case in ("small", "tiny", "mid"):
    value = {"small": b"v" * 32, "tiny": b"v", "mid": b"m" * (256 << 10)}[case]
    n = size // {"small": 48, "tiny": 12, "mid": (256 << 10) + 16}[case]
    msg = AppendEntries(1, 1, 2, 10, 1, tuple(Entry(1, 11 + i, 0, value) for i in range(n)), 10)
else:
    msg = AppendEntries(1, 1, 2, 10, 1, (Entry(1, 11, 0, b"x" * (size - 64)),), 10)
frame = encode(msg)
del msg
gc.collect()
if reps:
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        out = decode(frame)
        times.append(time.process_time() - t0)
        del out
    print(json.dumps({"bytes": len(frame), "cpu": statistics.median(times)}))
    raise SystemExit(0)
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
out = decode(frame)
kept = tracemalloc.get_traced_memory()[0] - base
peak = tracemalloc.get_traced_memory()[1] - base
tracemalloc.stop()
print(json.dumps({"bytes": len(frame), "peak": peak, "kept": kept}))
"""


def child(src: Path, case: str, mib: int, reps: int = 0) -> dict[str, int]:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-P", "-c", CHILD, case, str(mib), str(reps)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--baseline", action="append", default=[], metavar="REF")
    ap.add_argument("--cpu-rounds", type=int, default=0, metavar="N")
    args = ap.parse_args()
    print(load_line())
    here = Path(__file__).resolve().parents[2]
    with contextlib.ExitStack() as stack:
        trees = [("this tree", here)]
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dmem-")))
        for n, ref in enumerate(args.baseline):
            trees.append((ref, export_tree(ref, tmp / f"src{n}")))
        for case in CASES:
            for name, src in trees:
                r = child(src, case, args.mib)
                print(f"[{name}] AppendEntries of {case} entries, {r['bytes']:,} B: peak "
                      f"{r['peak'] / r['bytes']:.2f} B per input byte, decoded value "
                      f"{r['kept'] / r['bytes']:.2f}", flush=True)
        if args.cpu_rounds and len(trees) > 1:
            cpu_rounds(trees[:2], args.mib, args.cpu_rounds)
    return 0


def cpu_rounds(trees: list[tuple[str, Path]], mib: int, rounds: int) -> None:
    """CPU per decode, this tree against the first baseline, alternating A B B A."""
    (this, here), (base, there) = trees
    for case in CASES:
        reps = 3 if case == "tiny" else 15
        ratios, mine, theirs = [], [], []
        for i in range(rounds):
            order = [(this, here), (base, there)][:: 1 if i % 2 == 0 else -1]
            got = {name: child(src, case, mib, reps)["cpu"] for name, src in order}
            mine.append(got[this])
            theirs.append(got[base])
            ratios.append(got[this] / got[base])
        print(f"CPU per decode, {case}: [{this}] {statistics.median(mine) * 1e3:.1f} ms, "
              f"[{base}] {statistics.median(theirs) * 1e3:.1f} ms; ratio median "
              f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, "
              f"{rounds} rounds)", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
