"""A failing script that called FLUSHALL is undone to the state it found: the keyspace the
first FLUSHALL dropped is put back (its maps, not a copy), whatever followed it."""

from __future__ import annotations

import tracemalloc

import pytest

from raftkv.kv import KVStateMachine, encode_entry

T0 = 1_700_000_000_000
BODIES = [
    b"redis.call('SET', 'a', 'x'); redis.call('DEL', 'b'); redis.call('FLUSHALL'); "
    b"redis.call('SET', 'c', '1'); redis.call('FLUSHDB'); redis.call('SET', 'b', '2'); "
    b"redis.call('PEXPIRE', 'b', 5); error('no')",
    b"redis.call('DEL', 'a'); redis.call('FLUSHALL', 'bogus'); redis.call('SET', 'c', '1'); "
    b"error('no')",  # a FLUSHALL refused: the keys after it are journaled as before
    b"redis.call('FLUSHALL'); redis.call('SET', 'c', '1'); redis.call('FLUSHALL'); "
    b"redis.call('SET', 'a', '1'); redis.call('DEL', 'a'); error('no')",
]


def _machine(keys: int) -> KVStateMachine:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"MSET", b"a", b"1", b"b", b"2"], T0))
    kv.apply(encode_entry([b"PEXPIRE", b"a", b"50"], T0))
    kv.apply(encode_entry([b"DEL", b"gone"], T0))
    kv.apply(encode_entry([b"SET", b"gone", b"x"], T0))
    kv.apply(encode_entry([b"DEL", b"gone"], T0))  # a deletion index (tomb)
    if keys:
        kv.apply(encode_entry([b"MSET", *[b"k%d" % (i // 2) for i in range(2 * keys)]], T0))
    return kv


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("keys", [0, 12_000])  # 12,000: maps large enough to be retired
def test_a_failing_script_with_flushall_leaves_the_state_it_found(body: bytes,
                                                                  keys: int) -> None:
    kv, twin = _machine(keys), _machine(keys)
    body = b"if ARGV[1] == 'now' then error('no') end " + body  # (one body: one cache)
    assert type(kv.apply(encode_entry([b"EVAL", body, b"0", b"go"], T0))).__name__ == "ErrorReply"
    twin.apply(encode_entry([b"EVAL", body, b"0", b"now"], T0))  # fails at once
    assert kv == twin and kv.digest() == twin.digest()
    for old in kv.retired:  # what the runtime frees (node/apply.py) is no live map
        old.clear()
    kv.retired.clear()
    assert kv == twin
    # The deadline heap came back with the keys: a is expired on time.
    assert kv.expired_keys(T0 + 100, 10) == twin.expired_keys(T0 + 100, 10) != []
    assert len(kv) == keys + 2


def test_publish_in_a_failing_script_copies_nothing() -> None:
    # PUBLISH (a write naming no key) was journaled like FLUSHALL: a copy of the whole
    # state per call, uncharged (200 calls over 20,000 keys: +237 MB).
    kv = _machine(20_000)
    body = b"for i=1,200 do redis.call('PUBLISH', 'c', 'm') end error('x')"
    tracemalloc.start()
    try:
        kv.apply(encode_entry([b"budget", b"1000000", b"EVAL", body, b"0"], T0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert kv.take_published() == []  # the failing script published nothing
