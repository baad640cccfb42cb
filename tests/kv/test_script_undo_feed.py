"""A failing script's undone writes leave the change feed and PUBLISH as they were before
it; what stays changed (expired keys a keyless read deleted) stays in the feed."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec

T0 = 1_700_000_000_000
FAIL = b"redis.call('SET', 'b', 'x'); redis.call('PUBLISH', 'ch', 'm'); error('no')"


def test_a_failing_script_in_exec_drops_only_its_own_changes() -> None:
    kv = KVStateMachine()
    commands = [[b"SET", b"a", b"1"], [b"EVAL", FAIL, b"0"], [b"SET", b"c", b"3"],
                [b"PUBLISH", b"ch", b"kept"]]
    kv.apply(encode_entry([b"exec", encode_exec([], commands)], T0))
    assert [(c.position, c.op, c.key, c.value) for c in kv.last_changes] == [
        (0, "set", b"a", b"1"), (1, "set", b"c", b"3")]
    assert kv.take_published() == [(b"ch", b"kept")]
    assert kv.read([b"GET", b"b"]) is None


def test_expired_keys_a_failing_script_deleted_stay_in_the_feed() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"x", b"1", b"PX", b"10"], T0))
    kv.apply(encode_entry([b"SET", b"y", b"1", b"PX", b"10"], T0))
    body = b"redis.call('SET', 'y', 'new'); redis.call('SCAN', '0'); error('no')"
    kv.apply(encode_entry([b"EVAL", body, b"0"], T0 + 100))
    # SET met y expired (put back by the undo, still expired); SCAN deleted x for good.
    assert [(c.position, c.op, c.key) for c in kv.last_changes] == [(0, "expired", b"x")]
    assert kv.state_copy() == {b"y": b"1"}
