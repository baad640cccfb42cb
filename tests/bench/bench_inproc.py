"""Three nodes in one process: trio task steps, scheduler waits and CPU per SET, this tree
against a git ref, interleaved.

Run: .venv/bin/python tests/bench/bench_inproc.py --baseline main [--rounds 4]
         [--requests 1000] [--clients 1] [--dir /dev/shm]

Each run starts three ``Node``s in one trio loop (real peer transport over loopback, real
WAL; no client port: the commands go to the leader's ``Node.submit``), warms up, and times
``--requests`` SETs from ``--clients`` concurrent submitters. It prints per SET: the
process's CPU (every thread, less the idle cluster's own rate measured for 1 s before),
the trio task steps and the scheduler's waits for I/O (a trio Instrument; the waits are
the scheduler passes that found nothing to run). The steps and waits are counts: they
follow the code, not the machine's load, which moves the CPU figure by +-10% on the
shared machine (README "Performance"). Each round runs this tree and the baseline (its
raftkv/ and wire/ exported, run with PYTHONPATH) in the order A B, then B A.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import export_tree, load_line, scratch_dir

PORT_BASE = 7500  # + 20 per run: the nodes' peer and client ports


def run_cluster(port: int, requests: int, clients: int, data: str) -> dict[str, float]:
    """One timed run in this process (the code on sys.path); figures per SET."""
    import trio

    from raftkv.node.node import Node
    from raftkv.node.settings import NodeSettings
    from raftkv.raft import Role

    class Count(trio.abc.Instrument):
        def __init__(self) -> None:
            self.steps = self.waits = 0

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            self.steps += 1

        def before_io_wait(self, timeout: float) -> None:
            self.waits += 1

    result: dict[str, float] = {}

    async def no_clients(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                         ) -> None:
        task_status.started(0)
        await trio.sleep_forever()

    async def main() -> None:
        cluster = {i: f"127.0.0.1:{port + i}" for i in (1, 2, 3)}
        nodes = []
        async with trio.open_nursery() as nursery:
            for i in (1, 2, 3):
                settings = NodeSettings(node_id=i, client_addr=f"127.0.0.1:{port + 10 + i}",
                                        peer_addr=cluster[i], cluster=cluster,
                                        data_dir=os.path.join(data, str(i)),
                                        cluster_id="bench-inproc")
                node = Node(settings, admin=lambda args: None, rng=random.Random(i))
                nodes.append(await nursery.start(node.run, no_clients))
            with trio.fail_after(30):
                while not any(n.core.role is Role.LEADER for n in nodes):
                    await nodes[0].next_tick()
            leader = next(n for n in nodes if n.core.role is Role.LEADER)

            async def submitter(c: int, count: int) -> None:
                for k in range(count):
                    await leader.submit([b"SET", b"key:%d:%d" % (c, k), b"xxx"]).wait()

            await submitter(-1, 300)  # warm up (the sync thread measures the disk first)
            started, cpu = time.perf_counter(), time.process_time()
            await trio.sleep(1.0)
            idle = (time.process_time() - cpu) / (time.perf_counter() - started)
            count = Count()
            trio.lowlevel.add_instrument(count)
            started, cpu = time.perf_counter(), time.process_time()
            async with trio.open_nursery() as load:
                for c in range(clients):
                    load.start_soon(submitter, c, requests // clients)
            wall = time.perf_counter() - started
            used = time.process_time() - cpu - idle * wall
            trio.lowlevel.remove_instrument(count)
            n = requests // clients * clients
            result.update(cpu_us=used / n * 1e6, steps=count.steps / n,
                          waits=count.waits / n, wall_us=wall / n * 1e6)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return result


def one_run(src: Path | None, port: int, args: argparse.Namespace, work: Path
            ) -> dict[str, float]:
    """A run in a fresh interpreter: this tree (``src`` None) or an exported one."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    data = tempfile.mkdtemp(dir=work)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(port), "--requests", str(args.requests),
             "--clients", str(args.clients), "--dir", data],
            env=env, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        print(f"  failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
        return {}
    return {k: float(v) for k, v in (kv.split("=") for kv in lines[-1].split())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        r = run_cluster(args.child, args.requests, args.clients, args.dir)
        print(" ".join(f"{k}={v:.4f}" for k, v in r.items()))
        return 0
    print(load_line())
    names = ["this", f"base@{args.baseline}"]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with scratch_dir(args.dir, "bench-inproc-") as work:
        src = {names[0]: None, names[1]: export_tree(args.baseline, work / "base")}
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                res = one_run(src[name], PORT_BASE + 20 * (rnd % 4), args, work)
                results[name].append(res)
                shown = (f"cpu {res['cpu_us']:7.1f} us/SET  task steps {res['steps']:6.2f}  "
                         f"io waits {res['waits']:5.2f}  wall {res['wall_us']:7.0f} us"
                         if res else "(failed)")
                print(f"round {rnd + 1} {name:<12} {shown}", flush=True)
    print(f"\nmedians over {args.rounds} rounds, c{args.clients} ({load_line()}):")
    meds = {}
    for name in names:
        got = [r for r in results[name] if r]
        if got:
            meds[name] = {k: statistics.median(r[k] for r in got) for k in got[0]}
            m = meds[name]
            print(f"  {name:<12} cpu {m['cpu_us']:7.1f} us/SET  task steps {m['steps']:6.2f}  "
                  f"io waits {m['waits']:5.2f}")
    pairs = [a["cpu_us"] / b["cpu_us"] for a, b in zip(*results.values(), strict=True)
             if a and b]
    if pairs:
        print(f"  cpu/SET this/base per round: {' '.join(f'{p:.2f}' for p in pairs)}; "
              f"median x{statistics.median(pairs):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
