"""The runtime's refused-port hint in the simulator: after a crash, some survivors are told
the node is gone (``RaftCore.leader_unreachable``), each after its own delay of up to 8
ticks, as dial retries spread the sightings in a real cluster; a hint that arrives after a
quick restart is a false alarm. The hint moves timers only, so every seed must hold."""

from __future__ import annotations

import pytest

from chaos.sim.runner import SimParams, draw_gone_hints, run_seed
from raftkv.raft import RaftCore


def test_seeds_with_gone_hints_hold_and_hints_are_given() -> None:
    given = 0
    for seed in range(8):
        found = run_seed(seed, SimParams(gone_hints=True, ticks=300))
        assert found.ok, f"seed {seed}: {found.prop}: {found.message}\n{found.command}"
        assert "--gone-hints" in found.command or draw_gone_hints(seed)[0]
        given += dict(found.faults).get("gone_hint", 0)
    assert given > 0


def test_no_hint_is_given_without_the_flag() -> None:
    found = run_seed(0, SimParams(gone_hints=False, ticks=300))
    assert "gone_hint" not in dict(found.faults)


def test_the_cli_draws_gone_hints_for_about_half_the_seeds() -> None:
    drawn = sum(draw_gone_hints(seed)[0] for seed in range(1000))
    assert 400 < drawn < 600


def test_a_hint_that_forgets_the_vote_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teeth: were the hint to touch more than timers (here: forget this term's vote), the
    safety checks fire, so the hinted seeds do reach elections while the hint matters."""
    hint = RaftCore.leader_unreachable

    def forgetful(self: RaftCore, from_id: int) -> None:
        hint(self, from_id)
        self._vote = 0

    monkeypatch.setattr(RaftCore, "leader_unreachable", forgetful)
    for seed in range(60):
        found = run_seed(seed, SimParams(gone_hints=True, ticks=300))
        if not found.ok:
            return
    pytest.fail("no seed caught a hint that forgets the vote")
