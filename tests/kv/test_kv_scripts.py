"""Lua scripts in the state machine: deterministic on every replica, sandboxed, bounded."""

from __future__ import annotations

import hashlib

import pytest

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.scripts import BUDGET_ERROR
from wire.reply import OK, ErrorReply, SimpleString

T0 = 1_700_000_000_000


def b(*args: str | bytes | int) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


def on_both(*args: str | bytes | int):
    """Apply one entry on two fresh replicas; they must agree on the reply and the state."""
    one, two = KVStateMachine(), KVStateMachine()
    entry = encode_entry(b(*args), T0)
    reply = one.apply(entry)
    assert two.apply(entry) == reply
    assert one == two
    return reply, one


def test_keys_argv_and_redis_call() -> None:
    reply, kv = on_both("EVAL", "redis.call('SET', KEYS[1], ARGV[1]); "
                        "return redis.call('INCRBY', KEYS[2], 5)", 2, "k", "n", "v")
    assert reply == 5
    assert kv.state_copy() == {b"k": b"v", b"n": b"5"}


def test_reply_conversion_follows_redis() -> None:
    reply, _ = on_both("EVAL", "return {1, 'two', 3.9, true, {ok='fine'}, {err='ERR bad'}, "
                       "false, 'after false'}", 0)
    assert reply == [1, b"two", 3, 1, SimpleString("fine"), ErrorReply("ERR bad"), None,
                     b"after false"]
    assert on_both("EVAL", "return redis.call('GET', 'missing')", 0)[0] is None
    assert on_both("EVAL", "return redis.status_reply('PONG')", 0)[0] == SimpleString("PONG")
    assert on_both("EVAL", "return redis.error_reply('MY oops')", 0)[0] == ErrorReply("MY oops")


def test_call_raises_pcall_returns_the_error() -> None:
    reply, kv = on_both("EVAL", "redis.call('SET', 's', 'x'); return redis.call('INCR', 's')", 0)
    assert reply == ErrorReply("ERR value is not an integer or out of range")
    assert kv.state_copy() == {}  # a failing script leaves no write (Redis keeps them)
    reply, _ = on_both("EVAL", "redis.call('SET', 's', 'x'); "
                       "local r = redis.pcall('INCR', 's'); return r.err", 0)
    assert reply == b"ERR value is not an integer or out of range"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("return os.time()", "global 'os'"),
        ("return io.open('/etc/passwd')", "global 'io'"),
        ("return math.random()", "field 'random'"),
        ("return require('os')", "global 'require'"),
        ("return load('return 1')()", "global 'load'"),
        ("return debug.getinfo(1)", "global 'debug'"),
        ("return python.eval('1')", "global 'python'"),
        ("return collectgarbage('count')", "global 'collectgarbage'"),
        ("return redis.call('EXEC', 'x')", "not allowed from script"),
        ("return redis.call('EVAL', 'return 1', '0')", "not allowed from script"),
        ("return redis.call('NOPE')", "Unknown Redis command called from script"),
        ("return string.format('%p', {})", "'%p' is not allowed"),
        ("return redis.call('SET', 'k', {})", "arguments must be strings or integers"),
    ],
)
def test_nothing_nondeterministic_or_outside_is_reachable(body: str, error: str) -> None:
    reply, kv = on_both("EVAL", body, 0)
    assert isinstance(reply, ErrorReply) and error in reply.text, reply
    assert len(kv) == 0


def test_no_globals_carry_over_between_calls() -> None:
    kv = KVStateMachine()
    assert kv.apply(encode_entry(b("EVAL", "counter = (counter or 0) + 1; "
                                     "string.evil = 1; return counter", 0), T0)) == 1
    assert kv.apply(encode_entry(b("EVAL", "counter = (counter or 0) + 1; "
                                     "return {counter, string.evil}", 0), T0)) == [1]


def test_pairs_order_and_tostring_are_the_same_everywhere() -> None:
    body = ("local t = {} for i = 1, 50 do t['k' .. i] = i end "
            "local out = {} for k in pairs(t) do out[#out + 1] = k end "
            "return table.concat(out, ',') .. tostring({}) .. tostring(print)")
    replies = {on_both("EVAL", body, 0)[0] for _ in range(5)}
    assert len(replies) == 1
    (reply,) = replies
    assert reply.startswith(b"k1,k10,k11,") and reply.endswith(b"tablenil")


def test_the_instruction_budget_fails_identically_and_cannot_be_caught() -> None:
    for body in ("while true do end",
                 "while true do pcall(function() while true do end end) end",
                 "redis.call('SET', 'before', '1'); local i = 0 while true do i = i + 1 end"):
        reply, kv = on_both("EVAL", body, 0)
        assert reply == ErrorReply(BUDGET_ERROR)
    assert kv.state_copy() == {}  # the write before the budget ran out is undone


def test_the_memory_cap_fails_the_script() -> None:
    reply, _ = on_both("EVAL", "local t = {} for i = 1, 1e9 do "
                       "t[i] = string.rep('xxxxxxxxxxxxxxxx', 256) end", 0)
    assert isinstance(reply, ErrorReply) and "memory" in reply.text


def test_time_stands_still_inside_a_script() -> None:
    kv = KVStateMachine()
    reply = kv.apply(encode_entry(b("EVAL", "redis.call('SET', 'k', 'v', 'PX', 100); "
                                      "return redis.call('PTTL', 'k')", 0), T0))
    assert reply == 100


def test_script_load_exists_flush_evalsha_and_snapshots() -> None:
    kv = KVStateMachine()
    body = b"return ARGV[1] .. KEYS[1]"
    sha = hashlib.sha1(body).hexdigest().encode()
    assert kv.apply(encode_entry([b"EVALSHA", sha, b"1", b"k", b"a"], T0)) == ErrorReply(
        "NOSCRIPT No matching script. Please use EVAL.")
    assert kv.apply(encode_entry([b"SCRIPT", b"LOAD", body], T0)) == sha
    assert kv.apply(encode_entry([b"SCRIPT", b"EXISTS", sha, b"0" * 40], T0)) == [1, 0]
    copy = KVStateMachine()
    copy.restore(kv.snapshot())
    assert copy.apply(encode_entry([b"EVALSHA", sha.upper(), b"1", b"k", b"a"], T0)) == b"ak"
    assert copy.read([b"EVALSHA_RO", sha, b"1", b"k", b"b"]) == b"bk"
    assert kv.apply(encode_entry([b"SCRIPT", b"FLUSH"], T0)) == OK
    assert kv.apply(encode_entry([b"SCRIPT", b"EXISTS", sha], T0)) == [0]
    # EVAL caches its body, so EVALSHA works after it (redis-py's Script relies on this).
    kv.apply(encode_entry([b"EVAL", body, b"1", b"k", b"c"], T0))
    assert kv.apply(encode_entry([b"SCRIPT", b"EXISTS", sha], T0)) == [1]


def test_script_load_rejects_what_does_not_compile() -> None:
    reply, kv = on_both("SCRIPT", "LOAD", "return (")
    assert isinstance(reply, ErrorReply) and "Error compiling script" in reply.text
    assert kv.read(b("EVAL_RO", "return 1", 0)) == 1


def test_eval_ro_refuses_writes_and_reads_change_nothing() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry(b("SET", "k", "v"), T0))
    before = kv.snapshot()
    assert kv.read(b("EVAL_RO", "return redis.call('SET', 'k', 'x')", 0)) == ErrorReply(
        "ERR Write commands are not allowed from read-only scripts.")
    assert kv.read(b("EVAL_RO", "return redis.call('GET', KEYS[1])", 1, "k")) == b"v"
    assert kv.snapshot() == before


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["EVAL", "return 1", "x"], "ERR value is not an integer or out of range"),
        (["EVAL", "return 1", 2, "k"], "ERR Number of keys can't be greater than number of args"),
        (["EVAL", "return 1", -1], "ERR Number of keys can't be negative"),
        (["SCRIPT", "KILL"], "ERR unknown subcommand 'KILL'. Try SCRIPT HELP."),
    ],
)
def test_argument_errors(args: list, error: str) -> None:
    assert on_both(*args)[0] == ErrorReply(error)


def test_lock_release_script_of_redis_py() -> None:
    """redis-py's Lock.release script, verbatim: deletes only the holder's token."""
    release = ("local token = redis.call('get', KEYS[1]) "
               "if not token or token ~= ARGV[1] then return 0 end "
               "redis.call('del', KEYS[1]) return 1")
    kv = KVStateMachine()
    kv.apply(encode_entry(b("SET", "lock", "me", "NX", "PX", 1000), T0))
    assert kv.apply(encode_entry(b("EVAL", release, 1, "lock", "other"), T0)) == 0
    assert kv.apply(encode_entry(b("EVAL", release, 1, "lock", "me"), T0)) == 1
    assert len(kv) == 0
