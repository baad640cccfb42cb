"""Every user of the shared glob (raftkv.kv.glob) gets its linear-cost guarantee: the
change feed's ``__raftkv:changes:<glob>`` filter (raftkv.kv.feed.key_filter, one
``Glob.match`` a change), KEYS and SCAN MATCH (tests/kv/test_kv_sliced.py: matched in
slices), Pub/Sub (tests/test_pubsub_cost.py). Counted in the matcher's units via
``Glob.cost``, never timed."""

from __future__ import annotations

import pytest
from glob_reference import port_match

from raftkv.kv.changes import Change
from raftkv.kv.feed import key_filter
from raftkv.kv.glob import STEP, Glob

FEED_GLOBS = [b"user:*", b"user:[0-9]*", b"*:session", b"*?*?b", b"*[ab]?c*", b"u*s*e*r*x"]


def change(key: bytes) -> Change:
    return Change(1, 0, "set", key, b"v", None)


@pytest.mark.parametrize("pattern", FEED_GLOBS)
def test_the_feed_filter_on_a_huge_key_answers_redis_and_costs_linear_work(
        pattern: bytes) -> None:
    glob = Glob(pattern)
    keep = key_filter(glob.match)
    small, large = b"user:" + b"a" * 100_000, b"user:" + b"a" * 1_000_000
    assert keep(change(large)) is keep(change(small)) is port_match(pattern, small[:2000])
    assert keep(change(large + b"xbc")) is glob.match(large + b"xbc")
    costs = [glob.cost(len(small)), glob.cost(len(large))]  # parsed by the matches above
    assert None not in costs
    assert costs[1] <= 10 * costs[0] + 2 * STEP  # type: ignore[operator]


def test_the_feed_filter_keeps_flushall_whatever_the_glob() -> None:
    keep = key_filter(Glob(b"*[ab]?c*").match)
    assert keep(Change(1, 0, "flushall", b"", None, None))
