"""raftkv.kv: the command table and every command's replies, errors worded as Redis 7 does."""

from __future__ import annotations

import msgpack
import pytest

from raftkv.kv import (
    COMMANDS,
    KVDecodeError,
    KVStateMachine,
    check_arity,
    decode_command,
    decode_entry,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
    lookup,
    validate,
)
from wire.reply import OK, ErrorReply

# Redis 7 error texts (server.c, t_string.c, db.c, object.c), the server sends them verbatim.
SYNTAX = ErrorReply("ERR syntax error")
NOT_INT = ErrorReply("ERR value is not an integer or out of range")
OVERFLOW = ErrorReply("ERR increment or decrement would overflow")
DECR_OVERFLOW = ErrorReply("ERR decrement would overflow")
BAD_CURSOR = ErrorReply("ERR invalid cursor")
TOO_LONG = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")

MAX = 2**63 - 1
MIN = -(2**63)


def arity(name: str) -> ErrorReply:
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


def b(*args: str | bytes) -> list[bytes]:
    return [a.encode() if isinstance(a, str) else a for a in args]


@pytest.fixture
def kv() -> KVStateMachine:
    return KVStateMachine()


def run(kv: KVStateMachine, *args: str | bytes):
    """Apply a command through the log encoding, as a node does."""
    return kv.apply(encode_entry(b(*args)))


# -- codec ----------------------------------------------------------------------------------


def test_encode_decode_round_trip_keeps_bytes_exactly() -> None:
    args = [b"SET", b"k\x00\xff", b"", b"\r\n"]
    data = encode_entry(args)
    assert msgpack.unpackb(data) == args  # a plain msgpack array of bin strings
    assert decode_command(data) == args


def test_encode_rejects_empty_and_non_bytes() -> None:
    with pytest.raises(ValueError):
        encode_entry([])
    with pytest.raises(TypeError):
        encode_entry([b"SET", "k", b"v"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing
        b"\xc1",  # reserved msgpack byte
        msgpack.packb([b"GET", b"k"]) + b"\x00",  # trailing garbage
        msgpack.packb([]),  # empty command
        msgpack.packb(b"GET"),  # not an array
        msgpack.packb(["GET", "k"]),  # str, not bin
        msgpack.packb([b"GET", 1]),  # an integer argument
        msgpack.packb({b"GET": b"k"}),  # a map
        msgpack.packb([b"GET", [b"k"]]),  # nested
    ],
)
def test_decode_rejects_what_is_not_a_command(data: bytes) -> None:
    with pytest.raises(KVDecodeError):
        decode_command(data)


def test_apply_turns_a_corrupt_entry_into_an_error_reply(kv: KVStateMachine) -> None:
    reply = kv.apply(b"\xc1")
    assert isinstance(reply, ErrorReply)
    assert reply.text.startswith("ERR corrupt command in the log")
    assert len(kv) == 0


# -- command table ----------------------------------------------------------------------------


def test_table_flags_and_arity() -> None:
    writes = {
        "set", "del", "incr", "decr", "incrby", "decrby", "append", "mset", "flushall", "cas",
        "setnx", "setex", "psetex", "getex", "getdel", "getset", "unlink", "incrbyfloat",
        "setrange", "msetnx", "rename", "renamenx", "copy", "flushdb", "expire", "pexpire",
        "expireat", "pexpireat", "persist", "eval", "evalsha", "script", "exec", "expired",
        "session_open", "session_close", "once", "publish", "publish_member", "member_level",
        "budget",
    }
    reads = {
        "get", "exists", "strlen", "mget", "keys", "scan", "dbsize", "getrange", "touch",
        "type", "object", "ttl", "pttl", "expiretime", "pexpiretime", "randomkey", "eval_ro",
        "evalsha_ro", "watch",
    }
    assert {n for n, s in COMMANDS.items() if s.is_write} == writes
    assert {n for n, s in COMMANDS.items() if not s.is_write} == reads
    assert all(s.flags in ({"write"}, {"read"}) for s in COMMANDS.values())
    expected = {
        "set": -3,
        "get": 2,
        "del": -2,
        "mset": -3,
        "mget": -2,
        "cas": 4,
        "dbsize": 1,
        "scan": -2,
        "flushall": -1,
        "incrby": 3,
        "exists": -2,
        "keys": 2,
    }
    assert {n: COMMANDS[n].arity for n in expected} == expected


def test_lookup_is_case_insensitive_and_binary_exact() -> None:
    assert lookup(b"GeT") is COMMANDS["get"]
    assert lookup("SET") is COMMANDS["set"]
    assert lookup(b"get\x00") is None  # Redis looks the whole name up, NUL included
    assert lookup(b"nope") is None


def test_keys_of_a_command() -> None:
    assert COMMANDS["mset"].keys(b("MSET", "a", "1", "b", "2")) == [b"a", b"b"]
    assert COMMANDS["del"].keys(b("DEL", "a", "b")) == [b"a", b"b"]
    assert COMMANDS["set"].keys(b("SET", "a", "1", "NX")) == [b"a"]
    assert COMMANDS["scan"].keys(b("SCAN", "0")) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (b("GET"), arity("get")),
        (b("get", "a", "b"), arity("get")),
        (b("SET", "k"), arity("set")),
        (b("CAS", "k", "v"), arity("cas")),
        (b("DBSIZE", "x"), arity("dbsize")),
        (b("MSET", "a", "1", "b"), arity("mset")),  # odd pairs count as arity
        (b("DEL"), arity("del")),
        (
            b("foo", "a", "b"),
            ErrorReply("ERR unknown command 'foo', with args beginning with: 'a' 'b' "),
        ),
        (b("FOO"), ErrorReply("ERR unknown command 'FOO', with args beginning with: ")),
        ([], ErrorReply("ERR unknown command '', with args beginning with: ")),
    ],
)
def test_check_arity_errors(args: list[bytes], error: ErrorReply, kv: KVStateMachine) -> None:
    assert check_arity(args) == error
    assert validate(args) == error
    if args:
        assert kv.apply(encode_entry(args)) == error  # apply agrees with the pre-check


def test_check_arity_accepts_good_counts() -> None:
    for args in (
        b("get", "k"),
        b("SET", "k", "v", "NX", "GET"),
        b("mset", "a", "1", "b", "2"),
        b("flushall"),
        b("scan", "0", "count", "5"),
        b("dbsize"),
        b("del", "a", "b"),
    ):
        assert check_arity(args) is None


def test_unknown_command_text_follows_redis_formatting() -> None:
    # Name cut at 128 bytes and at a NUL; args share a 128-byte budget, quotes included;
    # CR and LF become spaces.
    name = b"x" * 200
    text = check_arity([name]).text
    assert text == "ERR unknown command '" + "x" * 128 + "', with args beginning with: "
    assert check_arity([b"ab\x00cd", b"e\x00f"]).text == (
        "ERR unknown command 'ab', with args beginning with: 'e' "
    )
    assert check_arity([b"a\r\nb", b"c\nd"]).text == (
        "ERR unknown command 'a  b', with args beginning with: 'c d' "
    )
    long_args = [b"nope", b"a" * 100, b"b" * 100, b"c" * 5]
    # first arg: 100 + 3 bytes; second gets 128 - 103 = 25 bytes; then the budget is spent.
    assert check_arity(long_args).text == (
        "ERR unknown command 'nope', with args beginning with: "
        + "'"
        + "a" * 100
        + "' '"
        + "b" * 25
        + "' "
    )
    assert "\ufffd" in check_arity([b"\xff"]).text  # not UTF-8: still a sendable str


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (b("SET", "k", "v", "NX", "XX"), SYNTAX),
        (b("SET", "k", "v", "XX", "NX"), SYNTAX),
        (b("SET", "k", "v", "EX", "10", "PX", "10"), SYNTAX),
        (b("SET", "k", "v", "KEEPTTL", "EX", "1"), SYNTAX),
        (b("SET", "k", "v", "EX"), SYNTAX),
        (b("SET", "k", "v", "EXAT", "0"), ErrorReply("ERR invalid expire time in 'set' command")),
        (b("SET", "k", "v", "bogus"), SYNTAX),
        (b("INCRBY", "k", "x"), NOT_INT),
        (b("INCRBY", "k", "1.5"), NOT_INT),
        (b("DECRBY", "k", ""), NOT_INT),
        (b("DECRBY", "k", str(MIN)), DECR_OVERFLOW),
        (b("FLUSHALL", "now"), SYNTAX),
        (b("FLUSHALL", "ASYNC", "SYNC"), SYNTAX),
        (b("SCAN", "x"), BAD_CURSOR),
        (b("SCAN", "0", "COUNT", "0"), SYNTAX),
        (b("SCAN", "0", "COUNT", "x"), NOT_INT),
        (b("SCAN", "0", "COUNT"), SYNTAX),
        (b("SCAN", "0", "NOPE", "1"), SYNTAX),
    ],
)
def test_validate_catches_syntax_before_proposing(
    args: list[bytes], error: ErrorReply, kv: KVStateMachine
) -> None:
    assert check_arity(args) is None
    assert validate(args) == error
    assert kv.apply(encode_entry(args)) == error
    assert len(kv) == 0


def test_validate_passes_commands_that_can_only_fail_on_data() -> None:
    for args in (
        b("INCR", "k"),
        b("APPEND", "k", "v"),
        b("SET", "k", "v", "nx", "get"),
        b("DECRBY", "k", str(MAX)),
        b("FLUSHALL", "async"),
        b("SCAN", "7", "match", "*"),
    ):
        assert validate(args) is None


# -- writes --------------------------------------------------------------------------------


def test_set_and_get(kv: KVStateMachine) -> None:
    assert run(kv, "GET", "k") is None
    assert run(kv, "SET", "k", "v1") == OK
    assert run(kv, "get", "k") == b"v1"
    assert run(kv, "SeT", "k", b"\x00\xff") == OK
    assert run(kv, "GET", "k") == b"\x00\xff"


def test_set_nx_xx_get(kv: KVStateMachine) -> None:
    assert run(kv, "SET", "k", "a", "XX") is None
    assert run(kv, "GET", "k") is None
    assert run(kv, "SET", "k", "a", "NX") == OK
    assert run(kv, "SET", "k", "b", "nx") is None
    assert run(kv, "GET", "k") == b"a"
    assert run(kv, "SET", "k", "b", "xx") == OK
    assert run(kv, "GET", "k") == b"b"
    assert run(kv, "SET", "k", "c", "GET") == b"b"
    assert run(kv, "SET", "new", "c", "get") is None
    assert run(kv, "GET", "new") == b"c"
    # GET with NX/XX answers the old value whether or not the write happened.
    assert run(kv, "SET", "k", "d", "NX", "GET") == b"c"
    assert run(kv, "GET", "k") == b"c"
    assert run(kv, "SET", "missing", "d", "XX", "GET") is None
    assert run(kv, "EXISTS", "missing") == 0
    assert run(kv, "SET", "k", "e", "NX", "NX") is None  # a repeated option is fine
    assert run(kv, "SET", "k", "e", "nx\x00junk") is None  # option words end at NUL, like C


def test_del_counts_keys_removed(kv: KVStateMachine) -> None:
    run(kv, "MSET", "a", "1", "b", "2")
    assert run(kv, "DEL", "a", "a", "b", "zz") == 2
    assert run(kv, "DEL", "a") == 0
    assert len(kv) == 0


def test_incr_decr_family(kv: KVStateMachine) -> None:
    assert run(kv, "INCR", "n") == 1
    assert run(kv, "INCRBY", "n", "41") == 42
    assert run(kv, "DECR", "n") == 41
    assert run(kv, "DECRBY", "n", "-9") == 50
    assert run(kv, "INCRBY", "n", "-100") == -50
    assert run(kv, "GET", "n") == b"-50"
    assert run(kv, "DECRBY", "fresh", "5") == -5


@pytest.mark.parametrize(
    "stored",
    [
        "abc",
        "",
        " 1",
        "1 ",
        "+1",
        "01",
        "-0",
        "1.0",
        "0x1",
        str(MAX + 1),
        str(MIN - 1),
        "1" * 25,
        "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit to Python, not to Redis
    ],
)
def test_incr_of_a_non_integer_value(kv: KVStateMachine, stored: str) -> None:
    run(kv, "SET", "n", stored)
    for command in (["INCR", "n"], ["DECR", "n"], ["INCRBY", "n", "1"], ["DECRBY", "n", "1"]):
        assert run(kv, *command) == NOT_INT
    assert run(kv, "GET", "n") == stored.encode()


def test_incr_accepts_the_exact_64_bit_range(kv: KVStateMachine) -> None:
    run(kv, "SET", "n", str(MAX - 1))
    assert run(kv, "INCR", "n") == MAX
    assert run(kv, "INCR", "n") == OVERFLOW
    assert run(kv, "INCRBY", "n", "1") == OVERFLOW
    assert run(kv, "GET", "n") == str(MAX).encode()
    run(kv, "SET", "n", str(MIN + 1))
    assert run(kv, "DECR", "n") == MIN
    assert run(kv, "DECR", "n") == OVERFLOW
    assert run(kv, "DECRBY", "n", str(MAX)) == OVERFLOW
    assert run(kv, "INCRBY", "n", str(MAX)) == -1
    assert run(kv, "INCRBY", "m", str(MIN)) == MIN
    assert run(kv, "DECRBY", "m", str(-MAX)) == -1
    assert run(kv, "INCRBY", "k", str(MAX + 1)) == NOT_INT
    assert run(kv, "INCRBY", "k", "0") == 0
    assert run(kv, "INCRBY", "k", "-0") == NOT_INT


def test_append(kv: KVStateMachine) -> None:
    assert run(kv, "APPEND", "k", "ab") == 2
    assert run(kv, "APPEND", "k", "") == 2
    assert run(kv, "APPEND", "k", "cd") == 4
    assert run(kv, "GET", "k") == b"abcd"
    assert run(kv, "APPEND", "e", "") == 0
    assert run(kv, "EXISTS", "e") == 1  # Redis creates the key even for an empty suffix


def test_append_past_the_size_limit() -> None:
    kv = KVStateMachine(max_value_len=5)
    assert run(kv, "APPEND", "k", "abc") == 3
    assert run(kv, "APPEND", "k", "de") == 5
    assert run(kv, "APPEND", "k", "f") == TOO_LONG
    assert run(kv, "GET", "k") == b"abcde"


def test_mset(kv: KVStateMachine) -> None:
    assert run(kv, "MSET", "a", "1", "b", "2", "a", "3") == OK
    assert kv.state_copy() == {b"a": b"3", b"b": b"2"}


def test_cas(kv: KVStateMachine) -> None:
    assert run(kv, "CAS", "k", "", "x") == 0  # a missing key never matches, not even ""
    assert run(kv, "EXISTS", "k") == 0
    run(kv, "SET", "k", "old")
    assert run(kv, "CAS", "k", "other", "new") == 0
    assert run(kv, "GET", "k") == b"old"
    assert run(kv, "CAS", "k", "old", "new") == 1
    assert run(kv, "GET", "k") == b"new"
    assert run(kv, "CAS", "k", "old", "newer") == 0
    run(kv, "SET", "e", "")
    assert run(kv, "CAS", "e", "", "filled") == 1
    assert run(kv, "GET", "e") == b"filled"


def test_flushall(kv: KVStateMachine) -> None:
    for option in ([], ["ASYNC"], ["sync"]):
        run(kv, "MSET", "a", "1", "b", "2")
        assert run(kv, "FLUSHALL", *option) == OK
        assert len(kv) == 0


# -- reads ---------------------------------------------------------------------------------


def test_reads_through_read_and_apply(kv: KVStateMachine) -> None:
    run(kv, "MSET", "a", "1", "b", "22")
    assert kv.read(b("GET", "a")) == b"1"
    assert kv.read(b("EXISTS", "a", "a", "b", "nope")) == 3  # repeats count
    assert kv.read(b("STRLEN", "b")) == 2
    assert kv.read(b("STRLEN", "nope")) == 0
    assert kv.read(b("MGET", "a", "nope", "b")) == [b"1", None, b"22"]
    assert kv.read(b("DBSIZE")) == 2
    assert run(kv, "MGET", "a") == [b"1"]  # a read in the log is answered too


def test_read_refuses_writes_and_reports_errors(kv: KVStateMachine) -> None:
    reply = kv.read(b("SET", "k", "v"))
    assert isinstance(reply, ErrorReply) and "write command" in reply.text
    assert kv.read(b("DEL", "k")) == ErrorReply(
        "ERR 'del' is a write command: it must go through the log"
    )
    assert len(kv) == 0
    assert kv.read(b("GET")) == arity("get")
    assert kv.read(b("nope")) == ErrorReply(
        "ERR unknown command 'nope', with args beginning with: "
    )
    assert kv.read([]) == ErrorReply("ERR unknown command '', with args beginning with: ")


def test_keys_is_sorted_and_uses_the_glob(kv: KVStateMachine) -> None:
    run(kv, "MSET", "user:2", "x", "user:10", "x", "item:1", "x", "", "empty")
    assert kv.read(b("KEYS", "*")) == [b"", b"item:1", b"user:10", b"user:2"]
    assert kv.read(b("KEYS", "user:?")) == [b"user:2"]
    assert kv.read(b("KEYS", "user:[0-9]*")) == [b"user:10", b"user:2"]
    assert kv.read(b("KEYS", "**")) == [b"item:1", b"user:10", b"user:2"]  # "" only for "*"
    assert kv.read(b("KEYS", "nothing")) == []


def test_reads_do_not_change_state(kv: KVStateMachine) -> None:
    run(kv, "MSET", "a", "1", "b", "2")
    before = kv.snapshot()
    for args in (
        b("GET", "a"),
        b("EXISTS", "a"),
        b("MGET", "x"),
        b("KEYS", "*"),
        b("SCAN", "0"),
        b("STRLEN", "a"),
        b("DBSIZE"),
        b("SET", "a", "9"),
    ):
        kv.read(args)
    assert kv.snapshot() == before


# -- scan ----------------------------------------------------------------------------------


def scan_all(kv: KVStateMachine, *options: str) -> list[bytes]:
    cursor, seen = b"0", []
    for _ in range(10_000):
        cursor, keys = kv.read(b("SCAN", cursor, *options))
        seen += keys
        if cursor == b"0":
            return seen
    raise AssertionError("scan did not end")


def test_scan_returns_every_key_once(kv: KVStateMachine) -> None:
    keys = [f"key:{i}".encode() for i in range(250)]
    for key in keys:
        run(kv, "SET", key, "v")
    seen = scan_all(kv, "COUNT", "7")
    assert sorted(seen) == sorted(keys)
    assert scan_all(kv) == seen  # the order is fixed (hash order), count only batches it
    cursor, batch = kv.read(b("SCAN", "0"))
    assert len(batch) == 10 and cursor != b"0"  # default COUNT 10


def test_scan_match_and_type(kv: KVStateMachine) -> None:
    for i in range(40):
        run(kv, "SET", f"{'a' if i % 2 else 'b'}:{i}", "v")
    assert sorted(scan_all(kv, "MATCH", "a:*", "COUNT", "3")) == sorted(
        f"a:{i}".encode() for i in range(1, 40, 2)
    )
    assert len(scan_all(kv, "type", "STRING")) == 40
    assert scan_all(kv, "TYPE", "list") == []  # Redis 7: an unknown type matches nothing
    assert len(scan_all(kv, "MATCH", "x", "MATCH", "*")) == 40  # the last option wins


def test_scan_survives_concurrent_writes(kv: KVStateMachine) -> None:
    stable = {f"stable:{i}".encode() for i in range(300)}
    for key in stable:
        run(kv, "SET", key, "v")
    cursor, seen, step = b"0", [], 0
    while True:
        cursor, keys = kv.read(b("SCAN", cursor, "COUNT", "5"))
        seen += keys
        # Churn between batches: new keys, deletes of earlier ones, rewrites of stable ones
        # (the population stays bounded, so the scan ends).
        step += 1
        for j in range(step % 7 * 10):
            run(kv, "SET", f"churn:{step}:{j}", "x")
        run(kv, "DEL", *[f"churn:{step - 1}:{j}" for j in range(70)])
        run(kv, "SET", sorted(stable)[step % 300], "rewritten")
        if cursor == b"0":
            break
    assert stable <= set(seen)
    assert len([k for k in seen if k in stable]) == len(stable)  # and only once each


def test_scan_after_flushall_and_restore(kv: KVStateMachine) -> None:
    run(kv, "MSET", "a", "1", "b", "2")
    assert sorted(scan_all(kv)) == [b"a", b"b"]
    run(kv, "FLUSHALL")
    assert scan_all(kv) == []
    run(kv, "SET", "c", "3")
    assert scan_all(kv) == [b"c"]
    other = KVStateMachine()
    run(other, "MSET", "x", "1", "y", "2")
    kv.restore(other.snapshot())
    assert sorted(scan_all(kv)) == [b"x", b"y"]


@pytest.mark.parametrize(
    ("cursor", "valid"),
    [
        ("0", True),
        ("123", True),
        ("", True),
        ("007", True),
        ("+5", True),
        ("-1", True),
        (str(2**64 - 1), True),
        ("5\x00junk", True),
        (str(2**64), False),
        (" 1", False),
        ("\t1", False),
        ("1 ", False),
        ("abc", False),
        ("+", False),
        ("-", False),
        ("1.5", False),
    ],
)
def test_scan_cursor_parsing_matches_redis(kv: KVStateMachine, cursor: str, valid: bool) -> None:
    reply = kv.read(b("SCAN", cursor))
    if valid:
        assert isinstance(reply, list)
    else:
        assert reply == BAD_CURSOR


def test_a_cursor_past_every_key_ends_the_scan(kv: KVStateMachine) -> None:
    run(kv, "SET", "k", "v")
    assert kv.read(b("SCAN", str(2**64 - 1))) == [b"0", []]
    assert kv.read(b("SCAN", "-1")) == [b"0", []]


# -- snapshot ------------------------------------------------------------------------------


def test_snapshot_state_without_copies_encodes_the_same_and_copies_stay_as_taken(
        kv: KVStateMachine) -> None:
    run(kv, "MSET", "a", "1", "b", "2")
    run(kv, "DEL", "b")  # (a tomb)
    copied, shared = kv.snapshot_state(), kv.snapshot_state(copy=False)
    assert encode_snapshot(copied) == encode_snapshot(shared) == kv.snapshot()
    run(kv, "SET", "a", "changed")
    # The copies are the state as it was; the shared maps are the machine's own (only for
    # an encoder that runs before the next apply, as a forked child's does).
    assert copied.data == {b"a": b"1"} and shared.data == {b"a": b"changed"}
    assert encode_snapshot(kv.snapshot_state(copy=False)) == kv.snapshot()


def test_snapshot_is_canonical_and_restores(kv: KVStateMachine) -> None:
    run(kv, "MSET", "b", "2", "a", "1", "c", "\x00")
    other = KVStateMachine()
    run(other, "MSET", "c", "\x00", "a", "1", "b", "2")
    # Same history up to the order of keys in one entry: identical state bytes (maps are
    # sorted); the change feeds differ (each lists the MSET's keys in its order).
    state = encode_snapshot(kv.snapshot_state(with_feed=False))
    assert state == encode_snapshot(other.snapshot_state(with_feed=False))
    assert kv.snapshot() != other.snapshot()
    assert kv == other and kv.digest() == other.digest()
    version, values, expires, mods, now, seq, gone, scripts, tombs = msgpack.unpackb(state)
    assert (version, values) == (2, {b"a": b"1", b"b": b"2", b"c": b"\x00"})
    assert msgpack.unpackb(kv.snapshot())[:9] == [4, *msgpack.unpackb(state)[1:]]
    assert (expires, now, seq, gone, scripts, tombs) == ({}, 0, 1, 0, {}, {})
    assert mods == {b"a": 1, b"b": 1, b"c": 1}
    fresh = KVStateMachine()
    fresh.restore(kv.snapshot())
    assert fresh == kv and len(fresh) == 3
    run(other, "SET", "d", "4")
    assert other != kv and other.digest() != kv.digest()


def test_version_1_snapshots_still_restore(kv: KVStateMachine) -> None:
    """Snapshots written before expiry existed: values only, no deadlines, indexes 0."""
    kv.restore(msgpack.packb([1, {b"a": b"1", b"b": b""}], use_bin_type=True))
    assert kv.state_copy() == {b"a": b"1", b"b": b""}
    assert kv.read(b("PTTL", "a")) == -1
    assert run(kv, "GET", "a") == b"1"


def test_decode_snapshot_then_replace_is_restore(kv: KVStateMachine) -> None:
    """The runtime decodes in a worker thread and replaces on the loop: same result."""
    run(kv, "SET", "a", "1")
    run(kv, "SET", "b", "")
    data = decode_snapshot(kv.snapshot())
    assert data.data == {b"a": b"1", b"b": b""}
    other = KVStateMachine()
    run(other, "SET", "stale", "x")
    other.replace(data)
    assert other == kv and other.digest() == kv.digest()


def test_restore_replaces_everything(kv: KVStateMachine) -> None:
    run(kv, "SET", "old", "1")
    kv.restore(KVStateMachine().snapshot())
    assert len(kv) == 0


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",
        msgpack.packb([1]),
        msgpack.packb([2, {}]),  # unknown version
        msgpack.packb([True, {}]),
        msgpack.packb([1, []]),  # an array, not a map
        msgpack.packb([1, {b"a": "str"}]),
        msgpack.packb([1, {"a": b"1"}]),
        msgpack.packb([1, {b"b": b"1", b"a": b"2"}]),  # not sorted: not what snapshot() makes
        msgpack.packb([1, {b"a": b"1"}]) + b"\x00",
        msgpack.packb([1, {(1,): b"1"}]),  # unhashable key
    ],
)
def test_restore_rejects_garbage_and_keeps_state(kv: KVStateMachine, blob: bytes) -> None:
    run(kv, "SET", "keep", "me")
    with pytest.raises(KVDecodeError):
        kv.restore(blob)
    assert kv.state_copy() == {b"keep": b"me"}


def test_every_table_command_has_a_handler(kv: KVStateMachine) -> None:
    for name, spec in COMMANDS.items():
        args = [name.encode()] + [b"0"] * (abs(spec.arity) - 1)
        reply = run(kv, *args)
        assert not (isinstance(reply, ErrorReply) and "unknown command" in reply.text)


@pytest.mark.parametrize("args", [
    [b"SET", b"k", b"v" * 100],
    [b"set", b"k=v"],
    [b"MSET", *[b"k%d" % i for i in range(40)]],
    [b"SET", bytearray(b"k"), memoryview(b"v" * 70_000)],
    [b"APPEND", b"", b""],
])
@pytest.mark.parametrize("stamp", [None, 0, 1_733_380_000_123, 2**63 - 1])
def test_an_entry_is_msgpack_of_stamp_and_args(args: list[bytes], stamp: int | None) -> None:
    """The log's format (the entry encoder shares one Packer, not one per call): the same
    bytes as msgpack.packb, one entry after another."""
    items = [bytes(a) for a in args] if stamp is None else [stamp, *map(bytes, args)]
    for _ in range(2):
        data = encode_entry(args, stamp)
        assert data == msgpack.packb(items, use_bin_type=True)
        assert decode_entry(data) == (stamp, [bytes(a) for a in args])
