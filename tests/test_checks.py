"""Durability (lost acknowledged writes), availability and latency summaries."""

from __future__ import annotations

import pytest

from chaos.checks import (
    FaultWindow,
    availability,
    check_durability,
    final_reads,
    lost_writes,
    percentile,
)
from chaos.history import Op


def w(p: int, v: object, a: float, b: float | None, o: str = "ok", key: str = "k") -> Op:
    return Op(p, key, "write", v, a, b, o)


def r(p: int, v: object, a: float, b: float | None, o: str = "ok", key: str = "k") -> Op:
    return Op(p, key, "read", v, a, b, o)


def cas(p: int, exp: object, new: object, a: float, b: float | None, o: str = "ok",
        result: bool | None = True, key: str = "k") -> Op:
    return Op(p, key, "cas", (exp, new), a, b, o, result=result if o == "ok" else None)


# -- durability -------------------------------------------------------------------------


def test_final_reads_come_after_everything() -> None:
    reads = final_reads([w(1, "a", 0, 3), w(2, "b", 5, None, "info")], {"k": "a", "j": None})
    assert [(op.key, op.value, op.outcome) for op in reads] == [("j", None, "ok"),
                                                                ("k", "a", "ok")]
    assert all(op.invoke > 5 for op in reads)


def test_final_read_of_an_older_value_loses_the_later_acked_write() -> None:
    first, second = w(1, "a", 0, 1), w(2, "b", 2, 3)
    report = check_durability([first, second], {"k": "a"})
    assert report.lost == (second,)
    assert report.linearizability.verdict == "violation"
    assert not report.ok
    assert "acknowledged writes lost: 1" in report.render()


def test_overwritten_write_is_not_lost() -> None:
    report = check_durability([w(1, "a", 0, 1), w(2, "b", 2, 3)], {"k": "b"})
    assert report.lost == ()
    assert report.ok


def test_write_overwritten_by_a_concurrent_or_info_write_is_not_reported_lost() -> None:
    # "b" (acked) may have been overwritten by the concurrent write of "a" ...
    concurrent = [w(1, "a", 0, 4), w(2, "b", 1, 2)]
    assert lost_writes(concurrent, {"k": "a"}) == []
    assert check_durability(concurrent, {"k": "a"}).ok
    # ... or by an info write invoked long before but possibly applied after.
    late_info = [w(1, "a", 0, 1, "info"), w(2, "b", 5, 6)]
    assert lost_writes(late_info, {"k": "a"}) == []
    assert check_durability(late_info, {"k": "a"}).ok


def test_an_earlier_write_of_the_final_value_does_not_excuse_a_later_loss() -> None:
    ops = [w(1, "a", 0, 1), w(2, "b", 2, 3), w(3, "c", 4, 5)]
    assert lost_writes(ops, {"k": "a"}) == [ops[1], ops[2]]


def test_failed_write_cannot_have_overwritten() -> None:
    ops = [w(1, "b", 0, 1), w(2, "a", 2, 3, "fail")]
    assert lost_writes(ops, {"k": "a"}) == [ops[0]]


def test_missing_key_at_the_end_loses_every_acked_write() -> None:
    ops = [w(1, "a", 0, 1), cas(2, "a", "b", 2, 3), cas(3, "x", "y", 2, 3, result=False),
           w(4, "c", 2, 3, "info")]
    assert lost_writes(ops, {"k": None}) == [ops[0], ops[1]]


def test_swapped_cas_counts_as_an_acked_write_and_as_an_overwriter() -> None:
    ops = [w(1, "a", 0, 1), cas(2, "a", "b", 2, 3)]
    assert lost_writes(ops, {"k": "a"}) == [ops[1]]
    assert lost_writes(ops, {"k": "b"}) == []


def test_keys_not_read_at_the_end_are_not_judged() -> None:
    ops = [w(1, "a", 0, 1), w(1, "b", 0, 1, key="j")]
    report = check_durability(ops, {"k": "a"})
    assert report.unread == ("j",)
    assert report.lost == ()
    assert report.ok


def test_durability_catches_a_phantom_final_value() -> None:
    report = check_durability([w(1, "a", 0, 1)], {"k": "zzz"})
    assert report.linearizability.verdict == "violation"
    assert report.lost == (Op(1, "k", "write", "a", 0, 1, "ok"),)


# -- availability -----------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def _steady_history() -> list[Op]:
    """One write per second from t=0 to t=9 (each 10 ms), failing during [4, 6)."""
    ops = []
    for t in range(10):
        outcome = "fail" if 4 <= t < 6 else "ok"
        ops.append(w(1, f"v{t}", t + 0.1, t + 0.11, outcome))
    return ops


def test_availability_windows_and_op_shares() -> None:
    ops = _steady_history()
    report = availability(ops, start=0.0, end=10.0)
    assert (report.overall.windows, report.overall.windows_up) == (10, 8)
    assert (report.overall.ops, report.overall.ops_ok) == (10, 8)
    assert report.overall.window_share == pytest.approx(0.8)


def test_availability_per_fault_kind() -> None:
    ops = _steady_history()
    faults = [FaultWindow(4.0, 6.0, "partition"), (8.0, 8.5, "pause")]
    report = availability(ops, faults, start=0.0, end=10.0)
    by = {a.label: a for a in report.by_kind}
    assert list(by) == ["no fault", "partition", "pause"]
    assert (by["partition"].windows, by["partition"].windows_up) == (2, 0)
    assert (by["partition"].ops, by["partition"].ops_ok) == (2, 0)
    assert (by["pause"].windows, by["pause"].windows_up) == (1, 1)
    assert (by["pause"].ops, by["pause"].ops_ok) == (1, 1)
    assert (by["no fault"].windows, by["no fault"].windows_up) == (7, 7)
    assert (by["no fault"].ops, by["no fault"].ops_ok) == (7, 7)
    text = report.render()
    assert "partition" in text and "0/2" in text


def test_election_latency_is_time_to_the_next_ok_write() -> None:
    ops = [w(1, "a", 0.0, 0.01), r(2, "a", 1.05, 1.06), w(1, "b", 1.0, 1.4, "info"),
           w(1, "c", 1.5, 1.75), w(1, "d", 3.0, 3.01)]
    faults = [(1.0, 1.2, "kill-leader"), (2.9, 3.0, "isolate-leader"), (5.0, 6.0, "pause"),
              (9.0, 9.5, "kill-leader")]
    report = availability(ops, faults)
    got = [(e.fault.kind, e.latency) for e in report.elections]
    assert got == [("kill-leader", pytest.approx(0.75)), ("isolate-leader", pytest.approx(0.11)),
                   ("kill-leader", None)]
    assert "never" in report.render()


def test_write_latency_excludes_writes_touching_a_fault() -> None:
    ops = [w(1, i, float(i), i + 0.010 + i / 1000) for i in range(10)]
    ops.append(w(2, "slow", 4.5, 6.0))  # overlaps the fault: excluded
    ops.append(r(3, "x", 0.0, 0.9, "fail"))  # not a write
    report = availability(ops, [(5.5, 5.8, "partition")])
    lat = report.write_latency
    assert lat.count == 10
    assert lat.p50 == pytest.approx(0.014)
    assert lat.p99 == pytest.approx(0.019)
    assert lat.max == pytest.approx(0.019)
    assert "p50 14.0 ms" in report.render()


def test_empty_history_is_reported_not_crashed() -> None:
    report = availability([])
    assert report.overall.ops == 0
    assert report.overall.op_share is None
    assert report.write_latency.count == 0
    assert "no ok writes" in report.render()
