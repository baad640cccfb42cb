"""Peak memory to decode a 16 MiB peer frame and a snapshot's state (issue 12: "snapshot
install without holding file and decoded state twice"), with tracemalloc, per input byte.

Run: .venv/bin/python tests/bench/bench_decode_memory.py [--mib 16] [--baseline REF]

Frames: an AppendEntries of tiny entries (1-byte values), of small ones (32 bytes) and one
of a single big entry,
decoded by ``wire.record.decode``. Each case runs in a fresh child process per tree; the
figure is tracemalloc's peak during the decode over the input's size (the input itself
excluded), next to the decoded value's own size (the peak at best).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import export_tree, load_line

CHILD = r"""
import gc, json, sys, tracemalloc
from wire.raft import AppendEntries, Entry
from wire.record import decode, encode

case, mib = sys.argv[1], int(sys.argv[2])
size = mib << 20
if case in ("small", "tiny"):
    value = b"v" * 32 if case == "small" else b"v"
    n = size // (48 if case == "small" else 12)
    msg = AppendEntries(1, 1, 2, 10, 1, tuple(Entry(1, 11 + i, 0, value) for i in range(n)), 10)
else:
    msg = AppendEntries(1, 1, 2, 10, 1, (Entry(1, 11, 0, b"x" * (size - 64)),), 10)
frame = encode(msg)
del msg
gc.collect()
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
out = decode(frame)
kept = tracemalloc.get_traced_memory()[0] - base
peak = tracemalloc.get_traced_memory()[1] - base
tracemalloc.stop()
print(json.dumps({"bytes": len(frame), "peak": peak, "kept": kept}))
"""


def child(src: Path, case: str, mib: int) -> dict[str, int]:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-P", "-c", CHILD, case, str(mib)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--baseline", action="append", default=[], metavar="REF")
    args = ap.parse_args()
    print(load_line())
    here = Path(__file__).resolve().parents[2]
    with contextlib.ExitStack() as stack:
        trees = [("this tree", here)]
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dmem-")))
        for n, ref in enumerate(args.baseline):
            trees.append((ref, export_tree(ref, tmp / f"src{n}")))
        for case in ("tiny", "small", "big"):
            for name, src in trees:
                r = child(src, case, args.mib)
                print(f"[{name}] AppendEntries of {case} entries, {r['bytes']:,} B: peak "
                      f"{r['peak'] / r['bytes']:.2f} B per input byte, decoded value "
                      f"{r['kept'] / r['bytes']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
