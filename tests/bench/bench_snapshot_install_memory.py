"""Peak memory of installing a snapshot (issue 12: "snapshot install without holding file
and decoded state twice"): a restart loading its snapshot, a follower decoding a received
one, and ``raftkv restore`` of a backup, this tree against a baseline.

Run: .venv/bin/python tests/bench/bench_snapshot_install_memory.py [--keys 100000 ...]
[--baseline REF] [--rounds N]

The state: ``--keys`` keys of 100-byte values with their modification indexes, and a
change feed of the last min(keys, 100,000) writes (the default retention). One child
writes the data directory, the received file and the backup once; then each case runs in
a fresh child per tree, alternating (A B B A), and prints two figures: the child's peak
RSS growth during the install (ru_maxrss after, minus RSS before), and, in another child,
tracemalloc's peak beyond what the install kept (the decoded state), both against the
snapshot file's size.
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

PATHS = ("restart", "receive", "restore")

MAKE = r"""
import hashlib, os, sys
from raftkv.backup_file import BackupHeader, BackupWriter
from raftkv.kv import KVState, encode_snapshot
from raftkv.kv.changes import Change
from raftkv.kv.feed import FeedState
from raftkv.restore import config_of
from raftkv.storage import open_storage
from wire.raft import SnapshotMeta

out, n = sys.argv[1], int(sys.argv[2])
keys = [b"key:%012d" % i for i in range(n)]
value = b"v" * 100
tail = min(n, 100_000)
state = KVState(data=dict.fromkeys(keys, value), mods={k: i + 1 for i, k in enumerate(keys)},
                seq=n, feed=FeedState(None, [Change(n - tail + i + 1, 0, "set", keys[i], value,
                                                    None) for i in range(tail)]))
blob = encode_snapshot(state)
del state
config = config_of({1: "127.0.0.1:1"})
st = open_storage(os.path.join(out, "data"), "c", 1, config, fsync="never")
st.install_snapshot(SnapshotMeta(n, 1, config), blob)
st.close()
with open(os.path.join(out, "received"), "wb") as f:
    f.write(blob)
w = BackupWriter(os.path.join(out, "backup"), BackupHeader(
    "old", n, 1, n, len(blob), hashlib.sha256(blob).hexdigest(), "now", "bench"))
w.write(blob)
w.finish()
print(len(blob))
"""

CHILD = r"""
import gc, json, os, resource, shutil, sys, tracemalloc
from raftkv.kv import KVStateMachine
from raftkv.node.opening import load_snapshot_state
from raftkv.restore import config_of, restore
from raftkv.storage import open_storage
from wire.raft import SnapshotMeta

d, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
config = config_of({1: "127.0.0.1:1"})
work = os.path.join(d, "work-%d" % os.getpid())


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


if path == "restart":
    st = open_storage(os.path.join(d, "data"), "c", 1, config, fsync="never")
    kv = KVStateMachine()
    run = lambda: load_snapshot_state(st, kv)
elif path == "receive":
    # What the snapshot gate does with a received snapshot before its last chunk reaches
    # the core: the earlier chunks are in the writer's file, the last one in the message.
    size = os.path.getsize(os.path.join(d, "received"))
    st = open_storage(work, "c", 1, config, fsync="never")
    writer = st.snapshot_writer(SnapshotMeta(5, 1, config))
    with open(os.path.join(d, "received"), "rb") as f:
        while chunk := f.read(1 << 20):
            writer.write(writer.received, chunk)
    at = max(0, size - (1 << 20))
    with open(os.path.join(d, "received"), "rb") as f:
        f.seek(at)
        tail = f.read()
    try:
        from raftkv.node.snapshot_gate import ReceivedData
        from raftkv.kv import decode_snapshot_stream
        run = lambda: decode_snapshot_stream(ReceivedData(writer, at, tail))
    except ImportError:  # before streaming: the prefix read back whole, joined with the tail
        from raftkv.kv import decode_snapshot
        run = lambda: decode_snapshot(writer.read(at) + tail)
else:
    run = lambda: restore(os.path.join(d, "backup"), work, 1, {1: "127.0.0.1:1"}, "new")
gc.collect()
if mode == "rss":
    before = rss()
    out = run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    kept = rss() - before
else:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out = run()
    kept, peak = tracemalloc.get_traced_memory()
    kept, peak = kept - base, peak - base
    tracemalloc.stop()
shutil.rmtree(work, ignore_errors=True)
print(json.dumps({"peak": peak, "kept": kept}))
"""


def child(src: Path, code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-P", "-c", code, *args], env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, action="append", default=[])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--rounds", type=int, default=1, metavar="N")
    ap.add_argument("--paths", default=",".join(PATHS))
    args = ap.parse_args()
    print(load_line())
    here = Path(__file__).resolve().parents[2]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-smem-")))
        trees = [("this tree", here), (args.baseline, export_tree(args.baseline, tmp / "base"))]
        for keys in args.keys or [100_000]:
            d = tmp / f"k{keys}"
            d.mkdir()
            size = int(child(here, MAKE, str(d), str(keys)))
            print(f"{keys:,} keys: snapshot {size / 2**20:.1f} MiB", flush=True)
            for path in args.paths.split(","):
                for mode in ("rss", "tracemalloc"):
                    got: dict[str, list[dict[str, int]]] = {name: [] for name, _ in trees}
                    for i in range(args.rounds):
                        for name, src in trees[:: 1 if i % 2 == 0 else -1]:
                            got[name].append(json.loads(child(src, CHILD, str(d), path, mode)))
                    line = []
                    for name, _ in trees:
                        peak = statistics.median(r["peak"] for r in got[name])
                        kept = statistics.median(r["kept"] for r in got[name])
                        line.append(f"[{name}] peak {peak / 2**20:.0f} MiB ({peak / size:.2f}x"
                                    f" file), beyond kept {(peak - kept) / 2**20:.0f} MiB")
                    ratio = [a["peak"] / b["peak"] for a, b in zip(*got.values(), strict=True)]
                    print(f"  {path:8s} {mode:11s} " + "; ".join(line)
                          + f"; ratio {statistics.median(ratio):.2f} "
                            f"({min(ratio):.2f}-{max(ratio):.2f}, {args.rounds} rounds)",
                          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
