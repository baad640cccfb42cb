"""The simulator with membership changes: learners added, promoted, voters removed, the
leader replaced, all at random during faults through the core's API (one change at a
time); every safety check holds, and after the heal a voter of the final configuration
leads with every member following."""

from __future__ import annotations

from chaos.sim.runner import SimParams, run_seed


def test_seeds_with_membership_changes_hold_and_exercise_every_change() -> None:
    totals: dict[str, int] = {}
    # 60 seeds: over 40, promotions were 3 with eager commit notices and 2 once most seeds
    # drew RaftConfig.lazy_commit (the runs' timing, so their random choices, moved; 3
    # promotions was already the bound). Over 60: 6 (2.8 s).
    for seed in range(60):
        r = run_seed(seed, SimParams(ticks=300))
        assert r.ok, f"seed {seed}: {r.prop}: {r.message}\n" + "\n".join(r.trace[-20:])
        for kind, n in r.membership:
            totals[kind] = totals.get(kind, 0) + n
    for kind in ("add", "promote", "remove", "replace_leader"):
        assert totals.get(kind, 0) >= 3, totals  # each kind proposed (and accepted) often
    assert totals["committed"] >= 20, totals  # ...and the changes committed
    assert totals["refused"] >= 1, totals  # one at a time: some were refused meanwhile


def test_membership_changes_can_be_turned_off_and_runs_stay_reproducible() -> None:
    seed = next(s for s in range(20) if run_seed(s, SimParams(ticks=150)).membership)
    off = run_seed(seed, SimParams(ticks=150, membership=False, digest=True))
    assert off.ok and off.membership == ()
    on = run_seed(seed, SimParams(ticks=150, digest=True))
    assert on.ok and on.membership and on.digest != off.digest
    assert run_seed(seed, SimParams(ticks=150, digest=True)) == on
