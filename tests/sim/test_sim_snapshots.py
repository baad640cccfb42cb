"""The simulator with snapshots: compaction at random points, InstallSnapshot to nodes far
behind (crashed and restarted), crashes in the middle of a receive; every check holds, and
the snapshot checks themselves have teeth."""

from __future__ import annotations

import pytest

from chaos.sim.invariants import SafetyChecker, Violation
from chaos.sim.messages import register_from_snapshot, register_snapshot
from chaos.sim.runner import SimParams, run_seed
from wire.raft import NOOP, NORMAL, Entry


def test_seeds_with_snapshots_hold_and_exercise_every_path() -> None:
    compactions = installs = install_crashes = 0
    for seed in range(40):
        r = run_seed(seed, SimParams(ticks=300))
        assert r.ok, f"seed {seed}: {r.prop}: {r.message}\n" + "\n".join(r.trace[-20:])
        compactions += r.snapshots[0]
        installs += r.snapshots[1]
        install_crashes += r.snapshots[2]
    assert compactions > 500  # logs were compacted everywhere...
    assert installs > 50  # ...and nodes far behind caught up by InstallSnapshot...
    assert install_crashes >= 1  # ...some of them crashing in the middle of a receive


def test_snapshots_can_be_turned_off_and_runs_stay_reproducible() -> None:
    off = run_seed(3, SimParams(ticks=150, snapshots=False, digest=True))
    assert off.ok and off.snapshots == (0, 0, 0)
    on = run_seed(3, SimParams(ticks=150, digest=True))
    assert on.snapshots[0] > 0
    assert run_seed(3, SimParams(ticks=150, digest=True)) == on


def test_register_snapshot_round_trip() -> None:
    assert register_from_snapshot(b"") == b""
    data = register_snapshot(b"c1-7", 42)
    assert register_from_snapshot(data) == b"c1-7" and len(data) >= 4 * 8  # 4 chunks of 8 B


def _checker() -> SafetyChecker:
    chk = SafetyChecker()
    chk.incarnation(1, 1, 0)
    entries = [Entry(1, 1, NOOP, b""), Entry(1, 2, NORMAL, b"a"), Entry(1, 3, NORMAL, b"b")]
    chk.commit(1, 1, 3, lambda i: 1, term=1)
    for e in entries:
        chk.apply(1, 1, e, 3)
    return chk


def test_snapshot_checks_have_teeth() -> None:
    chk = _checker()
    chk.snapshot(1, 1, 2, 1, b"a", installed=False, node_term=2)  # right: the write at 2
    chk.incarnation(2, 1, 0)
    chk.snapshot(2, 1, 3, 1, b"b", installed=True, node_term=2)
    with pytest.raises(Violation, match="State Machine Safety"):
        chk.snapshot(1, 1, 3, 1, b"a", installed=False, node_term=2)  # misses the write at 3
    with pytest.raises(Violation, match="snapshot"):
        # another term than committed:
        chk.snapshot(1, 1, 3, 2, b"b", installed=False, node_term=2)
    chk.incarnation(3, 1, 0)
    with pytest.raises(Violation, match="past every commit"):
        chk.snapshot(3, 1, 9, 1, b"b", installed=True, node_term=2)  # not committed anywhere
    with pytest.raises(Violation, match="apply order"):
        # older than what node 2 applied:
        chk.snapshot(2, 1, 2, 1, b"a", installed=True, node_term=2)
