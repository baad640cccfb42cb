"""attack18 (lead50): the stamp clock still falls behind the wall clock under write load.

7fd6f58 keeps the anchor when a stamp equals it, which fixes stamps less than a
millisecond apart in one burst. But a stamp that the rate bound caps (``high`` is
``int(elapsed * 17/16)`` ms past the anchor, and the wall clock read in whole
milliseconds is one more) still re-anchors at that capped value with the monotonic time
of the reading, throwing away the fraction gained since: steady load loses time on
every such stamp. Fake clocks here (no sleeps), 4 s of stamps: at random intervals of
0.3-1.7 ms (~1,000 writes/s) the last stamp is 892 ms behind the wall clock (main: 1,836);
every 1.05 ms, 190 ms; with reads between, 486 ms. A key written then with a TTL expires
that much early on every node, whose reads follow the wall clock: ``raftkv-chaos run
--nemesis kill-leader,partition,pause,one-way --expiring 0.3 --clients 14 --rate 30
--watchers 3 --counters 4 --seed 1819`` on this branch: 1 of 8 keys not linearizable
(``write('k6', 6839) ttl 0.331s ok [58.935, 58.939]``, ``read('k6') = None`` on n1 at
59.140, then ``read('k6') = 6839`` on n3 at 59.152); on main 7 of 8.
"""

from __future__ import annotations

import random

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.clock import StampClock

T0 = 1_700_000_000.0


class Clocks:
    def __init__(self) -> None:
        self.t = 0.0

    def wall(self) -> float:
        return T0 + self.t

    def mono(self) -> float:
        return 1000.0 + self.t


def test_stamps_at_a_steady_write_rate_keep_up_with_the_wall_clock() -> None:
    clocks = Clocks()
    leader = StampClock(clocks.wall, clocks.mono)
    rng = random.Random(1)
    kv = KVStateMachine()
    while clocks.t < 4.0:
        clocks.t += rng.uniform(0.0003, 0.0017)
        kv.apply(encode_entry([b"SET", b"load", b"x"], leader.stamp()))
    kv.apply(encode_entry([b"SET", b"k", b"v", b"PX", b"500"], leader.stamp()))
    follower = StampClock(clocks.wall, clocks.mono)  # a node that only reads
    follower.observe(kv.now)
    clocks.t += 0.1  # 100 ms after the SET
    assert kv.read([b"GET", b"k"], follower.now()) == b"v"
    assert int(clocks.wall() * 1000) - kv.now <= 150  # (the last stamp: 100 ms ago)
