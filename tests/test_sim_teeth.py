"""The simulator has teeth: each deliberate core bug (RaftConfig.bugs) is caught quickly.

For every test-only bug switch, seeds are run from 0 until one fails; the failure must be a
*property* violation (not a crash of the core), it must come within ``LIMIT`` seeds, the
same seed must fail the same way again (the reproducer works), and the same seed without
the bug must hold (the violation is the bug's doing, not the simulator's).
"""

from __future__ import annotations

import pytest

from chaos.sim.runner import SimParams, run_seed
from raftkv.raft.config import BUGS

LIMIT = 200

# Which properties each bug may legitimately break (the first check to notice wins).
EXPECTED = {
    "vote_without_log_check": {"leader completeness", "commit safety", "log truncation",
                               "state machine safety", "linearizable read"},
    "commit_previous_term": {"commit rule", "leader completeness", "commit safety",
                             "log truncation", "state machine safety"},
    "read_without_quorum": {"linearizable read"},
    "skip_persist_vote": {"persistence", "vote safety", "election safety"},
    "truncate_matching_suffix": {"log truncation"},
    "no_term_check_on_append": {"append acknowledgement", "log truncation", "log order",
                                "commit safety", "leader completeness", "state machine safety"},
}


def test_every_bug_switch_has_a_test() -> None:
    assert set(EXPECTED) == set(BUGS)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_simulator_catches(bug: str) -> None:
    params = SimParams(bugs=frozenset({bug}))
    for seed in range(LIMIT):
        found = run_seed(seed, params)
        if not found.ok:
            break
    else:
        pytest.fail(f"{bug}: no violation in {LIMIT} seeds")
    assert found.prop in EXPECTED[bug], f"seed {seed}: {found.prop}: {found.message}"
    assert run_seed(seed, params) == found
    assert run_seed(seed, SimParams()).ok
