"""A script is one atomic entry: one that fails (an uncaught error, the instruction budget,
the memory cap, a reply too large) leaves the state exactly as it found it, on every
replica: values, TTLs, WATCH versions, SCAN's order."""

from __future__ import annotations

import pytest

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.scripts import BUDGET_ERROR, MEMORY_ERROR
from wire.reply import ErrorReply

T0 = 1_700_000_000_000


def apply(kv: KVStateMachine, *args: bytes | str, t: int = T0) -> object:
    return kv.apply(encode_entry([a.encode() if isinstance(a, str) else a for a in args], t))


def seeded() -> KVStateMachine:
    kv = KVStateMachine()
    apply(kv, "MSET", "a", "1", "b", "2", "gone", "x")
    apply(kv, "PEXPIRE", "b", "60000")
    apply(kv, "DEL", "gone")  # a deletion index (WATCH version of a missing key)
    return kv


def comparable(kv: KVStateMachine) -> tuple:
    state = kv.snapshot_state()
    return state.data, state.expires, state.mods, state.tombs, state.gone, state.sessions


WRITES = ("redis.call('SET', 'a', 'changed') redis.call('DEL', 'b') "
          "redis.call('SET', 'new', 'v', 'PX', '5') redis.call('INCR', 'gone') "
          "redis.call('PERSIST', 'b') redis.call('RENAME', 'a', 'moved') "
          "redis.call('COPY', 'moved', 'copy') redis.call('SCAN', '0') "
          "redis.call('MSET', 'm1', 'x', 'm2', 'y') redis.call('FLUSHALL') "
          "redis.call('SET', 'after', 'flush') redis.call('DEL', 'b') ")


@pytest.mark.parametrize(("failure", "error"), [
    ("error('boom')", "ERR Error running script: user_script:1: boom"),
    ("redis.call('INCR', 'after')", None),  # a command error raised, not caught
    ("return redis.error_reply('MINE')", "MINE"),  # returned, not raised: writes stay
    ("while true do end", BUDGET_ERROR),
    ("local x = string.rep('xxxxxxxxxxxxxxxx', 256) local t = {} "
     "for i = 1, 1e9 do t[i] = x .. i end", MEMORY_ERROR),
    ("local t = {} for i = 1, 100 do t[i] = string.rep('x', 1e6) end return t", None),
])
def test_a_failing_script_leaves_no_write(failure: str, error: str | None) -> None:
    kv, other = seeded(), seeded()
    reply = apply(kv, "EVAL", WRITES + failure, "0")
    apply(other, "GET", "a")  # the same entry count and time, no script
    assert isinstance(reply, ErrorReply), reply
    if error is not None:
        assert reply.text == error
    if error == "MINE":  # a script that returns an error reply did not fail: as Redis
        assert kv.state_copy() == {b"after": b"flush"}
        return
    assert comparable(kv) == comparable(other)
    assert sorted(kv.read([b"SCAN", b"0", b"COUNT", b"100"])[1]) == [b"a", b"b"]
    assert kv.read([b"PTTL", b"b"]) == 60000


def test_watch_versions_survive_a_failed_script() -> None:
    kv = seeded()
    before = kv.read([b"WATCH", b"a", b"b", b"gone", b"never"])
    apply(kv, "EVAL", "redis.call('SET', 'a', 'x') redis.call('DEL', 'b') "
                      "redis.call('SET', 'gone', '1') redis.call('SET', 'never', '1') error('x')",
          "0")
    assert kv.read([b"WATCH", b"a", b"b", b"gone", b"never"]) == before


def test_a_key_restored_after_a_scan_inside_the_script_is_still_scanned() -> None:
    """The script deletes a key and then SCANs (which compacts the hash order): the key
    comes back on rollback and later SCANs still return it."""
    kv = KVStateMachine()
    apply(kv, "MSET", *[x for i in range(10) for x in (f"k{i}", "v")])
    kv.read([b"SCAN", b"0"])  # builds the order
    apply(kv, "EVAL", "for i = 0, 8 do redis.call('DEL', 'k' .. i) end "
                      "redis.call('SCAN', '0') error('undo')", "0")
    keys = kv.read([b"SCAN", b"0", b"COUNT", b"100"])[1]
    assert sorted(keys) == sorted(f"k{i}".encode() for i in range(10))


def test_expired_keys_deleted_on_the_way_stay_invisible() -> None:
    kv = KVStateMachine()
    apply(kv, "SET", "k", "v", "PX", "10")
    apply(kv, "EVAL", "redis.call('GET', 'k') error('x')", "0", t=T0 + 100)
    assert kv.read([b"GET", b"k"]) is None and kv.read([b"EXISTS", b"k"]) == 0


def test_replicas_agree_after_a_rollback() -> None:
    one, two = seeded(), seeded()
    entry = encode_entry([b"EVAL", (WRITES + "while true do end").encode(), b"0"], T0)
    assert one.apply(entry) == two.apply(entry) == ErrorReply(BUDGET_ERROR)
    assert one == two and one.digest() == two.digest()


def test_internal_commands_are_refused_in_scripts() -> None:
    kv = KVStateMachine()
    for name in ("session_open", "once", "exec", "expired"):
        reply = apply(kv, "EVAL", f"return redis.pcall('{name}', '1', '2', 'GET', 'x')", "0")
        assert reply == ErrorReply("ERR This Redis command is not allowed from script"), name
