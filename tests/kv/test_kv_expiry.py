"""raftkv.kv with time: TTLs against explicit leader stamps, everyday commands, WATCH/EXEC.

The state machine never reads a clock, so every test gives the stamps itself.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from raftkv.kv import KVStateMachine, encode_entry, encode_exec, validate
from raftkv.kv import machine as machine_module
from wire.reply import OK, ErrorReply, SimpleString

NOT_INT = ErrorReply("ERR value is not an integer or out of range")
SYNTAX = ErrorReply("ERR syntax error")
T0 = 1_700_000_000_000  # a stamp, ms since the epoch


def b(*args: str | bytes | int) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


@pytest.fixture
def kv() -> KVStateMachine:
    return KVStateMachine()


def at(kv: KVStateMachine, stamp: int | None, *args: str | bytes | int):
    """Apply a command stamped ``stamp`` (None: an entry from before stamps existed)."""
    return kv.apply(encode_entry(b(*args), stamp))


# -- SET options, TTL, PTTL ----------------------------------------------------------------


def test_set_ex_px_exat_pxat_keepttl(kv: KVStateMachine) -> None:
    assert at(kv, T0, "SET", "a", "1", "EX", 10) == OK
    assert kv.deadline(b"a") == T0 + 10_000
    assert at(kv, T0, "SET", "b", "1", "PX", 1500) == OK
    assert kv.deadline(b"b") == T0 + 1500
    assert at(kv, T0, "SET", "c", "1", "EXAT", (T0 // 1000) + 7) == OK
    assert kv.deadline(b"c") == (T0 // 1000 + 7) * 1000
    assert at(kv, T0, "SET", "d", "1", "PXAT", T0 + 42) == OK
    assert kv.deadline(b"d") == T0 + 42
    assert at(kv, T0 + 1, "SET", "a", "2", "KEEPTTL") == OK
    assert kv.deadline(b"a") == T0 + 10_000
    assert at(kv, T0 + 1, "SET", "a", "3") == OK  # a plain SET clears the TTL
    assert kv.deadline(b"a") is None
    assert at(kv, T0 + 1, "SET", "b", "x", "NX", "EX", 5) is None  # NX on a live key
    assert kv.deadline(b"b") == T0 + 1500


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["SET", "k", "v", "EX", 0], "ERR invalid expire time in 'set' command"),
        (["SET", "k", "v", "PX", -1], "ERR invalid expire time in 'set' command"),
        (["SET", "k", "v", "EX", 2**62], "ERR invalid expire time in 'set' command"),
        (["SET", "k", "v", "EX", "1.5"], NOT_INT.text),
        (["SET", "k", "v", "EX", 1, "PX", 1], SYNTAX.text),
        (["SET", "k", "v", "KEEPTTL", "PX", 1], SYNTAX.text),
        (["SETEX", "k", 0, "v"], "ERR invalid expire time in 'setex' command"),
        (["PSETEX", "k", "x", "v"], NOT_INT.text),
        (["GETEX", "k", "PERSIST", "EX", 1], SYNTAX.text),
        (["GETEX", "k", "EX", 0], "ERR invalid expire time in 'getex' command"),
        (["EXPIRE", "k", 1, "NX", "GT"],
         "ERR NX and XX, GT or LT options at the same time are not compatible"),
        (["EXPIRE", "k", 1, "GT", "LT"],
         "ERR GT and LT options at the same time are not compatible"),
        (["EXPIRE", "k", 1, "SOON"], "ERR Unsupported option SOON"),
        (["EXPIRE", "k", "x"], NOT_INT.text),
        (["EXPIRE", "k", 2**62], "ERR invalid expire time in 'expire' command"),
        (["INCRBYFLOAT", "k", "1.2.3"], "ERR value is not a valid float"),
        (["SETRANGE", "k", -1, "x"], "ERR offset is out of range"),
        (["GETRANGE", "k", "a", 1], NOT_INT.text),
        (["COPY", "a", "a"], "ERR source and destination objects are the same"),
        (["COPY", "a", "b", "DB", 1], "ERR DB index is out of range"),
        (["OBJECT", "FREQ", "k"], "ERR unknown subcommand 'FREQ'. Try OBJECT HELP."),
        (["MSETNX", "a", 1, "b"], "ERR wrong number of arguments for 'msetnx' command"),
    ],
)
def test_validation_before_proposing_matches_apply(args: list, error: str,
                                                   kv: KVStateMachine) -> None:
    assert validate(b(*args)) == ErrorReply(error)
    assert at(kv, T0, *args) == ErrorReply(error)
    assert len(kv) == 0


def test_ttl_pttl_expiretime(kv: KVStateMachine) -> None:
    assert at(kv, T0, "TTL", "k") == -2
    at(kv, T0, "SET", "k", "v")
    assert at(kv, T0, "TTL", "k") == -1
    assert at(kv, T0, "PEXPIRETIME", "k") == -1
    at(kv, T0, "PEXPIRE", "k", 2600)
    assert at(kv, T0, "PTTL", "k") == 2600
    assert at(kv, T0, "TTL", "k") == 3  # rounded like Redis: (ms + 500) / 1000
    assert kv.read(b("TTL", "k"), T0 + 2200) == 0
    assert at(kv, T0, "PEXPIRETIME", "k") == T0 + 2600
    assert at(kv, T0, "EXPIRETIME", "k") == (T0 + 2600) // 1000
    assert kv.read(b("PTTL", "k"), T0 + 2600) == -2


def test_a_key_is_visible_until_its_deadline_and_not_at_it(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "k", "v", "PX", 100)
    assert kv.read(b("GET", "k"), T0 + 99) == b"v"
    assert kv.read(b("GET", "k"), T0 + 100) is None
    assert kv.read(b("EXISTS", "k"), T0 + 100) == 0
    assert kv.read(b("DBSIZE"), T0 + 100) == 0
    assert kv.read(b("KEYS", "*"), T0 + 100) == []
    assert kv.read(b("SCAN", "0"), T0 + 100) == [b"0", []]
    assert len(kv) == 1  # a read hides it but never deletes (reads change nothing)
    # The applied time is the floor of a read's time: a node's clock behind it is ignored.
    at(kv, T0 + 150, "SET", "other", "x")
    assert kv.read(b("GET", "k"), T0) is None
    assert kv.read(b("GET", "k")) is None


def test_writes_delete_expired_keys_they_meet(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "n", "41", "PX", 10)
    assert at(kv, T0 + 10, "INCR", "n") == 1  # expired: INCR starts from 0, TTL gone
    assert kv.deadline(b"n") is None
    at(kv, T0, "SET", "s", "v", "PX", 10)
    assert at(kv, T0 + 20, "SET", "s", "new", "NX") == OK


def test_stamps_never_move_time_backwards(kv: KVStateMachine) -> None:
    at(kv, T0 + 1000, "SET", "k", "v", "PX", 500)
    assert kv.now == T0 + 1000
    at(kv, T0, "SET", "x", "1")  # a lower stamp (a new leader whose clock is behind)
    assert kv.now == T0 + 1000
    assert at(kv, T0, "PTTL", "k") == 500  # relative to now, not to the lower stamp
    assert at(kv, None, "PTTL", "k") == 500  # an unstamped (old) entry uses now too


def test_unstamped_entries_from_earlier_versions_still_apply(kv: KVStateMachine) -> None:
    assert kv.apply(msgpack.packb([b"SET", b"k", b"v"], use_bin_type=True)) == OK
    assert at(kv, None, "SET", "t", "v", "EX", 5) == OK
    assert kv.deadline(b"t") == 5000  # now is 0 until a stamped entry applies
    assert at(kv, T0, "GET", "t") is None  # long expired once real time is known


def test_expired_entry_deletes_only_keys_already_due(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "a", "1", "PX", 100)
    at(kv, T0, "SET", "b", "1", "PX", 300)
    at(kv, T0, "SET", "c", "1")
    assert kv.expired_keys(T0 + 99, 10) == []
    assert kv.expired_keys(T0 + 300, 10) == [b"a", b"b"]
    assert kv.expired_keys(T0 + 300, 1) == [b"a"]
    # The leader's clock said both were due, but this entry's stamp says only a is.
    assert at(kv, T0 + 200, "EXPIRED", "a", "b", "c") == 1
    assert kv.state_copy() == {b"b": b"1", b"c": b"1"}
    # A key whose TTL was extended after the leader picked it is not deleted.
    at(kv, T0 + 200, "PEXPIRE", "b", 10_000)
    assert at(kv, T0 + 400, "EXPIRED", "b") == 0
    assert kv.expired_keys(T0 + 400, 10) == []


def test_expire_flags(kv: KVStateMachine) -> None:
    assert at(kv, T0, "EXPIRE", "missing", 10) == 0
    at(kv, T0, "SET", "k", "v")
    assert at(kv, T0, "EXPIRE", "k", 10, "XX") == 0  # no TTL yet
    assert at(kv, T0, "EXPIRE", "k", 10, "GT") == 0  # no TTL counts as infinite
    assert at(kv, T0, "EXPIRE", "k", 10, "NX") == 1
    assert at(kv, T0, "EXPIRE", "k", 20, "NX") == 0
    assert at(kv, T0, "EXPIRE", "k", 5, "GT") == 0
    assert at(kv, T0, "EXPIRE", "k", 20, "GT") == 1
    assert at(kv, T0, "EXPIRE", "k", 30, "LT") == 0
    assert at(kv, T0, "PEXPIRE", "k", 1000, "LT", "XX") == 1
    assert kv.deadline(b"k") == T0 + 1000
    assert at(kv, T0, "PEXPIREAT", "k", T0 + 5000) == 1
    assert at(kv, T0, "EXPIREAT", "k", T0 // 1000 + 9) == 1
    assert kv.deadline(b"k") == (T0 // 1000 + 9) * 1000
    assert at(kv, T0, "PERSIST", "k") == 1
    assert at(kv, T0, "PERSIST", "k") == 0
    assert at(kv, T0, "EXPIRE", "k", -1) == 1  # a deadline in the past deletes at once
    assert at(kv, T0, "EXISTS", "k") == 0


def test_getex_setex_psetex_getset_getdel(kv: KVStateMachine) -> None:
    assert at(kv, T0, "SETEX", "k", 5, "v") == OK and kv.deadline(b"k") == T0 + 5000
    assert at(kv, T0, "PSETEX", "p", 5, "v") == OK and kv.deadline(b"p") == T0 + 5
    assert at(kv, T0, "GETEX", "k", "PX", 100) == b"v" and kv.deadline(b"k") == T0 + 100
    assert at(kv, T0, "GETEX", "k", "PERSIST") == b"v" and kv.deadline(b"k") is None
    assert at(kv, T0, "GETEX", "k") == b"v"
    assert at(kv, T0, "GETEX", "nope", "EX", 1) is None
    at(kv, T0, "EXPIRE", "k", 100)
    assert at(kv, T0, "GETSET", "k", "w") == b"v" and kv.deadline(b"k") is None
    assert at(kv, T0, "GETDEL", "k") == b"w"
    assert at(kv, T0, "GETDEL", "k") is None


def test_incr_append_setrange_keep_the_ttl_rename_and_copy_carry_it(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "n", "1", "PX", 1000)
    at(kv, T0, "INCR", "n")
    at(kv, T0, "APPEND", "n", "0")
    at(kv, T0, "SETRANGE", "n", 0, "3")
    at(kv, T0, "INCRBYFLOAT", "n", "0.5")
    assert at(kv, T0, "GET", "n") == b"30.5" and kv.deadline(b"n") == T0 + 1000
    assert at(kv, T0, "RENAME", "n", "m") == OK and kv.deadline(b"m") == T0 + 1000
    assert at(kv, T0, "COPY", "m", "c") == 1 and kv.deadline(b"c") == T0 + 1000


# -- everyday commands ---------------------------------------------------------------------


def test_setnx_msetnx(kv: KVStateMachine) -> None:
    assert at(kv, T0, "SETNX", "a", "1") == 1
    assert at(kv, T0, "SETNX", "a", "2") == 0
    assert at(kv, T0, "MSETNX", "b", "1", "a", "3") == 0
    assert at(kv, T0, "MSETNX", "b", "1", "c", "3") == 1
    assert kv.state_copy() == {b"a": b"1", b"b": b"1", b"c": b"3"}


def test_rename_renamenx(kv: KVStateMachine) -> None:
    assert at(kv, T0, "RENAME", "x", "y") == ErrorReply("ERR no such key")
    at(kv, T0, "MSET", "a", "1", "b", "2")
    assert at(kv, T0, "RENAMENX", "a", "b") == 0
    assert at(kv, T0, "RENAMENX", "a", "a") == 0
    assert at(kv, T0, "RENAME", "a", "a") == OK
    assert at(kv, T0, "RENAME", "a", "b") == OK
    assert kv.state_copy() == {b"b": b"1"}
    assert at(kv, T0, "RENAMENX", "b", "c") == 1


def test_incrbyfloat_prints_like_redis(kv: KVStateMachine) -> None:
    assert at(kv, T0, "INCRBYFLOAT", "f", "10.5") == b"10.5"
    assert at(kv, T0, "INCRBYFLOAT", "f", "0.1") == b"10.6"
    assert at(kv, T0, "INCRBYFLOAT", "g", "5.0e3") == b"5000"
    assert at(kv, T0, "INCRBYFLOAT", "g", "-5000") == b"0"
    assert at(kv, T0, "INCRBYFLOAT", "h", "0.1") == b"0.1"
    assert at(kv, T0, "INCRBYFLOAT", "h", "0.2") == b"0.3"
    assert at(kv, T0, "INCRBYFLOAT", "h", "inf") == ErrorReply(
        "ERR increment would produce NaN or Infinity")
    at(kv, T0, "SET", "s", "abc")
    assert at(kv, T0, "INCRBYFLOAT", "s", "1") == ErrorReply("ERR value is not a valid float")


def test_getrange_setrange(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "s", "This is a string")
    assert at(kv, T0, "GETRANGE", "s", 0, 3) == b"This"
    assert at(kv, T0, "GETRANGE", "s", -3, -1) == b"ing"
    assert at(kv, T0, "GETRANGE", "s", 0, -1) == b"This is a string"
    assert at(kv, T0, "GETRANGE", "s", 10, 100) == b"string"
    assert at(kv, T0, "GETRANGE", "s", -1, -5) == b""
    assert at(kv, T0, "GETRANGE", "missing", 0, 5) == b""
    assert at(kv, T0, "SETRANGE", "s", 10, "STRING") == 16
    assert at(kv, T0, "GET", "s") == b"This is a STRING"
    assert at(kv, T0, "SETRANGE", "z", 3, "x") == 4
    assert at(kv, T0, "GET", "z") == b"\x00\x00\x00x"
    assert at(kv, T0, "SETRANGE", "missing", 3, "") == 0
    assert at(kv, T0, "EXISTS", "missing") == 0


def test_copy_type_object_touch_unlink_flushdb_randomkey(kv: KVStateMachine) -> None:
    assert at(kv, T0, "RANDOMKEY") is None
    at(kv, T0, "MSET", "a", "12", "b", "x" * 45, "c", "hello")
    assert at(kv, T0, "COPY", "a", "b") == 0
    assert at(kv, T0, "COPY", "a", "b", "REPLACE") == 1
    assert at(kv, T0, "GET", "b") == b"12"
    assert at(kv, T0, "COPY", "nope", "d") == 0
    assert at(kv, T0, "TYPE", "a") == SimpleString("string")
    assert at(kv, T0, "TYPE", "nope") == SimpleString("none")
    assert at(kv, T0, "OBJECT", "ENCODING", "a") == b"int"
    assert at(kv, T0, "OBJECT", "encoding", "c") == b"embstr"
    at(kv, T0, "SET", "r", "y" * 45)
    assert at(kv, T0, "OBJECT", "ENCODING", "r") == b"raw"
    assert at(kv, T0, "OBJECT", "ENCODING", "nope") is None
    assert at(kv, T0, "TOUCH", "a", "b", "nope") == 2
    assert kv.read(b("RANDOMKEY")) in (b"a", b"b", b"c", b"r")
    assert kv.read(b("RANDOMKEY")) == kv.read(b("RANDOMKEY"))  # deterministic per state
    assert at(kv, T0, "UNLINK", "a", "nope") == 1
    assert at(kv, T0, "FLUSHDB") == OK
    assert len(kv) == 0


def test_randomkey_skips_expired_keys(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "gone", "1", "PX", 1)
    at(kv, T0, "SET", "here", "1")
    for stamp in range(5):
        at(kv, T0 + 10 + stamp, "SET", "here", "1")
        assert kv.read(b("RANDOMKEY")) == b"here"


# -- WATCH versions and EXEC ---------------------------------------------------------------


def exec_entry(watches: list[tuple[bytes, int, int]], *commands: list) -> list[bytes]:
    return [b"EXEC", encode_exec(watches, [b(*c) for c in commands])]


def watch(kv: KVStateMachine, *keys: str) -> list[tuple[bytes, int, int]]:
    versions = kv.read(b("WATCH", *keys))
    return [(k.encode(), v[0], v[1]) for k, v in zip(keys, versions, strict=True)]


def test_exec_runs_every_command_in_one_entry(kv: KVStateMachine) -> None:
    entry = exec_entry([], ["SET", "a", 1], ["INCR", "a"], ["GET", "a"], ["SET", "s", "x"],
                       ["INCR", "s"], ["GET", "s"])
    # A command failing on the data fails alone, as in Redis; the others still run.
    assert kv.apply(encode_entry(entry, T0)) == [OK, 2, b"2", OK, NOT_INT, b"x"]
    # One that fails its checks makes the entry an error (the server never proposes it).
    entry = exec_entry([], ["SET", "b", 1], ["INCR", "nope", "x"])
    assert kv.apply(encode_entry(entry, T0)) == ErrorReply(
        "ERR wrong number of arguments for 'incr' command")
    assert at(kv, T0, "EXISTS", "b") == 0


@pytest.mark.parametrize(
    "change",
    [
        ["SET", "w", "new"],
        ["DEL", "w"],
        ["EXPIRE", "w", 100],
        ["APPEND", "w", "x"],
        ["RENAME", "w", "elsewhere"],
        ["FLUSHALL"],
    ],
)
def test_exec_is_null_if_a_watched_key_changed(change: list, kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "w", "v")
    watches = watch(kv, "w")
    at(kv, T0, *change)
    assert kv.apply(encode_entry(exec_entry(watches, ["SET", "x", 1]), T0)) is None
    assert at(kv, T0, "EXISTS", "x") == 0


def test_watch_of_a_missing_key_sees_it_created_and_deleted_again(kv: KVStateMachine) -> None:
    watches = watch(kv, "m")
    at(kv, T0, "SET", "m", "1")
    at(kv, T0, "DEL", "m")
    assert kv.apply(encode_entry(exec_entry(watches, ["SET", "x", 1]), T0)) is None


def test_watch_of_a_missing_key_ignores_unrelated_deletions(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "other", "1", "PX", 10)
    watches = watch(kv, "m")
    at(kv, T0, "DEL", "other")
    at(kv, T0 + 20, "SET", "x", "1")
    assert kv.apply(encode_entry(exec_entry(watches, ["SET", "m", 1]), T0)) == [OK]


def test_forgetting_deletions_fails_watches_of_missing_keys(
        kv: KVStateMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_TOMBS remembered deletions all are forgotten: conservative, never wrong."""
    monkeypatch.setattr(machine_module, "MAX_TOMBS", 2)
    watches = watch(kv, "m")
    for key in ("a", "b", "c"):
        at(kv, T0, "SET", key, "1")
        at(kv, T0, "DEL", key)
    assert kv.apply(encode_entry(exec_entry(watches, ["SET", "m", 1]), T0)) is None


def test_watch_sees_a_key_expire(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "w", "v", "PX", 100)
    watches = watch(kv, "w")
    assert kv.apply(encode_entry(exec_entry(watches, ["GET", "w"]), T0 + 50)) == [b"v"]
    watches = watch(kv, "w")
    assert kv.apply(encode_entry(exec_entry(watches, ["GET", "w"]), T0 + 100)) is None


def test_watch_of_a_key_already_expired_ignores_its_deletion_by_exec(kv: KVStateMachine) -> None:
    """A key that had expired (still in the map) when watched: EXEC's own check must not
    delete it and see a new deletion index (the simulator's --txn seed 12). Redis 7
    likewise lets the EXEC run."""
    at(kv, T0, "SET", "w", "v", "PX", 100)
    versions = kv.read(b("WATCH", "w"), T0 + 200)
    watches = [(b"w", v[0], v[1]) for v in versions]
    assert kv.apply(encode_entry(exec_entry(watches, ["SET", "x", 1]), T0 + 300)) == [OK]
    assert at(kv, T0 + 300, "EXISTS", "w") == 0


def test_exec_proceeds_if_watched_keys_are_unchanged(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "w", "v")
    watches = watch(kv, "w", "missing")
    at(kv, T0, "SET", "other", "x")  # other keys may change
    assert kv.apply(encode_entry(exec_entry(watches, ["SET", "w", "2"]), T0)) == [OK]


def test_watch_versions_survive_a_snapshot(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "w", "v")
    watches = watch(kv, "w")
    copy = KVStateMachine()
    copy.restore(kv.snapshot())
    assert copy.read(b("WATCH", "w")) == kv.read(b("WATCH", "w"))
    at(copy, T0, "SET", "w", "changed")
    assert copy.apply(encode_entry(exec_entry(watches, ["GET", "w"]), T0)) is None


@pytest.mark.parametrize("payload", [b"", b"\xc1", msgpack.packb([1, 2]),
                                     msgpack.packb([[], [[b"EXEC", b"x"]]]),
                                     msgpack.packb([[[b"k", "x", 1]], []])])
def test_malformed_exec_payloads_are_errors_not_exceptions(payload: bytes,
                                                           kv: KVStateMachine) -> None:
    reply = kv.apply(encode_entry([b"EXEC", payload], T0))
    assert isinstance(reply, ErrorReply)
    assert validate([b"EXEC", payload]) == reply


# -- snapshots carry time ------------------------------------------------------------------


def test_snapshot_keeps_deadlines_indexes_and_now(kv: KVStateMachine) -> None:
    at(kv, T0, "SET", "k", "v", "PX", 1000)
    at(kv, T0 + 10, "SET", "j", "v")
    copy = KVStateMachine()
    copy.restore(kv.snapshot())
    assert copy == kv and copy.now == T0 + 10 and copy.deadline(b"k") == T0 + 1000
    assert copy.expired_keys(T0 + 1000, 10) == [b"k"]  # the expiry heap is rebuilt
    for machine in (kv, copy):
        assert at(machine, T0 + 1000, "EXPIRED", "k") == 1
    assert copy == kv


# -- model: a timed dict -------------------------------------------------------------------

KEYS = st.sampled_from([b"a", b"b", b"c"])


class AgainstTimedDict(RuleBasedStateMachine):
    """SET PX / PEXPIRE / PERSIST / GET / EXPIRED with advancing (sometimes lower) stamps,
    against a model of (value, deadline); a follower restored from a snapshot now and then
    must stay identical. Checks: never visible at or after its deadline, never gone before."""

    @initialize()
    def start(self) -> None:
        self.kv = KVStateMachine()
        self.follower = KVStateMachine()
        self.model: dict[bytes, tuple[bytes, int | None]] = {}
        self.now = T0

    def run(self, *args: bytes | str | int):
        entry = encode_entry(b(*args), self.stamp)
        reply = self.kv.apply(entry)
        assert self.follower.apply(entry) == reply
        return reply

    def expire_model(self) -> None:
        self.model = {k: (v, d) for k, (v, d) in self.model.items() if d is None or d > self.now}

    @rule(step=st.integers(-50, 200))
    def tick(self, step: int) -> None:
        self.stamp = T0 if step < 0 else self.now + step  # a lower stamp must change nothing
        self.now = max(self.now, self.stamp)
        self.run("EXISTS", "zz")  # any entry moves the machine's time to its stamp
        self.expire_model()

    @initialize()
    def first_stamp(self) -> None:
        self.stamp = T0

    @rule(key=KEYS, ttl=st.one_of(st.none(), st.integers(1, 300)))
    def set(self, key: bytes, ttl: int | None) -> None:
        if ttl is None:
            assert self.run("SET", key, "v") == OK
        else:
            assert self.run("SET", key, "v", "PX", ttl) == OK
        self.model[key] = (b"v", None if ttl is None else self.now + ttl)

    @rule(key=KEYS, ttl=st.integers(-5, 300))
    def pexpire(self, key: bytes, ttl: int) -> None:
        assert self.run("PEXPIRE", key, ttl) == int(key in self.model)
        if key in self.model:
            self.model[key] = (self.model[key][0], self.now + ttl)
            self.expire_model()

    @rule(key=KEYS)
    def persist(self, key: bytes) -> None:
        had = key in self.model and self.model[key][1] is not None
        assert self.run("PERSIST", key) == int(had)
        if key in self.model:
            self.model[key] = (self.model[key][0], None)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=3), lag=st.integers(0, 300))
    def leader_expires(self, keys: list[bytes], lag: int) -> None:
        # The leader's clock may be ahead of this entry's stamp: only due keys may go.
        self.run("EXPIRED", *keys)

    @rule(key=KEYS, ahead=st.integers(0, 300))
    def read_at_a_node_clock(self, key: bytes, ahead: int) -> None:
        value, deadline = self.model.get(key, (None, None))
        expected = value if deadline is None or deadline > self.now + ahead else None
        assert self.kv.read([b"GET", key], self.now + ahead) == expected

    @rule()
    def follower_by_snapshot(self) -> None:
        self.follower = KVStateMachine()
        self.follower.restore(self.kv.snapshot())

    @invariant()
    def agrees(self) -> None:
        for key in (b"a", b"b", b"c"):
            value, deadline = self.model.get(key, (None, None))
            assert self.kv.read([b"GET", key]) == value
            ttl = self.kv.read([b"PTTL", key])
            assert ttl == (-2 if value is None else -1 if deadline is None else deadline - self.now)
        assert self.follower == self.kv


AgainstTimedDict.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                              deadline=None)
TestAgainstTimedDict = AgainstTimedDict.TestCase


# -- determinism with time -----------------------------------------------------------------

TIMED_COMMAND = st.one_of(
    st.tuples(st.sampled_from([b"SET"]), KEYS, st.just(b"v"), st.sampled_from([b"PX", b"EX"]),
              st.integers(-1, 300).map(lambda i: str(i).encode())),
    st.tuples(st.sampled_from([b"PEXPIRE", b"EXPIRE", b"PEXPIREAT", b"GETEX"]), KEYS,
              st.sampled_from([b"PX", b"50", str(T0 + 100).encode(), b"NX", b"GT"])),
    st.tuples(st.sampled_from([b"INCR", b"GET", b"PERSIST", b"DEL", b"TTL", b"EXISTS",
                               b"RANDOMKEY", b"DBSIZE"]), KEYS),
    st.tuples(st.sampled_from([b"EXPIRED", b"RENAME", b"COPY", b"MSETNX"]), KEYS, KEYS),
).map(list)
TIMED_PROGRAM = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(T0 - 100, T0 + 600)), TIMED_COMMAND), max_size=40)


@settings(max_examples=80, deadline=None)
@given(TIMED_PROGRAM, st.integers(0, 40))
def test_replicas_agree_on_any_stamped_history(program: list, cut: int) -> None:
    """Two replicas, one of them restored from a snapshot part way: same replies, state."""
    one, two = KVStateMachine(), KVStateMachine()
    for i, (stamp, args) in enumerate(program):
        if i == cut:
            two = KVStateMachine()
            two.restore(one.snapshot())
        entry = encode_entry(args, stamp)
        reply = one.apply(entry)
        assert two.apply(entry) == reply
        assert not isinstance(reply, ErrorReply) or reply.text.startswith("ERR")
    assert one == two and one.snapshot() == two.snapshot()
    for key in (b"a", b"b", b"c"):  # nothing visible past its deadline at the applied now
        deadline = one.deadline(key)
        if one.read([b"EXISTS", key]) == 1 and deadline is not None:
            assert deadline > one.now


def test_the_expiry_heap_stays_bounded_on_a_node_that_never_leads(kv: KVStateMachine) -> None:
    # Only the leader's expiry pass popped stale candidates: a follower kept one heap entry
    # for every write with a TTL for good (harden11: 100,000 SET PX to 10 keys, 100,000).
    for i in range(5_000):
        at(kv, T0 + i, "SET", f"k{i % 10}", "v", "PX", 1_000_000)
    assert len(kv._heap) <= 2 * 10 + machine_module.HEAP_SLACK
    # What the leader would expire is unchanged: each key once, at its last deadline.
    assert sorted(kv.expired_keys(T0 + 10_000_000, 100)) == [b"k%d" % i for i in range(10)]


def test_a_rebuilt_heap_keeps_a_deadline_a_failed_script_restored(kv: KVStateMachine,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(machine_module, "HEAP_SLACK", 0)  # rebuild at every push past 2x
    at(kv, T0, "SET", "k", "v", "PX", 100)
    record = kv.key_record(b"k")
    at(kv, T0, "PERSIST", "k")
    kv.restore_key(b"k", record)
    assert kv.expired_keys(T0 + 100, 10) == [b"k"]
