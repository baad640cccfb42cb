"""Pure parts of the client: retry safety, redis-cli formatting, line parsing, completion."""

from __future__ import annotations

import json

import pytest

from client.connection import parse_endpoint, parse_endpoints
from client.errors import OutcomeUnknown, ResponseError, TryAgain, error_from_reply
from client.format import JSON, RAW, TTY, format_reply, quote
from client.help import complete, usage
from client.repl import parse_line
from client.safety import Safety, classify
from raftkv.kv import COMMANDS as TABLE
from wire.reply import SimpleString


@pytest.mark.parametrize(("args", "safety"), [
    (["GET", "k"], Safety.READ), (["mget", "a", "b"], Safety.READ),
    (["SCAN", "0"], Safety.READ), (["raft", "status"], Safety.READ),
    (["INFO", "raft"], Safety.READ), (["PING"], Safety.READ),
    (["SET", "k", "v"], Safety.UNSAFE), (["set", "k", "v", "xx"], Safety.UNSAFE),
    (["DEL", "k"], Safety.UNSAFE), (["MSET", "a", "1"], Safety.UNSAFE),
    (["FLUSHALL"], Safety.UNSAFE),
    (["SET", "k", "v", "GET"], Safety.UNSAFE), (["SET", "k", "v", "nx"], Safety.UNSAFE),
    (["INCR", "k"], Safety.UNSAFE), (["DECR", "k"], Safety.UNSAFE),
    (["INCRBY", "k", "1"], Safety.UNSAFE), (["DECRBY", "k", "1"], Safety.UNSAFE),
    (["APPEND", "k", "v"], Safety.UNSAFE), (["CAS", "k", "a", "b"], Safety.UNSAFE),
    (["RAFT", "TRANSFER", "2"], Safety.UNSAFE), (["SOMETHINGNEW"], Safety.UNSAFE),
    ([], Safety.UNSAFE),
    ([b"get", b"k"], Safety.READ),
    (["SET", "k", "v", "PX", "100"], Safety.UNSAFE), (["SET", "k", "v", "ex", "1"], Safety.UNSAFE),
    (["SET", "k", "v", "PXAT", "100"], Safety.UNSAFE), (["TTL", "k"], Safety.READ),
    (["PEXPIREAT", "k", "100"], Safety.UNSAFE), (["EXPIRE", "k", "1"], Safety.UNSAFE),
    (["EVAL", "return 1", "0"], Safety.UNSAFE), (["EVAL_RO", "return 1", "0"], Safety.READ),
    (["EXEC"], Safety.UNSAFE), (["MULTI"], Safety.UNSAFE),
])
def test_classify(args: list[str], safety: Safety) -> None:
    assert classify(args) is safety


def test_error_types_follow_the_reply_code() -> None:
    assert type(error_from_reply("TRYAGAIN no leader")) is TryAgain
    assert type(error_from_reply("UNKNOWN timed out")) is OutcomeUnknown
    err = error_from_reply("ERR syntax error")
    assert type(err) is ResponseError and err.code == "ERR" and err.text == "ERR syntax error"
    assert issubclass(TryAgain, ResponseError) and issubclass(OutcomeUnknown, ResponseError)


def test_endpoints() -> None:
    assert parse_endpoint("[::1]:7001") == ("::1", 7001)
    assert parse_endpoints(" a:1, b:2,a:1,") == ["a:1", "b:2"]
    assert parse_endpoints(None) == ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
    for bad in ("a", "a:", ":1", "a:x", "a:70000", ""):
        with pytest.raises(ValueError):
            parse_endpoints(bad)


def test_quote_like_redis_cli() -> None:
    assert quote(b'he said "hi"\\\n\r\t\x07\x08\x00\xff~') == (
        r'"he said \"hi\"\\\n\r\t\a\b\x00\xff~"'
    )


def test_tty_format() -> None:
    assert format_reply(b"hello") == '"hello"'
    assert format_reply(None) == "(nil)"
    assert format_reply(3) == "(integer) 3"
    assert format_reply(SimpleString("OK")) == "OK"
    assert format_reply(ResponseError("ERR boom")) == "(error) ERR boom"
    assert format_reply([]) == "(empty array)"
    assert format_reply([b"a", None, 1]) == '1) "a"\n2) (nil)\n3) (integer) 1'
    assert format_reply([b"0", [b"a", b"b"]]) == '1) "0"\n2) 1) "a"\n   2) "b"'
    ten = format_reply([b"x"] * 10).splitlines()
    assert ten[0] == ' 1) "x"' and ten[9] == '10) "x"'
    nested = format_reply([[b"a", [b"b", b"c"]], b"d"])
    assert nested == '1) 1) "a"\n   2) 1) "b"\n      2) "c"\n2) "d"'


def test_raw_and_json_format() -> None:
    assert format_reply(b"hello", RAW) == "hello"
    assert format_reply(None, RAW) == ""
    assert format_reply(7, RAW) == "7"
    assert format_reply([b"0", [b"a", b"b"]], RAW) == "0\na\nb"
    assert format_reply(ResponseError("ERR boom"), RAW) == "ERR boom\n"
    assert json.loads(format_reply([b"a", None, 3, SimpleString("OK")], JSON)) == [
        "a", None, 3, "OK"]
    assert json.loads(format_reply(TryAgain("TRYAGAIN x"), JSON)) == {"error": "TRYAGAIN x"}
    assert format_reply(b"\xff", TTY) == '"\\xff"'


def test_parse_line() -> None:
    assert parse_line("set mykey=hello") == [b"set", b"mykey", b"hello"]
    assert parse_line("set k=a=b") == [b"set", b"k", b"a=b"]
    assert parse_line('SET k "two words"') == [b"SET", b"k", b"two words"]
    assert parse_line("get mykey") == [b"get", b"mykey"]
    assert parse_line("echo a=b") == [b"echo", b"a=b"]
    assert parse_line("   ") == []


def test_completion() -> None:
    assert sorted(complete("INC", "INC")) == ["INCR", "INCRBY", "INCRBYFLOAT"]
    assert sorted(complete("inc", "inc")) == ["incr", "incrby", "incrbyfloat"]
    assert complete("RAFT S", "S") == ["STATUS", "SNAPSHOT"]
    assert complete("RAFT ", "") == ["STATUS", "TRANSFER", "SNAPSHOT", "ADDNODE", "PROMOTE",
                                     "REMOVENODE"]
    assert complete("help GETR", "GETR") == ["GETRANGE"]
    assert complete("SCRIPT L", "L") == ["LOAD"]
    assert complete("GET k", "k") == []
    assert "summary" in (usage("get") or "") and usage("nope") is None


def test_help_knows_every_command_of_the_table() -> None:
    missing = [name for name, spec in TABLE.items() if not spec.internal and usage(name) is None]
    assert missing == []
