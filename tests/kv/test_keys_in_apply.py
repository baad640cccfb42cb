"""``KEYS *`` run while applying a write (inside EXEC or a script) meets expired keys and
deletes them (every replica at the same entry): it must not delete from the key map it
is walking. It answered ``ERR internal error applying the command: RuntimeError`` in EXEC
and ``dictionary changed size during iteration`` in EVAL, one key deleted (found while
fixing attack18)."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec

T0 = 1_700_000_000_000


def _expiring(kv: KVStateMachine) -> None:
    for name in (b"x1", b"x2", b"x3"):
        kv.apply(encode_entry([b"SET", name, b"1", b"PX", b"10"], T0))
    kv.apply(encode_entry([b"SET", b"live", b"1"], T0))


def test_keys_in_exec_skips_and_deletes_expired_keys() -> None:
    kv = KVStateMachine()
    _expiring(kv)
    reply = kv.apply(encode_entry([b"exec", encode_exec([], [[b"KEYS", b"*"]])], T0 + 100))
    assert reply == [[b"live"]]
    assert kv.state_copy() == {b"live": b"1"}


def test_keys_in_a_script_skips_and_deletes_expired_keys() -> None:
    kv = KVStateMachine()
    _expiring(kv)
    body = b"return redis.call('KEYS', '*')"
    assert kv.apply(encode_entry([b"EVAL", body, b"0"], T0 + 100)) == [b"live"]
    assert kv.state_copy() == {b"live": b"1"}
