"""attack19 (clockfix): a new leader whose wall clock is behind the cluster's time by more
than AGREE_MS issues the same stamp over and over until its wall clock catches up.

``observe`` raises the floor (``_last``) to the predecessor's stamps but, being far off,
does not anchor there. With ``stamp`` no longer re-anchoring, every reading of this node's
(self-consistent) wall clock is within the rate bound, re-anchors at the wall clock, and
``max(wall, last)`` answers the floor again: the clock stands still for the whole gap
(5 s here), breaking the module's rate bound (at least 1 - 1/SLEW of monotonic time), and
a key with ``PX 1000`` set just before the leader change stays visible ~5 s. On main the
stamp re-anchored at the floor, so the stamps moved on from it (900 ms in
this 1 s: 9 of every 10 ms, the truncation attack18 found; the rule asks >= 937, the test
>= 838: a millisecond of rounding per stamp allowed).
"""

from __future__ import annotations

from raftkv.kv.clock import SLEW, StampClock

T0 = 1_700_000_000.0


def test_new_leader_behind_the_floor_keeps_stamping_forward() -> None:
    wall, mono = [T0], [100.0]
    clock = StampClock(lambda: wall[0], lambda: mono[0])
    # The predecessor (its clock 5 s ahead) applied stamps we now observe: far off ours.
    floor = int(T0 * 1000) + 5000
    clock.observe(floor)
    first = clock.stamp()
    assert first == floor
    stamps = []
    for _ in range(100):  # one write every 10 ms for 1 s, as the new leader
        wall[0] += 0.010
        mono[0] += 0.010
        stamps.append(clock.stamp())
    elapsed_ms = 1000
    # The rate bound: the clock moves at least (1 - 1/SLEW) as fast as monotonic time
    # (give or take a millisecond of rounding per stamp: this is about standing still).
    assert stamps[-1] - first >= elapsed_ms - elapsed_ms // SLEW - len(stamps), stamps[-5:]


def test_stamps_keep_moving_after_a_forward_step_is_undone() -> None:
    """The same stall on one leader, no leader change: its wall clock steps an hour ahead
    (stamps run 17/16 fast, 10 s -> 625 ms ahead), then NTP steps it back. Every reading is
    now within the bound from the old anchor, so the clock re-anchors at the wall clock
    and answers the floor, unchanged, until the wall clock catches up 625 ms later (main:
    the stamps go on at >= 15/16 speed from the floor)."""
    wall, mono = [T0], [100.0]
    clock = StampClock(lambda: wall[0], lambda: mono[0])
    clock.stamp()
    wall[0] += 3600
    for _ in range(1000):  # 10 s of writes, one every 10 ms
        wall[0] += 0.010
        mono[0] += 0.010
        clock.stamp()
    wall[0] -= 3600  # corrected
    ahead = clock.stamp()
    assert ahead - int(wall[0] * 1000) > 500  # the stamps ran fast meanwhile
    stamps = []
    for _ in range(40):  # 400 ms of writes
        wall[0] += 0.010
        mono[0] += 0.010
        stamps.append(clock.stamp())
    assert stamps[-1] - ahead >= 400 - 400 // SLEW - len(stamps), (ahead, stamps[-5:])
