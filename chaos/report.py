"""The report of a chaos run: history.jsonl, summary.json, summary.txt, timeline.png.

The timeline (written when matplotlib, the ``plot`` extra, is importable) shows every
operation's latency against its invoke time, coloured by outcome, over shaded and labelled
fault windows: where the cluster stalled, and for how long, is visible at a glance.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from chaos import history as hist
from chaos.checks import _ms, percentile

if TYPE_CHECKING:
    from chaos.result import RunResult

OUTCOME_COLOURS = {"ok": "tab:green", "fail": "tab:orange", "info": "tab:red"}
FAULT_COLOURS = {"kill": "tab:gray", "kill-leader": "black", "pause": "tab:purple",
                 "isolate-leader": "tab:blue", "isolate-follower": "tab:cyan",
                 "split": "tab:olive", "bridge": "tab:brown", "one-way": "tab:pink",
                 "latency": "gold"}


def election_stats(result: RunResult) -> dict[str, Any]:
    lat = [e.latency for e in result.availability.elections]
    done = sorted(x for x in lat if x is not None)
    return {"faults": len(lat), "recovered": len(done),
            "p50": percentile(done, 50) if done else None, "max": done[-1] if done else None}


def summary(result: RunResult) -> dict[str, Any]:
    """Everything the text summary says, as JSON-ready data."""
    opts, col = result.options, result.collected
    ops = col.history
    av = result.availability
    wl = av.write_latency
    options = attrs.asdict(opts, recurse=True)
    options["out"] = str(opts.out)
    options["schedule"] = (None if opts.schedule is None
                           else [attrs.asdict(f) for f in opts.schedule])
    return {
        "verdict": result.verdict,
        "exit_code": result.exit_code,
        "seed": opts.seed,
        "options": options,
        "operations": {
            "total": len(ops),
            "by_f": dict(Counter(op.f for op in ops)),
            "by_outcome": dict(Counter(op.outcome for op in ops)),
            "unexpected_errors": sum(1 for op in ops
                                     if op.error and op.error.startswith("unexpected")),
        },
        "duration": col.end,
        "leader_at_start": col.leader_at_start,
        "faults": [attrs.asdict(f) for f in col.faults],
        "skipped": list(col.skipped),
        "crashes": list(col.crashes),
        "checks": [attrs.asdict(c) for c in result.checks],
        "linearizability": {"verdict": result.linearizability.verdict,
                            "summary": result.linearizability.summary(),
                            "keys": [k.to_json() for k in result.linearizability.keys]},
        "durability": {"ok": result.durability.ok, "final": result.durability.final,
                       "lost": [op.to_json() for op in result.durability.lost],
                       "with_final_reads": result.durability.linearizability.summary()},
        "availability": [attrs.asdict(a) for a in (av.overall, *av.by_kind)],
        "elections": [{"kind": e.fault.kind, "start": e.fault.start, "latency": e.latency}
                      for e in av.elections],
        "election_latency": election_stats(result),
        "write_latency": {"count": wl.count, "p50": wl.p50, "p99": wl.p99, "max": wl.max},
    }


def render(result: RunResult) -> str:
    """The text summary; its last line is the verdict."""
    opts, col = result.options, result.collected
    ops = col.history
    by_f = Counter(op.f for op in ops)
    by_o = Counter(op.outcome for op in ops)
    lines = [
        f"raftkv-chaos run: seed {opts.seed}, {opts.nodes} nodes, {col.end:.1f} s, nemesis "
        f"{','.join(opts.nemeses) or 'none'}, --net {opts.net}, {opts.clients} clients, "
        f"{opts.keys} keys" + (", UNSAFE STALE READS" if opts.unsafe_stale_reads else ""),
        f"operations: {len(ops)} (read {by_f['read']}, write {by_f['write']}, cas "
        f"{by_f['cas']}); ok {by_o['ok']}, fail {by_o['fail']}, info {by_o['info']}",
        f"faults: {len(col.faults)}",
    ]
    lines += [f"  {f.start:6.1f} - {f.end:6.1f} s  {f.kind:<16} {f.description}"
              for f in col.faults]
    lines += [f"  not done: {s}" for s in col.skipped]
    lines.append("checks:")
    lines += [f"  {c.name:<16} {'ok' if c.ok else 'FAILED':<7}{c.summary}"
              + ("" if c.counted else " (not counted)") for c in result.checks]
    lines.append(result.availability.render())
    es = election_stats(result)
    if es["faults"]:
        lines.append(f"election latency: p50 {_ms(es['p50'])}, max {_ms(es['max'])} "
                     f"({es['recovered']}/{es['faults']} leader faults recovered)")
    lin = result.linearizability
    if lin.verdict != "ok":
        lines.append("linearizability, keys that failed:")
        lines += [k.render() for k in lin.keys if k.verdict != "ok"]
    lines.append(result.durability.render())
    odd = [op for op in ops if op.error and op.error.startswith("unexpected")]
    if odd:
        lines.append(f"unexpected replies: {len(odd)}, e.g. {odd[0].describe()}: {odd[0].error}")
    if col.crashes:
        lines += [f"NODE CRASH: {c}" for c in col.crashes]
    lines.append(f"files: {opts.out}")
    lines.append(result.verdict)
    return "\n".join(lines)


def plot(result: RunResult, path: Path) -> bool:
    """Write the timeline; False if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    opts, col = result.options, result.collected
    fig, ax = plt.subplots(figsize=(14, 6))
    top = max(opts.op_timeout * 2, 1.0) * 1000
    for fault in col.faults:
        colour = FAULT_COLOURS.get(fault.kind, "tab:gray")
        ax.axvspan(fault.start, fault.end, color=colour, alpha=0.15, lw=0)
        ax.text((fault.start + fault.end) / 2, top, fault.kind, rotation=90, ha="center",
                va="top", fontsize=8, color=colour)
    for outcome, colour in OUTCOME_COLOURS.items():
        chosen = [op for op in col.history if op.outcome == outcome]
        xs = [op.invoke for op in chosen]
        ys = [max(((op.complete if op.complete is not None else op.invoke + opts.op_timeout)
                   - op.invoke) * 1000, 0.1) for op in chosen]
        ax.scatter(xs, ys, s=4, c=colour, label=f"{outcome} ({len(chosen)})", alpha=0.6,
                   linewidths=0)
    ax.set_yscale("log")
    ax.set_ylim(0.1, top * 1.05)
    ax.set_xlim(0, max(col.end, 1.0))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"raftkv-chaos seed {opts.seed}, --net {opts.net}: {result.verdict}",
                 fontsize=10)
    ax.legend(loc="lower right", markerscale=4)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(result: RunResult) -> None:
    out = result.options.out
    out.mkdir(parents=True, exist_ok=True)
    hist.save(out / "history.jsonl", result.collected.history)
    (out / "summary.json").write_text(json.dumps(summary(result), indent=2, default=str) + "\n")
    (out / "summary.txt").write_text(render(result) + "\n")
    if not plot(result, out / "timeline.png"):
        print("raftkv-chaos: no timeline.png: matplotlib is not installed "
              "(pip install -e '.[test]' or '.[plot]')", file=sys.stderr)
