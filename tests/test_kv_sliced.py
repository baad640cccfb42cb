"""raftkv.kv.sliced and the machine's large-map paths: KEYS and the first SCAN done in
slices give the answers ``read`` gives, at the right point in time; FLUSHALL hands a large
map to the runtime instead of freeing it at once; SCAN's COUNT is capped."""

from __future__ import annotations

import random

import pytest

from raftkv.kv import KVStateMachine, encode_command
from raftkv.kv.machine import LARGE_MAP, SCAN_MAX_COUNT
from raftkv.kv.sliced import BUDGET, KeysJob, SlicedRead
from wire.reply import OK


def apply(kv: KVStateMachine, *args: bytes) -> object:
    return kv.apply(encode_command(list(args)))


def loaded(n: int, seed: int = 1) -> KVStateMachine:
    rng = random.Random(seed)
    kv = KVStateMachine()
    keys = {rng.randbytes(rng.randint(0, 10)) for _ in range(n)} | {b"abc", b"a", b""}
    pairs = [x for k in keys for x in (k, b"v")]
    for i in range(0, len(pairs), 2000):
        assert apply(kv, b"MSET", *pairs[i : i + 2000]) is OK
    return kv


def steps_to_finish(job: SlicedRead) -> int:
    steps = 1
    while not job.step():
        steps += 1
    return steps


@pytest.mark.parametrize("n", [0, 5, 4096, 50_000])
@pytest.mark.parametrize("pattern", [b"*", b"a*", b"*[a-f]?", b"?", b"nomatch"])
def test_keys_job_answers_what_read_answers(n: int, pattern: bytes) -> None:
    kv = loaded(n)
    job = kv.read_deferred([b"KEYS", pattern])
    assert isinstance(job, KeysJob)
    steps_to_finish(job)
    assert job.result == kv.read([b"KEYS", pattern])


def test_keys_job_is_a_point_in_time_answer_and_works_in_slices() -> None:
    kv = loaded(60_000)
    expected = kv.read([b"KEYS", b"*"])
    job = kv.read_deferred([b"KEYS", b"*"])
    assert job.step() is False  # a large map takes many slices
    apply(kv, b"SET", b"\xffnew", b"v")  # applied while the job runs: not in its answer
    apply(kv, b"DEL", b"abc")
    steps = steps_to_finish(job)
    assert job.result == expected
    # Slices do bounded work: at least one per BUDGET units (each key costs >= 1).
    assert steps >= len(expected) // BUDGET


def test_first_scan_of_a_large_map_is_built_in_slices_and_sees_keys_added_meanwhile() -> None:
    kv = loaded(LARGE_MAP * 3)
    reference = loaded(LARGE_MAP * 3)
    job = kv.read_deferred([b"SCAN", b"0", b"COUNT", b"1000000"])
    assert isinstance(job, SlicedRead)
    assert job.step() is False
    apply(kv, b"SET", b"added-meanwhile", b"v")
    apply(reference, b"SET", b"added-meanwhile", b"v")
    steps_to_finish(job)
    # Answered from the state when it finished: the same as a fresh machine's answer.
    assert job.result == reference.read([b"SCAN", b"0", b"COUNT", b"1000000"])
    # The order is kept: a full SCAN through the ordinary path returns every key once.
    assert full_scan(kv) == kv.read([b"KEYS", b"*"])


def full_scan(kv: KVStateMachine) -> list[bytes]:
    cursor, seen = b"0", []
    while True:
        cursor, keys = kv.read([b"SCAN", cursor, b"COUNT", b"5000"])
        seen += keys
        if cursor == b"0":
            return sorted(seen)


def test_a_direct_read_during_the_build_finishes_it_first() -> None:
    kv = loaded(LARGE_MAP * 2)
    job = kv.read_deferred([b"SCAN", b"0"])
    assert job.step() is False
    assert full_scan(kv) == kv.read([b"KEYS", b"*"])  # e.g. the simulator's path


def test_scan_count_is_capped() -> None:
    kv = loaded(SCAN_MAX_COUNT * 2)
    cursor, keys = kv.read([b"SCAN", b"0", b"COUNT", b"100000000"])
    assert cursor != b"0"
    assert SCAN_MAX_COUNT <= len(keys) < SCAN_MAX_COUNT + 10  # (hash ties stay together)


def test_flushall_hands_a_large_map_to_the_runtime_and_small_ones_not() -> None:
    kv = loaded(LARGE_MAP * 2)
    assert apply(kv, b"FLUSHALL") is OK
    assert len(kv) == 0 and len(kv.retired) == 1 and len(kv.retired[0]) >= LARGE_MAP
    kv.retired.clear()
    kv = loaded(LARGE_MAP * 2)
    kv.read([b"SCAN", b"0"])  # a SCAN index of as many entries goes too
    assert apply(kv, b"FLUSHALL") is OK
    assert [type(x) for x in kv.retired] == [dict, list] and kv.read([b"SCAN", b"0"]) == [
        b"0", []]
    kv.retired.clear()
    apply(kv, b"SET", b"k", b"v")
    assert apply(kv, b"FLUSHALL") is OK
    assert len(kv) == 0 and kv.retired == []


def test_mset_without_a_scan_index_matches_the_slow_path() -> None:
    fast, slow = KVStateMachine(), KVStateMachine()
    slow.read([b"SCAN", b"0"])  # builds the index: MSET takes the per-key path
    args = [b"MSET", b"a", b"1", b"b", b"2", b"a", b"3"]
    assert apply(fast, *args) is OK and apply(slow, *args) is OK
    assert fast == slow and fast.read([b"MGET", b"a", b"b", b"c"]) == [b"3", b"2", None]
