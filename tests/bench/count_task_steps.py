"""What one client's write costs the nodes' event loops: trio task steps per c1 SET, per
task, who woke each task, and one write's chain across the three nodes.

Run: .venv/bin/python tests/bench/count_task_steps.py [--baseline main] [--rounds 2]
         [--requests 2000] [--trace-ms 4]

Starts a 3-node cluster of this tree (and one of ``--baseline``, if given; fsync always)
with ``tests/bench/steptrace`` loaded into every node (a trio instrument, see its
docstring), and round by round runs ``redis-benchmark -c 1`` SET on the leader. Per SET,
less what the idle cluster does in the same time (ticks, heartbeats), for the leader and a
follower: task steps (each one a pass of a task through the scheduler), scheduler passes
and the passes that blocked in ``epoll_wait``; per task, its steps and who woke it. Then
the last ``--trace-ms`` of the last round's run on this tree as one timeline of the three
nodes (``time.monotonic_ns`` is one clock for every process): which task ran when, and
which made which runnable. The instrument slows the nodes; its counts follow the code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

from common import (
    BaselineCluster,
    export_tree,
    load_line,
    raft_cluster,
    redis_benchmark,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster

HERE = Path(__file__).resolve().parent
IDLE_SECONDS = 2.0


def short(name: str) -> str:
    """A task's name without its package: ``ClientServer._reader``."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else name


def dump(ctl: Path, word: str, pids: dict[str, int], trace: bool = False
         ) -> dict[str, dict]:
    """Ask every traced process for its counts (and trace); wait for them."""
    ctl.write_text(f"{word} trace\n" if trace else f"{word}\n")
    got: dict[str, dict] = {}
    deadline = time.monotonic() + 10
    while len(got) < len(pids) and time.monotonic() < deadline:
        for role, pid in pids.items():
            path = ctl.parent / f"{pid}.{word}.counts"
            if role not in got and path.exists():
                with contextlib.suppress(ValueError):
                    got[role] = json.loads(path.read_text())
        time.sleep(0.02)  # polling another process's file: no event to wait on
    if trace:
        time.sleep(0.3)  # (the trace is written after the counts)
    return got


def diff(after: dict, before: dict, scale: float = 1.0) -> dict[str, float]:
    out: dict[str, float] = {"passes": after["passes"] - before["passes"],
                             "blocking": after["blocking"] - before["blocking"]}
    for kind in ("steps", "wakes"):
        for k, v in after[kind].items():
            out[f"{kind[0]}:{k}"] = v - before[kind].get(k, 0)
    return {k: v * scale for k, v in out.items()}


def one_round(cluster: LocalCluster, ctl: Path, tag: str, requests: int, trace: bool
              ) -> tuple[dict[str, dict[str, float]], tuple[int, int] | None]:
    leader, followers = roles(cluster)
    node_of = {"leader": leader, "follower": followers[0], "follower2": followers[1]}
    pids = {role: cluster.nodes[n].proc.pid for role, n in node_of.items()}
    port = cluster.client_addr(leader)[1]
    a = dump(ctl, f"{tag}a", pids)
    time.sleep(IDLE_SECONDS)
    b = dump(ctl, f"{tag}b", pids)
    started = time.monotonic_ns()
    run = redis_benchmark(port, "set", requests, 1)
    ended = time.monotonic_ns()
    c = dump(ctl, f"{tag}c", pids, trace)
    if run.returncode or "SET" not in run.rows:
        print(f"  redis-benchmark failed: {'; '.join(run.alerts[:2])}", flush=True)
        return {}, None
    result = {}
    for role in pids:
        if role not in a or role not in b or role not in c:
            continue
        idle = diff(b[role], a[role], (c[role]["at_ns"] - b[role]["at_ns"])
                    / (b[role]["at_ns"] - a[role]["at_ns"]))
        busy = diff(c[role], b[role])
        result[role] = {k: (v - idle.get(k, 0.0)) / requests for k, v in busy.items()}
    print(f"  ({tag}: {run.rows['SET'].rps:.0f} SET/s under the instrument)", flush=True)
    return result, ((started, ended) if trace else None)


def show_trace(ctl: Path, cluster: LocalCluster, tag: str, window: tuple[int, int],
               ms: float) -> None:
    leader, followers = roles(cluster)
    label = {cluster.nodes[leader].proc.pid: "L",
             cluster.nodes[followers[0]].proc.pid: "F1",
             cluster.nodes[followers[1]].proc.pid: "F2"}
    end = window[1] - 30_000_000  # (redis-benchmark closing its connections comes after)
    start = end - int(ms * 1e6)
    events = []
    for pid, who in label.items():
        path = ctl.parent / f"{pid}.{tag}c.trace"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            t, kind, *rest = line.split(" ")
            if start <= int(t) <= end:
                events.append((int(t), who, kind, *rest))
    events.sort()
    print(f"\ntimeline, {ms} ms before the end of the last run (us from its start; "
          "S step, R made runnable by, W epoll_wait blocks, w returns):")
    open_at: dict[tuple[str, str], int] = {}
    for t, who, kind, a, b in events:
        us = (t - start) / 1000
        if kind == "S":
            open_at[(who, a)] = t
            continue
        if kind == "E":
            began = open_at.pop((who, a), t)
            print(f"{(began - start) / 1000:9.1f} {who:<3} step {short(a)} "
                  f"({(t - began) / 1000:.1f} us)")
        elif kind == "R":
            print(f"{us:9.1f} {who:<3}   runnable {short(a)} <- {short(b)}")
        elif kind == "W":
            print(f"{us:9.1f} {who:<3} wait")
        elif kind == "w":
            print(f"{us:9.1f} {who:<3} woke")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=None, metavar="REF")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--trace-ms", type=float, default=4.0)
    ap.add_argument("--top", type=int, default=12, help="tasks and wake edges shown")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    names = ["this"] + ([f"base@{args.baseline}"] if args.baseline else [])
    results: dict[str, list[dict[str, dict[str, float]]]] = {n: [] for n in names}
    print(load_line(), flush=True)
    with scratch_dir(args.dir, "bench-steps-") as work, contextlib.ExitStack() as stack:
        ctl = work / "trace" / "ctl"
        ctl.parent.mkdir()
        os.environ["RAFTKV_STEPTRACE"] = str(ctl.parent)
        os.environ["PYTHONPATH"] = ":".join(
            filter(None, [os.environ.get("PYTHONPATH", ""), str(HERE / "steptrace")]))
        clusters: dict[str, LocalCluster] = {
            names[0]: stack.enter_context(raft_cluster(work / "this", fsync="always"))}
        if args.baseline:
            base = BaselineCluster(work / "base", export_tree(args.baseline, work / "src"),
                                   nodes=3, fsync="always")
            stack.callback(base.close)
            base.start()
            base.wait_for_leader(timeout=30)
            clusters[names[1]] = base
        window = None
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                last = rnd == args.rounds - 1 and name == "this"
                tag = f"r{rnd}{name[:4]}"
                res, got = one_round(clusters[name], ctl, tag, args.requests, last)
                results[name].append(res)
                if got is not None:
                    window = (tag, got)
        for role in ("leader", "follower"):
            print(f"\n{role}, per c1 SET (medians of {args.rounds} rounds; {load_line()}):")
            keys = sorted({k for rs in results.values() for r in rs for k in r.get(role, {})})
            meds = {n: {k: statistics.median([r[role].get(k, 0.0) for r in results[n]
                                              if role in r] or [0.0]) for k in keys}
                    for n in names}
            total = {n: sum(v for k, v in meds[n].items() if k.startswith("s:")) for n in names}
            print(f"  {'':<60}" + "".join(f"{n:>14}" for n in names))
            print(f"  {'task steps, all':<60}" + "".join(f"{total[n]:>14.2f}" for n in names))
            for k in ("passes", "blocking"):
                print(f"  {'scheduler ' + k:<60}" + "".join(f"{meds[n][k]:>14.2f}"
                                                            for n in names))
            for prefix, what in (("s:", "steps"), ("w:", "woken")):
                ranked = sorted((k for k in keys if k.startswith(prefix)),
                                key=lambda k: -max(abs(meds[n][k]) for n in names))
                for k in ranked[:args.top]:
                    if max(abs(meds[n][k]) for n in names) < 0.05:
                        break
                    shown = " <- ".join(short(p) for p in k[2:].split(" <- "))
                    print(f"  {what + ' ' + shown:<60.60}" + "".join(
                        f"{meds[n][k]:>14.2f}" for n in names))
        if window is not None:
            show_trace(ctl, clusters["this"], window[0], window[1], args.trace_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
