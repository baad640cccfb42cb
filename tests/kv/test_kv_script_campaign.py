"""A sample of the hostile-script campaign (script_campaign.py): every generated script ends
(its result, the budget error or the memory error) the same way on two replicas, and no
apply takes more than a loose wall-clock bound (the whole campaign's slowest is in the
README; before the rewrite, one such script could hold the apply loop for an hour)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from script_campaign import generate, run_one

pytestmark = pytest.mark.slow

LOOSE_BOUND = 5.0  # seconds of CPU per apply; the campaign's worst is in the README


def test_a_sample_of_hostile_scripts_is_bounded_and_deterministic() -> None:
    rng = random.Random(20261204)
    for _ in range(16):
        body, a, b = generate(rng)
        elapsed, _, cost = run_one(body, a, b)
        assert elapsed < LOOSE_BOUND, body
        assert cost <= 10_000_000  # charged units: never past the budget
