"""What watchers cost one leader's event loop, in process: a figure the machine's load
barely moves (watch5).

Run: .venv/bin/python tests/bench/bench_watch_inproc.py [--watchers 33] [--rounds 3]
        [--seconds 4] [--rate 2500] [--per-reader MS] [--max-window MS]

A one-node leader (raftkv.testing.one_node_leader, fsync as configured) runs in this
process; a writer thread sends SETs in pipelined batches of 50 (``--rate`` SETs a second,
0: as fast as the node answers, like c50 SET) and a thread of raw watchers
(bench_watch.RawWatchers: ``XREAD COUNT 1000 BLOCK 1000`` of the whole feed) follows the
feed. Rounds of 0 and ``--watchers`` watchers alternate. Each prints the loop thread's CPU
per SET (``time.thread_time``: the node's loop, not the writer's or the watchers' threads),
the replies a second each watcher got, and the readers' passes a second; the summary gives
the median rise of the CPU per SET. At a fixed ``--rate`` the batching is the same in
every round, so the rise is the watchers' cost alone (unpaced, a faster round batches more
and costs less a SET). ``--per-reader`` and ``--max-window`` replace the blocked readers'
window constants (raftkv/server/blocked_readers.py) for a what-if.

Measured (watch5, load 6-10, 33 watchers, --rate 2500, 3 rounds each): no watcher 43-47
us a SET; 2 ms a reader 68-72; 5 ms 54-59; 10 ms 51-54; 30 ms 53-58.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import hiredis
import trio
from bench_watch import RawWatchers, _command, newest_sync, pipelined

import raftkv.server.blocked_readers as blocked_readers
from chaos.cluster import free_ports
from raftkv.testing import one_node_leader


def writer(addr: str, rate: float, stop: threading.Event, written: list[int]) -> None:
    """Batches of 50 pipelined SETs to ``addr``, ``rate`` SETs a second (0: unpaced)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        reader, i, due = hiredis.Reader(), 0, time.perf_counter()
        while not stop.is_set():
            pipelined(s, reader, b"".join(_command("SET", f"key:{(i + j) % 100_000:012d}",
                                                   "xxx") for j in range(50)), 50)
            i += 50
            written[0] += 50
            if rate:
                due += 50 / rate
                time.sleep(max(0.0, due - time.perf_counter()))


async def one_round(work: Path, watchers: int, seconds: float, rate: float,
                    made: list[blocked_readers.BlockedReaders]
                    ) -> tuple[float, float, float, float]:
    """(loop thread's CPU per SET in us, replies a second each watcher, passes a second,
    SETs a second)."""
    peer, client = free_ports(2)
    async with one_node_leader(work, peer, client):
        addr = f"127.0.0.1:{client}"
        start = await trio.to_thread.run_sync(newest_sync, addr)
        stop, written = threading.Event(), [0]
        thread = threading.Thread(target=writer, args=(addr, rate, stop, written), daemon=True)
        raw = RawWatchers([addr], watchers, start)
        thread.start()
        if watchers:
            raw.start()
        try:
            await trio.sleep(0.5)
            blocked = made[-1]
            cpu, sets, replies, passes = (time.thread_time(), written[0], raw.replies,
                                          blocked.passes)
            began = time.perf_counter()
            await trio.sleep(seconds)
            spent = time.perf_counter() - began
            cpu, sets = time.thread_time() - cpu, written[0] - sets
            replies, passes = raw.replies - replies, blocked.passes - passes
        finally:
            stop.set()
            raw.done.set()
        await trio.to_thread.run_sync(thread.join)
        if watchers:
            await trio.to_thread.run_sync(raw.join)
    return (cpu / sets * 1e6 if sets else float("inf"),
            replies / spent / watchers if watchers else 0.0, passes / spent, sets / spent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watchers", type=int, default=33)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rate", type=float, default=2500.0, help="SETs a second; 0: unpaced")
    ap.add_argument("--per-reader", type=float, default=None, metavar="MS")
    ap.add_argument("--max-window", type=float, default=None, metavar="MS")
    args = ap.parse_args()
    made: list[blocked_readers.BlockedReaders] = []
    init = blocked_readers.BlockedReaders.__init__
    _, per_reader, max_window, *_ = init.__defaults__ or ()
    per_reader = args.per_reader / 1000 if args.per_reader is not None else per_reader
    max_window = args.max_window / 1000 if args.max_window is not None else max_window

    def made_here(self: blocked_readers.BlockedReaders, limit: int, **kwargs: object) -> None:
        kwargs.setdefault("per_reader", per_reader)
        kwargs.setdefault("max_window", max_window)
        init(self, limit, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    blocked_readers.BlockedReaders.__init__ = made_here  # type: ignore[method-assign]
    rises = []
    with tempfile.TemporaryDirectory(prefix="bench-watch-inproc-") as tmp:
        for r in range(args.rounds):
            figures = {}
            for n in (0, args.watchers) if r % 2 == 0 else (args.watchers, 0):
                figures[n] = trio.run(one_round, Path(tmp) / f"{r}-{n}", n, args.seconds,
                                      args.rate, made)
                per_set, replies, passes, rate = figures[n]
                print(f"  round {r}: {n:3d} watchers, {rate:5.0f} SET/s: loop CPU "
                      f"{per_set:.1f} us a SET, "
                      f"{replies:.1f} replies/s each, {passes:.1f} passes/s", flush=True)
            rises.append(figures[args.watchers][0] - figures[0][0])
    print(f"{args.watchers} watchers (window {per_reader * 1000:g} ms a reader, at most "
          f"{max_window * 1000:g} ms): the loop's CPU a SET rose {statistics.median(rises):.1f}"
          f" us (median of {len(rises)}; " + ", ".join(f"{x:.1f}" for x in rises) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
