"""``raftkv-chaos partition``: the original RaftKV's partition-test.sh scenario.

Start a cluster (or attach to a running one with --endpoints, which needs --net docker),
wait for a leader, keep writing through every node, cut one node off (the leader by
default), keep writing for --delay seconds, reconnect it, keep writing a little longer, and
report how available the cluster was during the partition and whether the cut-off node
came back. It is one fixed-schedule ``raftkv-chaos run``, so the history is checked the same
way and the same report files are written.
"""

from __future__ import annotations

import attrs

from chaos.nemesis import Fault
from chaos.run import RunOptions, RunResult, _pct
from chaos.workload import Mix


def options(base: RunOptions, target: str, before: float, delay: float,
            after: float) -> RunOptions:
    """Run options whose only fault cuts ``target`` (leader or follower) off for ``delay``."""
    kind = {"leader": "isolate-leader", "follower": "isolate-follower"}[target]
    return attrs.evolve(base, duration=before + delay + after, nemeses=(kind,),
                        schedule=(Fault(kind, before, delay, base.seed),),
                        mix=Mix(read=0.2, write=0.8))


MIN_UPTIME = 0.999  # the original's claim: > 99.9% of 1 s windows served


@attrs.frozen
class PartitionReport:
    lines: tuple[str, ...]
    rejoined: bool  # the cut-off node answered a linearizable read after the reconnect
    uptime: float | None = None  # share of 1 s windows of the whole run with an ok operation
    replication: float | None = None  # reconnect -> that first read (it had caught up)

    @property
    def ok(self) -> bool:
        """The partition-test verdict on top of the history checks."""
        return self.rejoined and self.uptime is not None and self.uptime >= MIN_UPTIME

    def render(self) -> str:
        return "\n".join(self.lines)


def analyse(result: RunResult) -> PartitionReport:
    """The partition-test numbers: uptime while cut, election, the cut node's return."""
    col = result.collected
    if not col.faults:
        return PartitionReport(("partition: the cut never happened: " + "; ".join(col.skipped),),
                               False)
    cut = col.faults[0]
    node = cut.targets[0]
    during = [op for op in col.history if cut.start <= op.invoke < cut.end]
    slice_ = next((a for a in result.availability.by_kind if a.label == cut.kind), None)
    lines = [f"partition: {cut.description} from {cut.start:.1f} s to {cut.end:.1f} s "
             f"({cut.end - cut.start:.1f} s)"]
    if slice_ is not None:
        lines.append(f"  uptime during the partition: {_pct(slice_.window_share)} of 1 s "
                     f"windows had an ok operation; {_pct(slice_.op_share)} of operations ok "
                     f"({slice_.ops_ok}/{slice_.ops})")
    for e in result.availability.elections:
        took = "never" if e.latency is None else f"{e.latency * 1000:.0f} ms"
        lines.append(f"  new leader serving writes after: {took}")
    for n in sorted({op.node for op in col.history if op.node}):
        mine = [op for op in during if op.node == n]
        ok = sum(op.outcome == "ok" for op in mine)
        side = "cut off" if n == f"n{node}" else "majority"
        lines.append(f"  via {n} ({side}): {ok}/{len(mine)} operations ok during the partition")
    back = [op for op in col.history if op.node == f"n{node}" and op.outcome == "ok"
            and op.invoke >= cut.end]
    if back:
        first = min(op.complete or op.invoke for op in back)
        lines.append(f"  n{node} served again {first - cut.end:.2f} s after the reconnect")
    else:
        lines.append(f"  n{node} did NOT serve again after the reconnect")
    # A linearizable read through the rejoined node needs its state machine to have applied
    # the leader's commit index of that moment: the first one times its catch-up.
    reads = [op.complete for op in back if op.f == "read" and op.complete is not None]
    replication = min(reads) - cut.end if reads else None
    lines.append("  replication latency (reconnect -> first linearizable read through "
                 f"n{node}): " + ("never" if replication is None
                                  else f"{replication * 1000:.0f} ms"))
    uptime = result.availability.overall.window_share
    lines.append(f"  uptime over the whole run: {_pct(uptime)} of 1 s windows "
                 f"(needs >= {MIN_UPTIME:.1%})")
    return PartitionReport(tuple(lines), replication is not None, uptime, replication)

