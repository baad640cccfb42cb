"""Attacker round 4: glob matching inside a script is charged for the work it does.

A script's ``redis.call('KEYS', pattern)`` and ``redis.call('SCAN', c, 'MATCH', pattern)``
run on the apply loop of every replica, unsliced. A pattern with ``?``, ``[`` or ``\\``
runs the Python port of Redis's matcher, about 0.5 us per byte of each key it walks, but
the bridge charged KEYS 300 units per key and SCAN 50, whatever the key's length. With one
8 MiB key, ``redis.call('KEYS', '?*x')`` took 3.7 s of CPU for 1,400 units; a loop of
7,000 of them fits the 10M budget and holds every replica's apply loop for about 7 hours
(and again on every restart: the entry is in the log). Expected: the matcher's work is
charged, so such a script ends at the budget, every replica alike.

The matcher is linear now (pscost: segments found in C, ``?*x`` costs little), but a
pattern of many sets still costs about the key's length times its sets, counted in units of
about one old step: ``*[bc][bc]...*a`` (16 sets) over the 2 MiB key counts ~2.1M, and the
script is charged for them. The assertions are on the outcome, not on time.
"""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.scripts import BUDGET_ERROR, INSTRUCTION_BUDGET
from wire.reply import ErrorReply

T = 1_700_000_000_000
LONG_KEY = b"a" * (2 * 1024 * 1024)
SETS = b"*" + b"[bc]" * 16 + b"*a"  # each set searched along the whole key
RANGES = b"*" + b"[b-c]" * 16 + b"*a"


def machine_with_long_key() -> KVStateMachine:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", LONG_KEY, b"v"], T))
    kv.apply(encode_entry([b"MSET", b"user:1", b"x", b"user:2", b"y", b"other", b"z"], T))
    return kv


def ev(kv: KVStateMachine, body: bytes, *argv: bytes) -> object:
    return kv.apply(encode_entry([b"EVAL", body, b"0", *argv], T))


KEYS_LOOP = b"local n = 0 for i = 1, 3 do n = n + #redis.call('KEYS', ARGV[1]) end return n"
SCAN_LOOP = (b"local n = 0 for i = 1, 3 do "
             b"n = n + #redis.call('SCAN', '0', 'MATCH', ARGV[1], 'COUNT', '100')[2] end "
             b"return n")


def test_keys_with_a_slow_pattern_over_a_long_key_ends_at_the_budget() -> None:
    """Three KEYS ?*x over a 2 MiB key: ~6 million steps of the old matcher, ~3 s of apply,
    were charged 4,200 units (0.04 % of the budget); three of SETS count ~6.3M units now."""
    kv = machine_with_long_key()
    assert ev(kv, KEYS_LOOP, SETS) == ErrorReply(BUDGET_ERROR)


def test_scan_match_with_a_slow_pattern_over_a_long_key_ends_at_the_budget() -> None:
    kv = machine_with_long_key()
    assert ev(kv, SCAN_LOOP, RANGES) == ErrorReply(BUDGET_ERROR)


def test_the_same_scripts_with_ordinary_patterns_still_answer() -> None:
    """The charge follows the matcher's work: short keys and literal-and-star patterns
    (matched in C) stay cheap, and the answers are unchanged."""
    kv = machine_with_long_key()
    assert ev(kv, KEYS_LOOP, b"user:?") == 6
    assert ev(kv, KEYS_LOOP, b"*x") == 0  # C-level path: the long key costs little
    assert ev(kv, b"return redis.call('KEYS', ARGV[1])", b"user:[12]") == [b"user:1", b"user:2"]
    assert ev(kv, SCAN_LOOP, b"user:?") == 6
    assert ev(kv, SCAN_LOOP, b"*") == 12
    assert kv._scripting.last_cost < INSTRUCTION_BUDGET // 10
