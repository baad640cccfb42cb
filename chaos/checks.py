"""Durability, availability and latency checks over a chaos history.

Durability. The final read of every key after healing is appended to the history as an ok
read at the end of time, and the whole history is checked for linearizability: a lost
acknowledged write makes the final read impossible to linearize, so that check alone is the
complete verdict. On top of it, ``lost_writes`` names the acknowledged writes that are
*certainly* lost, so a report can say which. Reasoning (taking the final read as the final
state): an acknowledged write ``w`` of ``v`` took effect inside its interval; from then on the
register only changes through writes linearized after ``w``. So if the final value ``u``
differs from ``v``, some operation writing ``u`` (a write or swapping CAS, ok or info) must be
linearizable after ``w``, i.e. must not have returned before ``w`` was invoked. If no such
operation exists, ``w`` was lost, whatever else happened. This never reports a loss that is
not one; it may name fewer writes than were lost (the linearizability verdict still fails).
Because there is no delete, a final ``None`` (missing) means every acknowledged write to that
key was lost.

Availability. The run is cut into one-second windows; a window is up if an ok operation
completed in it. Per fault kind, the windows overlapping a fault of that kind and the
operations invoked during one count; "no fault" is the rest. Election latency is, for each
kill-leader / isolate-leader fault, the time from the fault's start to the completion of the
first ok write (or CAS) invoked after it. Write latency percentiles use the ok writes whose
interval touches no fault window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import attrs

from chaos.history import Op, Value
from chaos.linearizability import DEFAULT_MAX_STATES, Result, check

LEADER_FAULTS = ("kill-leader", "isolate-leader")
FINAL_PROCESS = "final"


# -- durability -------------------------------------------------------------------------


def final_reads(history: Sequence[Op], final: Mapping[str, Value],
                at: float | None = None,
                span: tuple[float, float] | None = None) -> list[Op]:
    """The final reads as ok read operations after every recorded time (or at ``at``, or
    over ``span``, when they really ran: with TTLs, a key may expire meanwhile)."""
    if span is not None:
        start, end = span
    else:
        if at is None:
            times = [t for op in history for t in (op.invoke, op.complete) if t is not None]
            at = max(times, default=0.0) + 1.0
        start = end = at
    return [Op(FINAL_PROCESS, key, "read", value, start, end, "ok", node=None)
            for key, value in sorted(final.items())]


def _acked_write(op: Op) -> bool:
    return op.outcome == "ok" and (op.f == "write" or (op.f == "cas" and op.result is True))


def lost_writes(history: Iterable[Op], final: Mapping[str, Value]) -> list[Op]:
    """Acknowledged writes that are certainly lost, given the final value of each key.

    Keys absent from ``final`` are not judged (they were not read at the end).
    """
    ops = list(history)
    lost = []
    for w in ops:
        if w.key not in final or not _acked_write(w):
            continue
        u = final[w.key]
        if w.written == u:
            continue
        # A missing key is explained by an expiring write (this one or a later one: when
        # exactly is the linearizability model's to judge).
        overwritable = any(
            x.key == w.key and x.writes and x.end >= w.invoke
            and (x.written == u or (u is None and x.ttl is not None))
            and (x is not w or u is None)
            for x in ops
        )
        if not overwritable:
            lost.append(w)
    return sorted(lost, key=lambda op: op.invoke)


@attrs.frozen
class Durability:
    """The durability verdict: linearizability with the final reads, and certain losses."""

    linearizability: Result
    lost: tuple[Op, ...]
    final: Mapping[str, Value]
    unread: tuple[str, ...]  # keys written in the history but absent from the final reads

    @property
    def ok(self) -> bool:
        return self.linearizability.ok and not self.lost

    def render(self) -> str:
        lines = [f"durability: {len(self.final)} keys read after healing"]
        if self.unread:
            lines.append(f"  not read at the end (not judged): {', '.join(map(repr, self.unread))}")
        if self.lost:
            lines.append(f"  acknowledged writes lost: {len(self.lost)}")
            for op in self.lost:
                lines.append(f"    {op.describe()}  (final value {self.final[op.key]!r})")
        else:
            lines.append("  acknowledged writes lost: none proven")
        lines.append("  " + self.linearizability.summary() + " (including the final reads)")
        return "\n".join(lines)


def check_durability(
    history: Sequence[Op],
    final: Mapping[str, Value],
    at: float | None = None,
    max_states: int = DEFAULT_MAX_STATES,
    timeout: float | None = None,
    span: tuple[float, float] | None = None,
) -> Durability:
    """Check the history with the final reads appended, and name the certainly lost writes."""
    reads = final_reads(history, final, at, span)
    written = {op.key for op in history if op.f in ("write", "cas")}
    return Durability(
        linearizability=check([*history, *reads], max_states=max_states, timeout=timeout),
        lost=tuple(lost_writes(history, final)),
        final=dict(final),
        unread=tuple(sorted(written - set(final))),
    )


# -- availability and latency -----------------------------------------------------------


@attrs.frozen
class FaultWindow:
    """A fault injected from ``start`` to ``end`` (monotonic seconds), e.g. kind kill-leader."""

    start: float
    end: float
    kind: str

    def overlaps(self, lo: float, hi: float) -> bool:
        return lo < self.end and self.start < hi

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end


@attrs.frozen
class Availability:
    """Up windows and successful operations for one slice of the run."""

    label: str
    windows: int
    windows_up: int
    ops: int
    ops_ok: int

    @property
    def window_share(self) -> float | None:
        return self.windows_up / self.windows if self.windows else None

    @property
    def op_share(self) -> float | None:
        return self.ops_ok / self.ops if self.ops else None

    def render(self) -> str:
        return (f"{self.label:<16} windows up {_pct(self.window_share)} "
                f"({self.windows_up}/{self.windows}), ops ok {_pct(self.op_share)} "
                f"({self.ops_ok}/{self.ops})")


@attrs.frozen
class ElectionLatency:
    """Time from a leader fault to the first ok write after it (None: never recovered)."""

    fault: FaultWindow
    latency: float | None


@attrs.frozen
class Latency:
    """Percentiles (nearest rank) of a set of durations, in seconds."""

    count: int
    p50: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, samples: Iterable[float]) -> Latency:
        s = sorted(samples)
        if not s:
            return cls(0, None, None, None)
        return cls(len(s), percentile(s, 50), percentile(s, 99), s[-1])


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(p / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


@attrs.frozen
class AvailabilityReport:
    overall: Availability
    by_kind: tuple[Availability, ...]  # "no fault" first, then each fault kind
    elections: tuple[ElectionLatency, ...]
    write_latency: Latency  # ok writes outside fault windows

    def render(self) -> str:
        lines = ["availability (1 s windows with an ok operation; share of ops ok):"]
        lines += [f"  {a.render()}" for a in (self.overall, *self.by_kind)]
        if self.elections:
            lines.append("election latency (leader fault -> first ok write):")
            for e in self.elections:
                took = "never" if e.latency is None else f"{e.latency * 1000:.0f} ms"
                lines.append(f"  {e.fault.kind} at {e.fault.start:.3f}: {took}")
        wl = self.write_latency
        if wl.count:
            lines.append(f"write latency outside faults: p50 {_ms(wl.p50)}, p99 {_ms(wl.p99)}, "
                         f"max {_ms(wl.max)} ({wl.count} writes)")
        else:
            lines.append("write latency outside faults: no ok writes")
        return "\n".join(lines)


def _pct(share: float | None) -> str:
    return "   n/a" if share is None else f"{share * 100:5.1f}%"


def _ms(t: float | None) -> str:
    return "n/a" if t is None else f"{t * 1000:.1f} ms"


def _slice(label: str, grid: list[tuple[float, float]], up: list[bool], ops: list[Op],
           in_slice_window: list[bool], in_slice_op: list[bool]) -> Availability:
    windows = [u for u, s in zip(up, in_slice_window, strict=True) if s]
    chosen = [op for op, s in zip(ops, in_slice_op, strict=True) if s]
    return Availability(label, len(windows), sum(windows), len(chosen),
                        sum(op.outcome == "ok" for op in chosen))


def availability(
    history: Iterable[Op],
    faults: Iterable[FaultWindow | tuple[float, float, str]] = (),
    start: float | None = None,
    end: float | None = None,
    window: float = 1.0,
) -> AvailabilityReport:
    """Availability overall and per fault kind, election and write latency.

    ``start``/``end`` bound the run (default: the first invoke and the last recorded time).
    """
    ops = [op for op in history if op.process != FINAL_PROCESS]
    fws = [f if isinstance(f, FaultWindow) else FaultWindow(*f) for f in faults]
    times = [t for op in ops for t in (op.invoke, op.complete) if t is not None]
    lo = min(times, default=0.0) if start is None else start
    hi = max(times, default=lo) if end is None else end
    count = max(1, math.ceil((hi - lo) / window))
    grid = [(lo + k * window, lo + (k + 1) * window) for k in range(count)]
    up = [False] * count
    for op in ops:
        if op.outcome == "ok" and op.complete is not None and lo <= op.complete <= hi:
            up[min(count - 1, int((op.complete - lo) // window))] = True

    def window_in(kinds: set[str] | None) -> list[bool]:
        if kinds is None:  # no fault at all
            return [not any(f.overlaps(a, b) for f in fws) for a, b in grid]
        return [any(f.kind in kinds and f.overlaps(a, b) for f in fws) for a, b in grid]

    def op_in(kinds: set[str] | None) -> list[bool]:
        if kinds is None:
            return [not any(op.invoke in f for f in fws) for op in ops]
        return [any(f.kind in kinds and op.invoke in f for f in fws) for op in ops]

    everything = [True] * count
    overall = _slice("overall", grid, up, ops, everything, [True] * len(ops))
    slices = [_slice("no fault", grid, up, ops, window_in(None), op_in(None))]
    for kind in sorted({f.kind for f in fws}):
        slices.append(_slice(kind, grid, up, ops, window_in({kind}), op_in({kind})))

    acked = sorted((op for op in ops if op.outcome == "ok" and op.f in ("write", "cas")),
                   key=lambda op: op.complete or 0.0)
    elections = []
    for f in sorted(fws, key=lambda f: f.start):
        if f.kind not in LEADER_FAULTS:
            continue
        first = next((op for op in acked if op.invoke >= f.start), None)
        elections.append(ElectionLatency(
            f, None if first is None or first.complete is None else first.complete - f.start))

    calm = [op.complete - op.invoke for op in acked if op.complete is not None
            and not any(f.overlaps(op.invoke, op.complete) or op.invoke in f for f in fws)]
    return AvailabilityReport(overall, tuple(slices), tuple(elections), Latency.of(calm))
