"""attack24b: differential fuzz of the change feed's three bounds (raftkv.kv.feed).

A primary feed takes random entries (single changes, several changes, Bulks, empty
entries); replicas made from its ``state()`` at random points (as an installed snapshot:
the Tail as is; as a restart: a list of Changes) take the same entries after. Every step
each feed must equal a per-change model (drop the oldest while an index, count or bytes
bound wants it), and agree on floor, length, bytes and ``check``.

    python tests/attack/fuzz_feed_bounds.py [iterations] [seed]
"""

from __future__ import annotations

import random
import sys

from raftkv.kv.changes import CHANGE_OVERHEAD, Bulk, Change
from raftkv.kv.feed import ChangeFeed, Compacted, FeedState


def model_keep(changes: list[Change], last_index: int, re: int, rb: int) -> int:
    """How many of the oldest ``changes`` go."""
    sizes = [CHANGE_OVERHEAD + len(c.key) + len(c.value or b"") for c in changes]
    total = sum(sizes)
    n = len(changes)
    drop = 0
    while drop < n and (changes[drop].index <= last_index - re or n - drop > re
                        or total > rb):
        total -= sizes[drop]
        drop += 1
    return drop


def entry(rng: random.Random, index: int) -> list:
    kind = rng.random()
    if kind < 0.15:
        return []
    if kind < 0.45:  # an MSET's Bulk, maybe between single changes (a transaction)
        before = rng.choice([0, 0, rng.randint(1, 5)])
        out: list = [Change(index, p, "set", b"a%d" % p, b"x", None) for p in range(before)]
        n = rng.randint(64, 200)
        out.append(Bulk(index, before, "mset", [b"k%d" % i for i in range(n)],
                        [b"v" * rng.randint(0, 20) for _ in range(n)]))
        after = rng.choice([0, rng.randint(1, 5)])
        out += [Change(index, before + n + p, "set", b"b%d" % p, b"y", None)
                for p in range(after)]
        return out
    n = rng.randint(1, 40)
    return [Change(index, p, "set", b"k%d" % rng.randint(0, 9), b"v" * rng.randint(0, 30),
                   None) for p in range(n)]


def run(seed: int) -> None:
    rng = random.Random(seed)
    re = rng.choice([1, 2, 3, 5, 10, 50, 300])
    rb = rng.choice([100, 300, 1000, 5000, 10**6])
    primary = ChangeFeed(re, rb)
    replicas: list[ChangeFeed] = []
    every: list[Change] = []
    dropped_floor = (0, 0)
    for index in range(1, rng.randint(5, 120)):
        records = entry(rng, index)
        for r in records:
            every.extend(r.changes(0, len(r)) if type(r) is Bulk else [r])
        for feed in (primary, *replicas):
            feed.append(index, list(records))
        drop = model_keep(every, index, re, rb)
        if drop:
            dropped_floor = (every[drop - 1].index, every[drop - 1].position)
        every = every[drop:]
        for who, feed in enumerate((primary, *replicas)):
            got = list(feed.state().changes)
            assert got == every, (seed, index, who, len(got), len(every))
            assert len(feed) == len(every), (seed, index, who)
            want_bytes = sum(CHANGE_OVERHEAD + len(c.key) + len(c.value or b"") for c in every)
            assert feed.bytes == want_bytes, (seed, index, who, feed.bytes, want_bytes)
            if who == 0 or feed.floor != (index, 2**63 - 1):
                assert feed.known_floor >= dropped_floor, (seed, index, who)
            for _ in range(3):
                probe = (rng.randint(0, index + 1), rng.randint(-1, 210))
                try:
                    feed.check(probe)
                    ok = True
                except Compacted:
                    ok = False
                if who == 0:
                    assert ok == (probe >= dropped_floor), (seed, index, probe, dropped_floor)
                    if ok:
                        want = [c for c in every if (c.index, c.position) > probe][:7]
                        assert feed.after(probe, 7) == want, (seed, index, probe)
        if rng.random() < 0.1:
            st = primary.state()
            replica = ChangeFeed(re, rb)
            if rng.random() < 0.5:
                replica.replace(st)
            else:
                replica.replace(FeedState(st.floor, list(st.changes)))
            replica.restored_at(primary.last_index)
            replicas.append(replica)
        for a in (primary, *replicas):
            assert a.floor == primary.floor, (seed, index, a.floor, primary.floor)


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed0 = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    for seed in range(seed0, seed0 + iterations):
        run(seed)
    print(f"{iterations} seeds held")


if __name__ == "__main__":
    main()
