"""The change record (raftkv.kv.changes): every applied write names its revision and what it
did to each key, in order; writes that change nothing record nothing."""

from __future__ import annotations

import pytest
from kv_log import T0, AppliedLog, b

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.changes import Change


class Log(AppliedLog):
    def apply(self, *args: str | bytes | int, t: int = T0) -> list[tuple]:
        return [(c.position, c.op, c.key, c.value, c.deadline_ms)
                for c in self.apply_changes(*args, t=t)]


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.mark.parametrize(("setup", "command", "expected"), [
    ([], ("SET", "k", "v"), [("set", b"k", b"v", None)]),
    ([], ("SET", "k", "v", "PX", 100), [("set", b"k", b"v", T0 + 100)]),
    ([("SET", "k", "v", "PX", 100)], ("SET", "k", "w", "KEEPTTL"), [("set", b"k", b"w", T0 + 100)]),
    ([], ("SET", "k", "v", "PXAT", T0 - 1), [("del", b"k", None, None)]),
    ([], ("SETNX", "k", "v"), [("setnx", b"k", b"v", None)]),
    ([], ("SETEX", "k", 10, "v"), [("setex", b"k", b"v", T0 + 10_000)]),
    ([], ("PSETEX", "k", 10, "v"), [("psetex", b"k", b"v", T0 + 10)]),
    ([("SET", "k", "v")], ("GETEX", "k", "PX", 5), [("getex", b"k", None, T0 + 5)]),
    ([("SET", "k", "v", "PX", 9)], ("GETEX", "k", "PERSIST"), [("getex", b"k", None, None)]),
    ([("SET", "k", "v")], ("GETDEL", "k"), [("getdel", b"k", None, None)]),
    ([("SET", "k", "v")], ("GETSET", "k", "w"), [("getset", b"k", b"w", None)]),
    ([("SET", "k", "v")], ("DEL", "k", "nope"), [("del", b"k", None, None)]),
    ([("SET", "k", "v")], ("UNLINK", "k"), [("unlink", b"k", None, None)]),
    ([], ("INCR", "n"), [("incr", b"n", b"1", None)]),
    ([("SET", "n", 5, "PX", 50)], ("DECR", "n"), [("decr", b"n", b"4", T0 + 50)]),
    ([], ("INCRBY", "n", 7), [("incrby", b"n", b"7", None)]),
    ([], ("DECRBY", "n", 7), [("decrby", b"n", b"-7", None)]),
    ([], ("INCRBYFLOAT", "n", "1.5"), [("incrbyfloat", b"n", b"1.5", None)]),
    ([("SET", "k", "ab")], ("APPEND", "k", "cd"), [("append", b"k", b"abcd", None)]),
    ([("SET", "k", "abcd")], ("SETRANGE", "k", 1, "X"), [("setrange", b"k", b"aXcd", None)]),
    ([], ("MSET", "a", 1, "b", 2), [("mset", b"a", b"1", None), ("mset", b"b", b"2", None)]),
    ([("SET", "a", 0, "PX", 100)], ("MSET", "a", 1, "b", 2, "a", 3),  # one change a key: the
     [("mset", b"a", b"3", None), ("mset", b"b", b"2", None)]),  # last value, the TTL dropped
    ([], ("MSETNX", "a", 1, "b", 2),
     [("msetnx", b"a", b"1", None), ("msetnx", b"b", b"2", None)]),
    ([("SET", "a", "v", "PX", 70)], ("RENAME", "a", "b"),
     [("rename", b"a", None, None), ("rename", b"b", b"v", T0 + 70)]),
    ([("SET", "a", "v")], ("RENAMENX", "a", "b"),
     [("renamenx", b"a", None, None), ("renamenx", b"b", b"v", None)]),
    ([("SET", "a", "v"), ("SET", "b", "old")], ("COPY", "a", "b", "REPLACE"),
     [("copy", b"b", b"v", None)]),
    ([("SET", "k", "v")], ("CAS", "k", "v", "w"), [("cas", b"k", b"w", None)]),
    ([("SET", "k", "v")], ("EXPIRE", "k", 3), [("expire", b"k", None, T0 + 3000)]),
    ([("SET", "k", "v")], ("PEXPIRE", "k", 3), [("pexpire", b"k", None, T0 + 3)]),
    ([("SET", "k", "v")], ("EXPIREAT", "k", T0 // 1000 + 9),
     [("expireat", b"k", None, T0 + 9000)]),
    ([("SET", "k", "v")], ("PEXPIREAT", "k", T0 + 9), [("pexpireat", b"k", None, T0 + 9)]),
    ([("SET", "k", "v")], ("PEXPIREAT", "k", T0 - 9), [("del", b"k", None, None)]),
    ([("SET", "k", "v", "PX", 9)], ("PERSIST", "k"), [("persist", b"k", None, None)]),
    ([("SET", "k", "v"), ("SET", "j", "w")], ("FLUSHALL",),
     [("flushall", b"", None, None)]),
    ([("SET", "k", "v")], ("FLUSHDB", "ASYNC"), [("flushdb", b"", None, None)]),
])
def test_every_write_records_its_changes(log: Log, setup: list[tuple], command: tuple,
                                         expected: list[tuple]) -> None:
    for args in setup:
        log.apply(*args)
    changes = log.apply(*command)
    assert changes == [(i, *row) for i, row in enumerate(expected)]
    assert all(c.index == log.index for c in log.kv.last_changes)


@pytest.mark.parametrize(("setup", "command"), [
    ([("SET", "k", "v")], ("SETNX", "k", "w")),
    ([("SET", "k", "v")], ("SET", "k", "w", "NX")),
    ([], ("SET", "k", "w", "XX")),
    ([], ("DEL", "k", "j")),
    ([], ("GETDEL", "k")),
    ([("SET", "k", "v")], ("SETRANGE", "k", 0, "")),
    ([("SET", "a", "v")], ("MSETNX", "a", 1, "b", 2)),
    ([("SET", "k", "v")], ("CAS", "k", "x", "w")),
    ([], ("EXPIRE", "k", 5)),
    ([("SET", "k", "v")], ("PERSIST", "k")),
    ([("SET", "k", "v")], ("RENAME", "k", "k")),
    ([("SET", "k", "v")], ("INCR", "k")),  # not an integer: an error changes nothing
    ([], ("FLUSHALL",)),
    ([], ("GET", "k")),  # a read command in the log (an error there) records nothing
    ([], ("SCRIPT", "LOAD", "return 1")),
])
def test_writes_that_change_nothing_record_nothing(log: Log, setup: list[tuple],
                                                   command: tuple) -> None:
    for args in setup:
        log.apply(*args)
    assert log.apply(*command) == []


def test_exec_records_every_write_inside_in_order(log: Log) -> None:
    payload = encode_exec([], [b("SET", "a", 1), b("INCR", "a"), b("DEL", "zz"),
                               b("MSET", "b", 2, "a", 9), b("GET", "a"), b("DEL", "b")])
    assert log.apply("EXEC", payload) == [
        (0, "set", b"a", b"1", None),
        (1, "incr", b"a", b"2", None),
        (2, "mset", b"b", b"2", None),
        (3, "mset", b"a", b"9", None),
        (4, "del", b"b", None, None),
    ]


def test_exec_that_a_watch_aborts_records_nothing(log: Log) -> None:
    log.apply("SET", "a", 1)
    payload = encode_exec([(b"a", 0, 0)], [b("SET", "a", 2)])
    assert log.apply("EXEC", payload) == []


def test_once_records_the_inner_command_and_a_replay_records_nothing(log: Log) -> None:
    log.apply("SESSION_OPEN", 60_000)
    session = log.index  # the session id is the entry counter, equal here
    assert log.apply("ONCE", session, 1, "SET", "k", "v") == [(0, "set", b"k", b"v", None)]
    assert log.apply("ONCE", session, 1, "SET", "k", "v") == []


def test_script_records_each_redis_call(log: Log) -> None:
    changes = log.apply("EVAL", "redis.call('SET', KEYS[1], 'x'); "
                        "redis.call('APPEND', KEYS[1], 'y'); redis.call('DEL', KEYS[2]); "
                        "return redis.call('INCRBY', KEYS[2], 3)", 2, "k", "n")
    assert changes == [(0, "set", b"k", b"x", None), (1, "append", b"k", b"xy", None),
                       (2, "incrby", b"n", b"3", None)]


def test_expiry_deletions_record_expired(log: Log) -> None:
    log.apply("SET", "a", 1, "PX", 10)
    log.apply("SET", "b", 2, "PX", 10)
    log.apply("SET", "c", 3, "PX", 1000)
    # The leader's expiry entry deletes only keys past their deadline at its time.
    changes = log.apply("EXPIRED", "a", "c", "missing", t=T0 + 20)
    assert changes == [(0, "expired", b"a", None, None)]


def test_a_write_meeting_an_expired_key_records_expired_first(log: Log) -> None:
    log.apply("SET", "k", "old", "PX", 10)
    assert log.apply("SET", "k", "new", "NX", t=T0 + 20) == [
        (0, "expired", b"k", None, None), (1, "set", b"k", b"new", None)]
    log.apply("SET", "j", "old", "PX", 10, t=T0 + 20)
    # DEL of an expired key deletes nothing visible, but the key is gone: expired, not del.
    assert log.apply("DEL", "j", t=T0 + 40) == [(0, "expired", b"j", None, None)]


def test_changes_are_equal_on_every_replica_and_default_to_the_entry_counter() -> None:
    one, two = KVStateMachine(), KVStateMachine()
    for args in (b("SET", "a", 1), b("MSET", "a", 2, "b", 3), b("DEL", "a", "b")):
        entry = encode_entry(args, T0)
        one.apply(entry)
        two.apply(entry)
        assert one.last_changes == two.last_changes
    assert [c.id for c in one.last_changes] == [(3, 0), (3, 1)]
    assert one.last_changes[0] == Change(3, 0, "del", b"a", None, None)


def test_a_corrupt_entry_records_nothing() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry(b("SET", "a", 1), T0), index=1)
    kv.apply(b"\xc1 not msgpack", index=2)
    assert kv.last_changes == []


def test_reads_record_nothing() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry(b("SET", "a", 1, "PX", 5), T0), index=1)
    kv.read(b("GET", "a"), T0 + 10)  # expired at this time: hidden, not deleted
    assert [c.op for c in kv.last_changes] == ["set"]
    assert kv.state_copy() == {b"a": b"1"}
