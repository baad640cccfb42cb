"""The apply CPU of a large MSET, with the change feed recording every key (issue 12's
loop lag, issue 18's feed): ``KVStateMachine.apply`` of one ``MSET`` entry of ``--keys``
keys, timed with ``time.process_time`` in a fresh process per tree.

Run: .venv/bin/python tests/bench/bench_mset_apply.py [--keys 100000] [--rounds 5]
                                                      [--runs 4] [--baseline REF]...

Each run is a child process: a state machine applies ``--rounds`` MSETs of fresh keys
(the state grows, the feed's tail holds them all: ``append``), then ``--rounds`` more on a
machine whose feed keeps about one MSET's bytes (each MSET pushes the previous one out of
the tail: ``trim`` too), then on one whose SCAN index is built (a SCAN before each MSET:
``scanned``, which took the key-by-key path until harden7). The child prints each apply's
CPU seconds. ``--baseline REF`` runs
the same child on git ref REF's raftkv/ and wire/ too, alternating (A B B A ...) so both
see the same machine load, and prints the medians side by side and their ratio.
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
import time
from pathlib import Path

from common import export_tree, load_line

CHILD = r"""
import json, sys, time
from raftkv.kv import KVStateMachine, encode_entry
try:
    from raftkv.kv.feed import ChangeFeed
except ImportError:  # a tree from before the feed: both phases without one
    ChangeFeed = None

keys, rounds = int(sys.argv[1]), int(sys.argv[2])
T0 = 1_700_000_000_000


def mset(tag):
    args = [b"MSET"]
    for i in range(keys):
        args += [b"k:%s:%07d" % (tag, i), b"v%d" % (i % 10)]
    return encode_entry(args, T0)


out = {}
for name, feed in (("append", ChangeFeed and ChangeFeed()),
                   ("trim", ChangeFeed and ChangeFeed(retention_bytes=keys * 120)),
                   ("scanned", ChangeFeed and ChangeFeed(retention_bytes=keys * 120))):
    kv = KVStateMachine(feed=feed) if feed is not None else KVStateMachine()
    times = []
    for r in range(rounds):
        if name == "scanned":  # a SCAN (re)builds SCAN's index before each MSET
            kv.read([b"SCAN", b"0"])
        entry = mset(b"%s%d" % (name.encode(), r))
        began = time.process_time()
        kv.apply(entry, index=r + 1) if feed is not None else kv.apply(entry)
        times.append(time.process_time() - began)
    assert kv.read([b"DBSIZE"]) == keys * rounds
    out[name] = times
print(json.dumps(out))
"""


def child(src: Path, keys: int, rounds: int) -> dict[str, list[float]]:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-P", "-c", CHILD, str(keys), str(rounds)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=4, help="child processes per tree")
    ap.add_argument("--baseline", action="append", default=[], metavar="REF",
                    help="also time git ref REF (may be given more than once)")
    args = ap.parse_args()
    print(load_line())
    here = Path(__file__).resolve().parents[2]
    with contextlib.ExitStack() as stack:
        trees = [("this tree", here)]
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mset-")))
        for n, ref in enumerate(args.baseline):
            trees.append((ref, export_tree(ref, tmp / f"src{n}")))
        times: dict[str, dict[str, list[float]]] = {name: {} for name, _ in trees}
        for run in range(args.runs):
            for name, src in trees if run % 2 == 0 else trees[::-1]:
                began = time.perf_counter()
                for phase, values in child(src, args.keys, args.rounds).items():
                    times[name].setdefault(phase, []).extend(values)
                print(f"  run {run + 1} [{name}] done in {time.perf_counter() - began:.1f} s",
                      flush=True)
        medians = {name: {phase: statistics.median(v) for phase, v in phases.items()}
                   for name, phases in times.items()}
        for name, phases in medians.items():
            print(f"[{name}] apply CPU of one {args.keys:,}-key MSET (median of "
                  f"{args.runs * args.rounds}): " + ", ".join(
                      f"{phase} {seconds * 1000:.1f} ms" for phase, seconds in phases.items()))
        this = medians["this tree"]
        for ref in args.baseline:
            base = medians[ref]
            print(f"this tree / {ref}: " + ", ".join(
                f"{phase} {this[phase] / base[phase]:.2f}" for phase in this))
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
