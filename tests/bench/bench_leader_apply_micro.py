"""The leader's per-SET path without the network or the disk: CPU per SET of ``Node.submit``
on a fake leader core (it only appends) and ``Applier.apply`` of the proposed entries,
with the client port's Pub/Sub observing as ClientServer wires it; this tree against a
git ref, in alternating child processes.

Run: .venv/bin/python tests/bench/bench_leader_apply_micro.py --baseline main [--rounds 4]
         [--inflight 800]

Each child proposes ``--inflight`` SETs, then applies them in one batch (as a pipelined
leader does), ten times per run, GC on; it prints the lowest process CPU per SET of seven
runs. Covers the checks, the proposal's encoding, the write tracking, the apply and the
observers; not the client port's parse and replies (``bench_pipeline_inproc.py``), the
WAL or replication. Less noisy than those on a shared machine: small changes (0.1-0.5 us
a SET) show here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import trio
from common import export_tree, load_line

RUNS = 7


def child(inflight: int) -> float:
    from raftkv.node.driver import CoreDriver
    from raftkv.raft import Role
    from raftkv.server.pubsub import PubSub
    from raftkv.testing import idle_node
    from wire.raft import NORMAL, Entry

    class Core:
        role = Role.LEADER

        def __init__(self) -> None:
            self.log: list[Entry] = []
            self.last = 0

        def propose(self, data: bytes) -> tuple[int, int]:
            self.last += 1
            self.log.append(Entry(1, self.last, NORMAL, data))
            return self.last, 1

    node = idle_node()
    core = node.core = Core()  # type: ignore[assignment]
    node.membership = SimpleNamespace(removed=lambda: False)  # type: ignore[assignment]
    node.driver = CoreDriver(core, *[None] * 11, on_forward_request=print,  # type: ignore[arg-type]
                             unpark=print)
    node.driver._in_ready = True
    try:  # (as ClientServer wires it; a tree before Applier.listen: the plain observer)
        pubsub = PubSub(on_listening=node.applier.listen)  # type: ignore[call-arg]
        node.applier.observe(pubsub.applied, listening=False)  # type: ignore[call-arg]
    except (TypeError, AttributeError):
        pubsub = PubSub()
        node.applier.observe(pubsub.applied)
    commands = [[b"SET", b"key:%07d" % i, b"vvv"] for i in range(inflight)]

    def batch() -> None:
        core.log = []
        for args in commands:
            node.submit(args)
        node.applier.apply(core.log)
        node.requests.writes.clear()

    async def measure() -> float:
        batch()
        best = []
        for _ in range(RUNS):
            started = time.process_time_ns()
            for _ in range(10):
                batch()
            best.append((time.process_time_ns() - started) / (10 * inflight))
        return min(best)

    return trio.run(measure)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=800)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(child(args.inflight))
        return 0
    print(load_line())
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-leader-ref-") as tmp:
        tree = export_tree(args.baseline, Path(tmp))
        for rnd in range(args.rounds):
            got = {}
            for which in (("this", "base") if rnd % 2 == 0 else ("base", "this")):
                env = dict(os.environ)
                if which == "base":
                    env["PYTHONPATH"] = str(tree)
                out = subprocess.run([sys.executable, __file__, "--child", "--inflight",
                                      str(args.inflight)], env=env, check=True,
                                     capture_output=True, text=True).stdout
                got[which] = float(out.strip().splitlines()[-1])
            ratios.append(got["this"] / got["base"])
            print(f"round {rnd + 1}: this {got['this']:6.0f} ns/SET, {args.baseline} "
                  f"{got['base']:6.0f} ns/SET, ratio {ratios[-1]:.3f}", flush=True)
    print(f"median ratio over {args.rounds} rounds: {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f} .. {max(ratios):.3f}); {load_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
