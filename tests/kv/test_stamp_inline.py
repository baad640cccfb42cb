"""``StampClock.stamp`` inlines ``_at``: it must give the very stamps, and leave the very
state, that ``_at`` followed by the anchoring gives, whatever the clocks do (steps back
and ahead, a stalled monotonic clock, floors from applied stamps)."""

from __future__ import annotations

import random

from raftkv.kv.clock import StampClock


class _Script:
    """A wall and a monotonic clock driven by the test: each reading is the current one."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 100.0

    def read_wall(self) -> float:
        return self.wall

    def read_mono(self) -> float:
        return self.mono


def _reference_stamp(clock: StampClock) -> int:
    """``stamp`` as it was written before the inlining: ``_at``, then the anchor."""
    now_mono = clock._mono()
    t = clock._at(clock._wall() * 1000, now_mono)
    clock._anchor = (t, now_mono)
    clock._last = stamp = int(t)
    return stamp


def _state(clock: StampClock) -> tuple[object, ...]:
    return clock._anchor, clock._last, clock._read


def test_stamp_matches_at_then_anchor_under_any_clock_behaviour() -> None:
    rng = random.Random(7)
    for _ in range(200):
        script = _Script()
        fast = StampClock(script.read_wall, script.read_mono)
        slow = StampClock(script.read_wall, script.read_mono)
        for _ in range(300):
            step = rng.random()
            if step < 0.5:
                script.mono += rng.choice([0.0, 1e-6, 0.001, 0.3, 5.0])
                script.wall += rng.choice([0.0, 1e-6, 0.001, 0.3, 5.0, -2.0, 3600.0, -3600.0])
            elif step < 0.6:
                applied = int(script.wall * 1000) + rng.randint(-5000, 5000)
                fast.observe(applied)
                slow.observe(applied)
            elif step < 0.7:
                assert fast.now() == slow.now()
            else:
                assert fast.stamp() == _reference_stamp(slow)
            assert _state(fast) == _state(slow)
