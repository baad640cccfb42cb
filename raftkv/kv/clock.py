"""The time a node stamps on the entries it proposes as leader, and reads with.

The state machine never reads a clock (raftkv/kv/machine.py); its "now" is the highest
stamp applied. This module decides the stamps, with three rules that keep a bad wall clock
from resurrecting keys or expiring every key at once:

* **Never backwards.** A stamp is never below the last stamp this node issued or saw
  applied (``observe``), so a leader whose wall clock steps back cannot make an expired key
  visible again, and a new leader never undoes its predecessor's time.
* **Bounded rate.** The clock follows the wall clock but moves at most ``1 ± 1/SLEW``
  times as fast as the monotonic clock since the anchor: the wall clock when the process
  started, a stamp it issued, an applied stamp that agreed with its own wall clock within
  ``AGREE_MS`` (anchored at the highest of the two and the current time, never below), or
  the latest reading of its wall clock that was within the bounds. A wall
  clock that jumps an hour ahead makes stamps run 6 % fast until they catch up, instead of
  expiring every key with a TTL below an hour at once; one that jumps back makes them run
  6 % slow.
* **Reads never go back.** ``now()`` never answers less than it answered before: an
  applied stamp that re-anchors the clock may be below a time the rate bound already gave
  out (a node 230 ms behind the leader runs 1/16 slow from each anchor, then re-anchors at
  the next applied stamp, below it), and a read at the lower time could show a key an
  earlier read hid (the simulator's TTL seeds: seed 38, 2 ms back; seed 40, 130 ms).
* **At start, trust the wall clock** (bounded below). A node that has only replayed old
  entries (a restart after downtime) cannot tell downtime from a clock jump; it takes its
  wall clock, as every node does when a cluster starts. (It used to stay unanchored, and
  so trust its wall clock, until its first stamp or agreeing applied stamp: a node whose
  clock jumped an hour ahead before then, once leader, stamped an hour ahead and expired
  every key and session at once; the simulator's TTL seeds found it, seed 11.)

Reads use ``now()`` (never below the applied stamp, see ``KVStateMachine.read``), so a
key whose deadline has passed by this node's clock is hidden here even before the
leader's ``EXPIRED`` entry removes it everywhere.

Pure: the wall and monotonic clocks come in as callables, so the runtime
(``raftkv.node.clock.LeaderClock`` binds them to ``time``) and the deterministic simulator
(``chaos/sim/clocks.py``: per-node skew and jumps on virtual time) run this same code.
"""

from __future__ import annotations

from collections.abc import Callable

SLEW = 16  # stamps gain or lose at most 1/16 of elapsed monotonic time against it
AGREE_MS = 1000  # an applied stamp this close to our wall clock anchors the rate bound


class StampClock:
    """Stamps in milliseconds since the Unix epoch; see the module docstring. ``wall``
    answers seconds since the epoch, ``mono`` seconds since any fixed point."""

    def __init__(self, wall: Callable[[], float], mono: Callable[[], float]) -> None:
        self._wall = wall
        self._mono = mono
        self._last = 0  # the highest stamp issued or observed: the floor
        # The rate bound's reference: the clock's exact value (ms, a float: never rounded,
        # so re-anchoring loses nothing) and the monotonic time (s) it was true at. Kept as
        # a pair: a late observation raises the floor but must not pair itself with an
        # old monotonic time (that would put the clock ahead by the time between).
        self._anchor = (wall() * 1000, mono())
        self._read = 0  # the highest ``now()`` answered: reads never go back

    @property
    def last(self) -> int:
        return self._last

    def observe(self, applied_now: int) -> None:
        """The state machine's now after an apply (any leader's stamps)."""
        if applied_now <= self._last:
            return
        self._last = applied_now
        wall_ms = self._wall() * 1000
        if abs(wall_ms - applied_now) <= AGREE_MS:
            # Anchored at our wall clock, which agrees with the cluster's time: the applied
            # stamp is older than now by the commit and apply latency (tens to hundreds of
            # ms under load), and anchoring there held this node's clock that far behind
            # (the rate bound lets it catch up only at 1/16 speed), so keys stayed visible
            # past their deadline and new stamps came out early (a chaos run with TTLs).
            # Nor below the time the rate bound gives now: a wall clock stepped back a
            # few seconds agrees with a stamp applied late, and anchoring there set the
            # clock back by the step (simulator seed 32: a key visible 1.5 s late).
            self._anchor = (max(wall_ms, applied_now, self.now()), self._mono())
        # (Else: an old entry replayed, or a leader far off our clock: a floor, no anchor.)

    def now(self) -> int:
        """The current time by this node's rules, never below ``last``."""
        return int(self._at(self._wall() * 1000, self._mono()))

    def _at(self, wall_ms: float, now_mono: float) -> float:
        """The clock's exact value (ms) given one reading of each clock, never below the
        floor or a time already answered; a reading within the rate bound anchors it."""
        stamp, mono = self._anchor
        elapsed = max(now_mono - mono, 0.0) * 1000
        low = stamp + elapsed - elapsed / SLEW
        high = stamp + elapsed + elapsed / SLEW
        if low <= wall_ms <= high:
            # A consistent reading: the next ones are bounded from here, so a jump later
            # gains or loses 1/SLEW of the time since this reading, not since the anchor.
            self._anchor = (wall_ms, now_mono)
            t = wall_ms
        else:
            t = min(max(wall_ms, low), high)
        if t < self._last or t < self._read:
            t = max(self._last, self._read)
        self._read = int(t)
        return t

    def stamp(self) -> int:
        """The stamp for an entry proposed now; the clock's value then anchors the rate
        bound and raises the floor."""
        # One reading of each clock (the monotonic one also anchors the stamp): a stamp is
        # taken per proposal, and a third clock read was a measurable share of it.
        # ``_at`` inlined (a proposal each: its call, ``max``, ``min`` and the anchor it
        # set, which the line below replaces anyway, cost ~0.4 us): the same arithmetic in
        # the same order, so the same stamps (tests/kv/test_stamp_inline.py).
        now_mono = self._mono()
        wall_ms = self._wall() * 1000
        stamp, mono = self._anchor
        elapsed = now_mono - mono
        elapsed = (elapsed if elapsed > 0.0 else 0.0) * 1000
        low = stamp + elapsed - elapsed / SLEW
        high = stamp + elapsed + elapsed / SLEW
        t = wall_ms if low <= wall_ms <= high else low if wall_ms < low else high
        last, read = self._last, self._read
        if t < last or t < read:
            t = last if last > read else read
        # Anchored at the exact value: a stamp the bound capped continues from where the
        # bound allowed, and one the floor set (a predecessor's stamps ahead of our wall
        # clock) moves on from the floor at least 1 - 1/SLEW as fast as monotonic time.
        # (Rounded to whole milliseconds, capped stamps lost the fraction each time and
        # fell behind the wall clock under load, so keys with a TTL read as missing early,
        # attack18; anchored only at wall readings, stamps stood still while the floor
        # was above the wall clock, attack19.)
        self._anchor = (t, now_mono)
        self._read = self._last = stamp = int(t)
        return stamp
