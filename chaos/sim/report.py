"""The ``raftkv-chaos sim`` output: a progress line, failures in full, a summary line last."""

from __future__ import annotations

import time
from collections.abc import Callable

from chaos.sim.invariants import STANDARD_PROPERTIES
from chaos.sim.runner import SeedResult, SimParams, Totals, run_seeds


def describe_failure(r: SeedResult) -> list[str]:
    lines = [f"FAIL seed {r.seed} ({r.nodes} nodes): {r.prop}: {r.message}"]
    if r.trace:
        lines.append(f"  last {len(r.trace)} events:")
        lines.extend(f"    {line}" for line in r.trace)
    lines.append(f"  reproduce: {r.command}")
    return lines


def _echo(line: str) -> None:
    print(line, flush=True)  # progress must show through a pipe or a log file too


def run_cli(
    count: int,
    seed_start: int,
    nodes: int | None,
    steps: int | None,
    long: bool,
    quiet: bool,
    jobs: int,
    bugs: frozenset[str],
    echo: Callable[[str], None] | None = None,
    ttl: bool | None = None,
    sessions: bool | None = None,
    slow_writes: bool | None = None,
    txn: bool | None = None,
    gone_hints: bool | None = None,
) -> int:
    if echo is None:
        echo = _echo
    params = SimParams(nodes=nodes, ticks=steps, long=long, bugs=bugs, ttl=ttl,
                       sessions=sessions, slow_writes=slow_writes, txn=txn,
                       gone_hints=gone_hints)
    started = time.monotonic()
    size = f"{nodes} nodes" if nodes else "3/5/7 nodes by seed"
    if not quiet:
        extra = f", bugs {','.join(sorted(bugs))}" if bugs else ""
        echo(
            f"sim: {count} seeds from {seed_start}, {size}, {params.chaos_ticks()} fault "
            f"ticks each, {jobs} job(s){extra}"
        )
        echo(f"sim: checking {', '.join(STANDARD_PROPERTIES)}, and the rules behind them")
    totals = Totals()
    every = max(1, count // 10)
    for r in run_seeds(range(seed_start, seed_start + count), params, jobs):
        totals.add(r)
        if not r.ok:
            for line in describe_failure(r):
                echo(line)
        if not quiet and totals.seeds % every == 0 and totals.seeds < count:
            echo(
                f"sim: {totals.seeds}/{count} seeds, {totals.failed} failed, "
                f"{time.monotonic() - started:.1f}s"
            )
    if not quiet and totals.kv_seeds:
        echo(totals.kv_summary())
    echo(totals.summary(time.monotonic() - started))
    return 1 if totals.failed else 0
