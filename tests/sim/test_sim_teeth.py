"""The simulator has teeth: each deliberate core bug (RaftConfig.bugs) is caught quickly.

For every test-only bug switch, seeds are run from 0 until one fails; the failure must be a
*property* violation (not a crash of the core), it must come within the limit, the same
seed must fail the same way again (the reproducer works), and the same seed without the bug
must hold (the violation is the bug's doing, not the simulator's).

Twice: with every check (the first broken Raft *rule* is usually what fires: a vote sent
before it is durable, a commit onto an earlier term's entry, an ack to a stale leader), and
with the outcome checks only (``SimParams(rules=False)``), which shows the fault schedule
actually drives each bug to a visible failure: two leaders in a term, a committed entry
lost (Figure 8 included), a stale read, a wedged follower.
"""

from __future__ import annotations

import pytest

from chaos.sim.runner import SimParams, run_seed, run_seeds
from raftkv.raft.config import BUGS

LIMIT = 200  # seeds, with every check on
# Seeds, outcome checks only. The rarest outcomes (Figure 8's lost commit, two leaders from a
# forgotten vote) come about once in 300-400 seeds: measured 2-3 in 800 seeds for each, before
# and after a change to the core's probing moved the first from seed 24/154 to 555/708. A
# limit of 1500 misses such a rate with probability under 1%.
OUTCOME_LIMIT = 1500

LOST_COMMIT = {"Leader Completeness", "commit safety", "State Machine Safety", "log truncation"}

# Which properties each bug may legitimately break (the first check to notice wins).
EXPECTED = {
    "vote_without_log_check": LOST_COMMIT | {"linearizable read"},
    "commit_previous_term": LOST_COMMIT | {"commit rule"},
    "read_without_quorum": {"linearizable read"},
    "skip_persist_vote": {"persistence", "vote safety", "Election Safety"},
    "truncate_matching_suffix": LOST_COMMIT,
    "no_term_check_on_append": LOST_COMMIT | {"append acknowledgement", "log order"},
}

OUTCOMES = {
    "vote_without_log_check": LOST_COMMIT | {"linearizable read"},
    "commit_previous_term": LOST_COMMIT,
    "read_without_quorum": {"linearizable read"},
    "skip_persist_vote": {"Election Safety"},
    "truncate_matching_suffix": LOST_COMMIT | {"liveness", "core safety check"},
    "no_term_check_on_append": LOST_COMMIT | {"log order", "core safety check"},
}


def first_failure(params: SimParams, limit: int):
    for found in run_seeds(range(limit), params, jobs=2):  # in seed order
        if not found.ok:
            return found
    pytest.fail(f"{sorted(params.bugs)}: no violation in {limit} seeds")


def check_caught(bug: str, params: SimParams, limit: int, allowed: set[str]) -> None:
    found = first_failure(params, limit)
    assert found.prop in allowed, f"seed {found.seed}: {found.prop}: {found.message}"
    assert run_seed(found.seed, params) == found
    assert run_seed(found.seed, SimParams(rules=params.rules)).ok


def test_every_bug_switch_has_a_test() -> None:
    assert set(EXPECTED) == set(OUTCOMES) == set(BUGS)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_simulator_catches(bug: str) -> None:
    check_caught(bug, SimParams(bugs=frozenset({bug})), LIMIT, EXPECTED[bug])


# The work is bounded by the seed limit, not by time: on a machine at load 10 the rarest
# outcome's search took over the suite's default 120 s (a CI run under load, 06:29 UTC).
@pytest.mark.timeout(600)
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_schedule_reaches_the_outcome(bug: str) -> None:
    params = SimParams(bugs=frozenset({bug}), rules=False)
    check_caught(bug, params, OUTCOME_LIMIT, OUTCOMES[bug])
