"""Where a ``RAFT ONCE`` INCR costs more than a plain one: py-spy of all three nodes at c50,
with and without sessions, per function, in samples per INCR.

Run (py-spy in the venv: ``.venv/bin/pip install py-spy``; ptrace allowed):
  .venv/bin/python tests/bench/profile_sessions.py [--clients 50] [--seconds 8] [--rounds 2]
      [--top 40] [--out DIR]

One 3-node cluster (fsync always, bench_sessions.py's). Each round runs the two kinds
(A B, then B A) while ``py-spy record`` (CPU only, no ``--idle``) samples every node. For
each role (leader, followers) and kind it sums, per function, the samples whose stack holds
it (inclusive) and those where it is the leaf (self), divided by the INCRs answered while
sampling: us of CPU per INCR at the sampling rate. Prints the functions whose cost differs
most between the kinds, and each role's total.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import trio
from bench_sessions import one_round, slow_election_cluster
from common import load_line, roles, scratch_dir

RATE = 250  # samples per second per thread
FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]*):\d+\)$")


def _py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return exe


def _name(frame: str) -> str:
    """``function (path:line)`` as ``module.py:function`` (lines dropped: one per function)."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{Path(match['file']).name}:{match['fn']}"


def parse(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """(inclusive samples by function, self samples by function, all samples) of a raw
    py-spy file."""
    incl, own = collections.Counter[str](), collections.Counter[str]()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_name(f) for f in stack.split(";")[1:]]  # (the first is the thread)
        for fn in set(frames):
            incl[fn] += n
        if frames:
            own[frames[-1]] += n
    return incl, own, total


def _drive(result: list[tuple[int, float, list[str]]], addr: tuple[str, int],
           sessions: bool, clients: int, seconds: float) -> None:
    result.append(trio.run(one_round, addr, sessions, clients, seconds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", default=None, help="keep the raw py-spy files here")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    print(load_line())
    # (kind, role) -> counters summed over rounds; INCRs sampled per kind
    incl: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    own: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    incrs: collections.Counter[str] = collections.Counter()
    with scratch_dir(args.dir, "bench-profile-sessions-") as work, \
            slow_election_cluster(work / "c") as cluster:
        out = Path(args.out) if args.out else work / "spy"
        out.mkdir(parents=True, exist_ok=True)
        for r in range(args.rounds):
            for kind in (("without", "with") if r % 2 == 0 else ("with", "without")):
                leader, followers = roles(cluster)
                result: list[tuple[int, float, list[str]]] = []
                # The clients run 2 s longer than the sampling on either side.
                runner = threading.Thread(target=_drive, args=(
                    result, cluster.client_addr(leader), kind == "with", args.clients,
                    args.seconds + 4))
                runner.start()
                threading.Event().wait(2.0)
                procs = {}
                for node in (leader, *followers):
                    proc = cluster.nodes[node].proc
                    assert proc is not None
                    role = "leader" if node == leader else "followers"
                    path = out / f"r{r}-{kind}-{node}.txt"
                    procs[(role, path)] = subprocess.Popen(
                        [_py_spy(), "record", "--pid", str(proc.pid), "--duration",
                         str(int(args.seconds)), "--rate", str(RATE), "--format", "raw",
                         "--output", str(path), "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for p in procs.values():
                    p.wait(timeout=args.seconds + 60)
                runner.join()
                done, took, errors = result[0]
                sampled = done * int(args.seconds) / took
                incrs[kind] += int(sampled)
                print(f"  round {r} {kind:>7}: {done / took:7.0f} INCR/s"
                      + (f" errors: {errors[0][:60]}" if errors else ""))
                for (role, path) in procs:
                    if not path.exists():
                        print(f"  no profile: {path}")
                        continue
                    i, o, t = parse(path)
                    incl[(kind, role)] += i
                    own[(kind, role)] += o
                    totals[(kind, role)] += t
    us = 1e6 / RATE  # one sample, in us

    def per(kind: str, n: float) -> float:
        return n * us / max(incrs[kind], 1)

    print(load_line())
    for role in ("leader", "followers"):
        a, b = totals[("without", role)], totals[("with", role)]
        print(f"\n{role}: samples per INCR (us at {RATE}/s): without {per('without', a):.1f}, "
              f"with {per('with', b):.1f} ({per('with', b) - per('without', a):+.1f})")
        for label, table in (("inclusive", incl), ("self", own)):
            wo, w = table[("without", role)], table[("with", role)]
            diffs = sorted(((per("with", w[f]) - per("without", wo[f]), f)
                            for f in set(wo) | set(w)), key=lambda d: -abs(d[0]))
            print(f"  {label}: us/INCR without -> with (diff), the {args.top} largest diffs")
            for d, f in diffs[:args.top]:
                print(f"    {per('without', wo[f]):7.1f} -> {per('with', w[f]):7.1f} "
                      f"({d:+6.1f})  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
