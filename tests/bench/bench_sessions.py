"""The cost of client sessions: c50 INCR with and without ``RAFT ONCE``, in one run.

Run: .venv/bin/python tests/bench/bench_sessions.py [--clients 50] [--seconds 5] [--rounds 8]

One 3-node cluster (fsync always). ``--clients`` connections to the leader each send INCR
after INCR, one at a time, for ``--seconds``: either plainly, or each tagged ``RAFT ONCE id
seq`` with a session of its own (opened before the round, outside the timing). The two kinds
alternate (A B B A A B ...) so both see the same machine load; the figure is the median of
the with/without ratios of adjacent rounds, with a bootstrap 95% interval. The same driver
(trio, raw RESP) runs both kinds.
"""

from __future__ import annotations

import argparse

import trio
from common import load_line, median_ci, paired_ratios, raft_cluster, roles, scratch_dir

from client.connection import Connection
from wire.reply import ErrorReply


async def _client(addr: tuple[str, int], sessions: bool, key: str, stop_at: float,
                  counts: list[int], errors: list[str]) -> None:
    conn = await Connection.open_host(*addr)
    try:
        sid = await conn.request("RAFT", "SESSION", "OPEN") if sessions else 0
        if isinstance(sid, ErrorReply):
            errors.append(sid.text)
            return
        seq = 0
        while trio.current_time() < stop_at:
            seq += 1
            args = ("RAFT", "ONCE", sid, seq, "INCR", key) if sessions else ("INCR", key)
            reply = await conn.request(*args)
            if isinstance(reply, ErrorReply):
                errors.append(reply.text)
                return
            counts[0] += 1
    finally:
        await conn.aclose()


async def one_round(addr: tuple[str, int], sessions: bool, clients: int,
                    seconds: float) -> tuple[float, list[str]]:
    counts, errors = [0], []
    started = trio.current_time()
    stop_at = started + seconds
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(_client, addr, sessions, f"ctr{i % 8}", stop_at, counts, errors)
    return counts[0] / (trio.current_time() - started), errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    print(load_line())
    with scratch_dir(args.dir, "bench-sessions-") as work, raft_cluster(work) as cluster:
        leader, _ = roles(cluster)
        addr = cluster.client_addr(leader)
        order: list[str] = []
        for r in range(args.rounds):
            order += ["without", "with"] if r % 2 == 0 else ["with", "without"]
        runs: list[float] = []
        for name in order:
            rate, errors = trio.run(one_round, addr, name == "with", args.clients, args.seconds)
            runs.append(0.0 if errors else rate)
            note = f" errors: {errors[0][:80]} (x{len(errors)})" if errors else ""
            print(f"  c{args.clients} INCR {name:>7} sessions: {rate:8.0f}/s{note}")
        ratios = paired_ratios([*zip(order, runs, strict=True)])
        if ratios:
            mid, lo, hi = median_ci(ratios)
            print(f"sessions: c{args.clients} INCR with/without over {len(ratios)} adjacent "
                  f"pairs: median {(mid - 1) * 100:+.1f}%, 95% CI of the median "
                  f"{(lo - 1) * 100:+.1f}% .. {(hi - 1) * 100:+.1f}%")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
