"""raftkv.kv.sliced and the machine's large-map paths: KEYS and the first SCAN done in
slices give the answers ``read`` gives, at the right point in time; FLUSHALL hands a large
map to the runtime instead of freeing it at once; SCAN's COUNT is capped."""

from __future__ import annotations

import random

import pytest

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.changes import Bulk
from raftkv.kv.glob import stringmatch
from raftkv.kv.machine import LARGE_MAP, SCAN_MAX_COUNT
from raftkv.kv.sliced import BUDGET, KeysJob, SlicedRead
from raftkv.kv.state import KVState
from wire.reply import OK


def apply(kv: KVStateMachine, *args: bytes) -> object:
    return kv.apply(encode_entry(list(args)))


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


def test_flushall_hands_large_maps_to_the_runtime_and_small_ones_not() -> None:
    kv = loaded(LARGE_MAP * 2)
    n = len(kv)
    assert apply(kv, b"FLUSHALL") is OK
    # The values and their WATCH versions (one per key); no deadlines, no SCAN index.
    assert len(kv) == 0 and [(type(x), len(x)) for x in kv.retired] == [(dict, n), (dict, n)]
    kv.retired.clear()
    kv = loaded(LARGE_MAP * 2)
    kv.read([b"SCAN", b"0"])  # a SCAN index of as many entries goes too
    assert apply(kv, b"FLUSHALL") is OK
    assert [type(x) for x in kv.retired] == [dict, dict, list] and kv.read([b"SCAN", b"0"]) == [
        b"0", []]
    kv.retired.clear()
    apply(kv, b"SET", b"k", b"v")
    assert apply(kv, b"FLUSHALL") is OK
    assert len(kv) == 0 and kv.retired == []


def test_flushall_of_keys_with_deadlines_retires_and_forgets_them_all() -> None:
    kv = with_deadlines(LARGE_MAP * 2)
    n, expiring = len(kv), kv.expiring
    assert expiring >= LARGE_MAP
    watched = kv.read([b"WATCH", b"abc", b"never-set"])
    assert stamped(kv, T0, b"FLUSHDB") is OK
    # values, deadlines, versions, the deadline heap
    assert [(type(x), len(x)) for x in kv.retired] == [
        (dict, n), (dict, expiring), (dict, n), (list, expiring)]
    assert kv.expiring == 0 and kv.expired_keys(T0 + 10**9, 10) == []
    assert kv.read([b"WATCH", b"abc", b"never-set"]) != watched  # both versions moved on
    assert stamped(kv, T0, b"SET", b"abc", b"v") is OK
    assert kv.deadline(b"abc") is None and kv.read([b"KEYS", b"*"], T0 + 10**9) == [b"abc"]


def test_replace_takes_a_kvstate_and_retires_the_old_large_maps() -> None:
    kv = with_deadlines(LARGE_MAP * 2)
    old = len(kv)
    kv.replace(KVState(data={b"k": b"v"}, expires={b"k": T0 + 5}, now=T0, seq=7))
    assert [len(x) for x in kv.retired][:1] == [old] and len(kv.retired) == 4
    assert kv.read([b"MGET", b"k"]) == [b"v"] and kv.read([b"MGET", b"k"], T0 + 5) == [None]
    assert kv.expired_keys(T0 + 5, 10) == [b"k"]  # the heap was rebuilt from the state


T0 = 1_700_000_000_000


def stamped(kv: KVStateMachine, stamp: int, *args: bytes) -> object:
    return kv.apply(encode_entry(list(args), stamp))


def with_deadlines(n: int) -> KVStateMachine:
    """``loaded(n)`` where every third key (in byte order) expires at T0 + 100, every
    third one after it at T0 + 200, and ``abc`` never."""
    kv = loaded(n)
    for i, key in enumerate(kv.read([b"KEYS", b"*"])):
        if key != b"abc" and i % 3 < 2:
            deadline = T0 + 100 * (i % 3 + 1)
            assert stamped(kv, T0, b"PEXPIREAT", key, str(deadline).encode()) == 1
    return kv


def alive_at(kv: KVStateMachine, t: int) -> list[bytes]:
    return sorted(k for k in kv.state_copy() if (kv.deadline(k) or t + 1) > t)


def test_sliced_keys_hides_keys_expired_at_the_reads_time() -> None:
    kv = with_deadlines(LARGE_MAP * 2)
    assert len(kv) >= LARGE_MAP
    for t, gone in [(T0 + 99, 0), (T0 + 100, 1), (T0 + 200, 2), (None, 0)]:
        expected = alive_at(kv, T0 if t is None else t)
        assert len(expected) < len(kv) or not gone
        for pattern in (b"*", b"a*", b"*[a-f]?"):
            job = kv.read_deferred([b"KEYS", pattern], t)
            assert isinstance(job, KeysJob) and job.step() is False  # many slices
            steps_to_finish(job)
            # (KEYS * is every key, the empty one too, as in Redis)
            assert job.result == [k for k in expected if pattern == b"*" or stringmatch(pattern, k)]
            assert job.result == kv.read([b"KEYS", pattern], t)
    assert b"abc" in kv.read([b"KEYS", b"*"], T0 + 10**9)


def test_sliced_keys_uses_the_deadlines_of_its_point_in_time() -> None:
    kv = with_deadlines(LARGE_MAP * 2)
    t = T0 + 150
    expected = alive_at(kv, t)
    job = kv.read_deferred([b"KEYS", b"*"], t)
    assert job.step() is False
    # Applied while the job runs: the active expiry deletes the keys past T0 + 100, a key
    # with a later deadline loses it, an expired one would come back: none of it shows.
    doomed = kv.expired_keys(t, 10**6)
    assert doomed and stamped(kv, t, b"EXPIRED", *doomed) == len(doomed)
    later = next(k for k in expected if kv.deadline(k) is not None)
    assert stamped(kv, t, b"PERSIST", later) == 1
    assert stamped(kv, t, b"SET", doomed[0], b"back") is OK
    steps_to_finish(job)
    assert job.result == expected


def test_scan_hides_expired_keys_sliced_or_not_with_type_and_a_capped_count() -> None:
    kv = with_deadlines(LARGE_MAP * 2)
    t = T0 + 100
    expected = alive_at(kv, t)
    assert len(expected) < len(kv)
    job = kv.read_deferred([b"SCAN", b"0", b"COUNT", b"1000000000", b"TYPE", b"string"], t)
    assert isinstance(job, SlicedRead) and job.step() is False  # the first SCAN: built
    steps_to_finish(job)
    cursor, first = job.result
    assert cursor != b"0" and 0 < len(first) < SCAN_MAX_COUNT + 10  # capped, then filtered
    seen = list(first)
    while cursor != b"0":
        cursor, keys = kv.read_deferred(
            [b"SCAN", cursor, b"COUNT", b"1000000000", b"TYPE", b"string"], t)
        seen += keys
    assert sorted(seen) == expected
    assert kv.read([b"SCAN", b"0", b"COUNT", b"100000000", b"TYPE", b"hash"], t)[1] == []


def test_mget_hides_expired_keys() -> None:
    kv = KVStateMachine()
    assert stamped(kv, T0, b"MSET", b"a", b"1", b"b", b"2") is OK
    assert kv.read([b"MGET", b"a", b"b", b"c"], T0 + 10) == [b"1", b"2", None]  # fast path
    assert stamped(kv, T0, b"PEXPIRE", b"a", b"10") == 1
    assert kv.read([b"MGET", b"a", b"b", b"c"], T0 + 9) == [b"1", b"2", None]
    assert kv.read([b"MGET", b"a", b"b", b"c"], T0 + 10) == [None, b"2", None]


def test_mset_fast_path_drops_deadlines_and_sets_versions_as_the_slow_path() -> None:
    fast, slow = KVStateMachine(), KVStateMachine()  # slow: once the per-key path
    slow.read([b"SCAN", b"0"])  # builds the index, which MSET keeps up to date
    for kv in (fast, slow):
        assert stamped(kv, T0, b"SET", b"a", b"0", b"PX", b"50") is OK
        assert stamped(kv, T0, b"SET", b"keep", b"0", b"PX", b"50") is OK
        assert stamped(kv, T0 + 1, b"MSET", b"a", b"1", b"b", b"2") is OK
    assert fast == slow  # values, deadlines, versions
    assert fast.deadline(b"a") is None and fast.deadline(b"keep") == T0 + 50
    assert fast.read([b"MGET", b"a", b"keep"], T0 + 50) == [b"1", None]


def test_randomkey_during_a_sliced_build_answers_what_a_built_order_answers() -> None:
    kv, reference = loaded(LARGE_MAP * 2), loaded(LARGE_MAP * 2)
    reference.read([b"SCAN", b"0"])
    job = kv.read_deferred([b"SCAN", b"0"])
    assert job.step() is False
    script = [b"EVAL", b"return redis.call('RANDOMKEY')", b"0"]  # runs on apply
    assert stamped(kv, T0, *script) == stamped(reference, T0, *script) is not None


def test_mset_without_a_scan_index_matches_the_slow_path() -> None:
    fast, slow = KVStateMachine(), KVStateMachine()  # slow: once the per-key path
    slow.read([b"SCAN", b"0"])  # builds the index, which MSET keeps up to date
    args = [b"MSET", b"a", b"1", b"b", b"2", b"a", b"3"]
    assert apply(fast, *args) is OK and apply(slow, *args) is OK
    assert fast == slow and fast.read([b"MGET", b"a", b"b", b"c"]) == [b"3", b"2", None]


def test_an_mset_after_a_scan_is_recorded_as_one_bulk_as_without_one() -> None:
    """Once a SCAN had built its index, an MSET took the key-by-key path (a change record
    per key: 590 ms against 99 ms for 100,000 keys, an election in test_heavy_commands)."""
    kv = KVStateMachine()
    kv.read([b"SCAN", b"0"])
    pairs = [x for i in range(200) for x in (b"k%03d" % i, b"v")]
    assert apply(kv, b"MSET", *pairs) is OK
    assert [type(r) for r in kv.last_records] == [Bulk]
    assert sorted(kv.read([b"SCAN", b"0", b"COUNT", b"1000"])[1]) == pairs[::2]


def test_a_scan_after_a_large_mset_merges_its_keys_into_the_index_in_slices() -> None:
    """The MSET's new keys wait for the next SCAN; merging 100,000 into a 1M-key index at
    once held the loop 1.2 s. Now that SCAN merges them in slices, and the scan that
    follows returns every key once, those written while it was merged too."""
    kv = loaded(LARGE_MAP * 2)
    job = kv.read_deferred([b"SCAN", b"0"])
    steps_to_finish(job)
    old = set(kv.read([b"KEYS", b"*"]))
    assert apply(kv, b"MSET", *(x for i in range(LARGE_MAP) for x in (b"m%05d" % i, b"w"))) is OK
    assert apply(kv, b"DEL", b"m00000", b"abc") == 2
    job = kv.read_deferred([b"SCAN", b"0", b"COUNT", b"100"])
    assert isinstance(job, SlicedRead) and job.step() is False
    assert apply(kv, b"MSET", b"m00000", b"x", b"new", b"x", b"m00001", b"x") is OK
    assert steps_to_finish(job) > 2
    cursor, seen = job.result
    while cursor != b"0":
        cursor, keys = kv.read([b"SCAN", cursor, b"COUNT", b"1000"])
        seen += keys
    assert len(seen) == len(set(seen))
    assert set(seen) == (old - {b"abc"}) | {b"m%05d" % i for i in range(LARGE_MAP)} | {b"new"}


BIG = b"a" * (1 << 18)  # one large key: matching it is the whole job


# Patterns whose match must search a large key (a middle segment of sets), not only check
# its ends: the work is linear in the key (raftkv.kv.glob) and still spans slices.
SEARCHING = [b"*[b]?*", b"*?b?*", b"*[ab]" + b"[ab]" * 8 + b"c*"]


@pytest.mark.parametrize("pattern", SEARCHING)
def test_keys_splits_the_match_of_one_large_key_over_slices(pattern: bytes) -> None:
    """KEYS was sliced by key count: one multi-MiB key and a pattern like ``*?b`` held the
    event loop for seconds in one step. Now a large key's match is linear work that spans
    slices: a 4x longer key takes at most about 4x the slices (counted, not timed)."""
    slices = []
    for big in (BIG, BIG * 4):
        kv = loaded(100)
        apply(kv, b"SET", big, b"v")
        apply(kv, b"SET", big + b"bbc", b"v")
        job = kv.read_deferred([b"KEYS", pattern])
        assert isinstance(job, KeysJob)
        slices.append(steps_to_finish(job))
        assert job.result == kv.read([b"KEYS", pattern])
        assert big + b"bbc" in job.result and big not in job.result
    assert slices[0] >= 2
    assert slices[1] <= 4 * slices[0] + 2


@pytest.mark.parametrize("n", [50, LARGE_MAP * 2])
@pytest.mark.parametrize("pattern", [b"*?b", b"a*", b"*b", b"[a-f]?", b"*"])
def test_scan_match_is_sliced_and_answers_what_read_answers(n: int, pattern: bytes) -> None:
    kv, reference = loaded(n), loaded(n)
    for m in (kv, reference):
        apply(m, b"SET", BIG + b"b", b"v")
    seen, expected = [], []
    cursor = ref_cursor = b"0"
    while True:
        args = [b"SCAN", cursor, b"MATCH", pattern, b"COUNT", b"500"]
        job = kv.read_deferred(args)
        assert isinstance(job, SlicedRead) or pattern == b"*"  # (MATCH * is no MATCH)
        if isinstance(job, SlicedRead):
            steps_to_finish(job)
            job = job.result
        cursor, keys = job
        ref_cursor, ref_keys = reference.read([b"SCAN", ref_cursor, b"MATCH", pattern,
                                               b"COUNT", b"500"])
        assert cursor == ref_cursor
        seen += keys
        expected += ref_keys
        if cursor == b"0":
            break
    assert seen == expected
    assert sorted(seen) == reference.read([b"KEYS", pattern])


def test_scan_match_splits_the_match_of_one_large_key_over_slices() -> None:
    slices = []
    for big in (BIG, BIG * 4):
        kv = KVStateMachine()
        apply(kv, b"SET", big, b"v")
        job = kv.read_deferred([b"SCAN", b"0", b"MATCH", b"*[b]?*", b"TYPE", b"string"])
        assert isinstance(job, SlicedRead)
        slices.append(steps_to_finish(job))
        assert job.result == [b"0", []]
    assert slices[0] >= 2
    assert slices[1] <= 4 * slices[0] + 2
    # Errors in the other options answer as they did.
    bad = kv.read_deferred([b"SCAN", b"x", b"MATCH", b"*?b"])
    if isinstance(bad, SlicedRead):
        bad = bad.finish()
    assert bad == kv.read([b"SCAN", b"x", b"MATCH", b"*?b"])


def test_first_randomkey_of_a_large_map_builds_the_order_in_slices() -> None:
    kv, reference = loaded(LARGE_MAP * 3), loaded(LARGE_MAP * 3)
    job = kv.read_deferred([b"RANDOMKEY"])
    assert isinstance(job, SlicedRead)
    assert job.step() is False  # the order is not built in one step
    steps_to_finish(job)
    assert job.result == reference.read([b"RANDOMKEY"]) is not None
    # The built order is kept: the next RANDOMKEY and SCAN are answered at once.
    assert kv.read_deferred([b"RANDOMKEY"]) == job.result
    assert not isinstance(kv.read_deferred([b"SCAN", b"0"]), SlicedRead)


def test_randomkey_of_a_small_map_is_answered_at_once() -> None:
    kv = loaded(100)
    assert kv.read_deferred([b"RANDOMKEY"]) == kv.read([b"RANDOMKEY"]) is not None
    assert KVStateMachine().read_deferred([b"RANDOMKEY"]) is None
