"""Pipelined SETs through the real client port in one process: CPU per SET, this tree
against a git ref, in alternating child processes.

Run: .venv/bin/python tests/bench/bench_pipeline_inproc.py --baseline main [--rounds 8]
         [--clients 50] [--pipeline 16] [--per-client 320]

Each child starts a 1-node leader (fsync never: no disk in the figure) and its client port,
and ``--clients`` connections over loopback in the same trio loop, each sending
``--pipeline`` SETs at once and reading their replies, ``--per-client`` SETs in all, five
times after a warm-up. It prints the process's CPU time per SET (the client side, prebuilt
bytes and a count of the replies, is a small constant share). What it covers: parse,
dispatch, proposal, WAL write, apply, the replies' encoding and send, the writer and the
reader tasks; not replication (``bench_write_path.py`` measures a real cluster, which the
shared machine's load moves far more than this). Rounds alternate A B, B A; the ratio per
round is this tree's median over the baseline's, and their median closes the output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio
from common import export_tree, load_line

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients
from wire.resp import encode_command

RUNS = 5  # measured runs per child, after one warm-up


async def _client(port: int, batch: bytes, replies: int, rounds: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    want = len(b"+OK\r\n") * replies
    for _ in range(rounds):
        await stream.send_all(batch)
        got = 0
        while got < want:
            got += len(await stream.receive_some(65536))
    await stream.aclose()


async def _measure(work: Path, clients: int, pipeline: int, per_client: int) -> list[float]:
    peer, port = free_ports(2)
    settings = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{port}",
                            peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                            data_dir=str(work), fsync="never", snapshot_entries=0)
    node = Node(settings, admin=Pending.of)
    rounds = max(1, per_client // pipeline)
    batches = [b"".join(encode_command(b"SET", b"key:%d:%d" % (c, i), b"v" * 3)
                        for i in range(pipeline)) for c in range(clients)]
    figures: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, ClientServer(node)))
        while node.core.role is not Role.LEADER:
            await node.driver.role_changed.wait()
        for run in range(RUNS + 1):
            started = time.process_time_ns()
            async with trio.open_nursery() as load:
                for batch in batches:
                    load.start_soon(_client, node.client_port, batch, pipeline, rounds)
            if run:
                figures.append((time.process_time_ns() - started)
                               / (clients * rounds * pipeline))
        nursery.cancel_scope.cancel()
    return figures


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-pipe-") as work:
        figures = trio.run(_measure, Path(work), args.clients, args.pipeline, args.per_client)
    print(statistics.median(figures))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", metavar="REF")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipeline", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=320)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    print(load_line())
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-pipe-ref-") as tmp:
        tree = export_tree(args.baseline, Path(tmp))
        for rnd in range(args.rounds):
            got = {}
            for which in (("this", "base") if rnd % 2 == 0 else ("base", "this")):
                env = dict(os.environ)
                if which == "base":
                    env["PYTHONPATH"] = str(tree)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--clients", str(args.clients),
                     "--pipeline", str(args.pipeline), "--per-client", str(args.per_client)],
                    env=env, check=True, capture_output=True, text=True).stdout
                got[which] = float(out.strip().splitlines()[-1])
            ratios.append(got["this"] / got["base"])
            print(f"round {rnd + 1}: this {got['this']:7.0f} ns/SET, {args.baseline} "
                  f"{got['base']:7.0f} ns/SET, ratio {ratios[-1]:.3f}", flush=True)
    print(f"median ratio over {args.rounds} rounds: {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f} .. {max(ratios):.3f}); {load_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
