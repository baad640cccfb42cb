"""Slow writes in the simulator: Readies whose fsync stays in flight while the core keeps
being stepped and sends what ``RaftCore.take_early`` hands out (the runtime's behaviour
since heartbeats stopped waiting behind a big write, issue 12 item 2)."""

from __future__ import annotations

import pytest

from chaos.sim.runner import SimParams, draw_slow_writes, run_seed
from raftkv.raft import RaftCore


def test_seeds_with_slow_writes_hold() -> None:
    for seed in range(6):
        found = run_seed(seed, SimParams(slow_writes=True, ticks=200))
        assert found.ok, f"seed {seed}: {found.prop}: {found.message}\n{found.command}"
        assert "--slow-writes" in found.command or draw_slow_writes(seed)[0]


def test_the_cli_draws_slow_writes_for_about_half_the_seeds() -> None:
    drawn = sum(draw_slow_writes(seed)[0] for seed in range(1000))
    assert 400 < drawn < 600


def test_a_core_that_sends_everything_early_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teeth: were take_early to hand out acks and votes before their fsync, the durability
    checks fire (so the slow-write seeds do exercise what may leave early)."""

    def everything(self: RaftCore) -> list:
        early, self._msgs = self._msgs, []
        return early

    monkeypatch.setattr(RaftCore, "take_early", everything)
    for seed in range(40):
        found = run_seed(seed, SimParams(slow_writes=True, ticks=200))
        if not found.ok:
            assert found.prop == "persistence", f"seed {seed}: {found.prop}: {found.message}"
            return
    pytest.fail("no seed caught acknowledgements sent before their fsync")
