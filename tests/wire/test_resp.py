"""wire.resp: the command parser against Redis 7's behaviour and texts, and the reply encoder."""

from __future__ import annotations

import itertools
import math

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import Connection

from wire import ProtocolError
from wire.reply import OK, Encoded, ErrorReply, Push, Replies, SimpleString
from wire.resp import (
    CommandParser,
    encode_command,
    encode_reply,
    encode_reply_chunks,
    split_args,
)


def parse_all(data: bytes, **limits: int) -> list[list[bytes]]:
    parser = CommandParser(**limits)
    parser.feed(data)
    return list(parser)


def run_split(data: bytes, cuts: list[int], **limits: int) -> tuple[list, str | None, int]:
    """Feed `data` cut at `cuts`, draining after every piece.

    Returns the commands, the protocol error text (or None) and the most bytes left
    buffered after any drain.
    """
    parser = CommandParser(**limits)
    cmds: list[list[bytes]] = []
    most = 0
    bounds = [0, *sorted(cuts), len(data)]
    try:
        for a, b in itertools.pairwise(bounds):
            parser.feed(data[a:b])
            cmds.extend(parser)
            most = max(most, parser.buffered)
    except ProtocolError as exc:
        return cmds, str(exc), most
    return cmds, None, most


def error_of(data: bytes, **limits: int) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_all(data, **limits)
    return str(info.value)


# --- multibulk ---------------------------------------------------------------------------


def test_multibulk_command() -> None:
    assert parse_all(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n") == [
        [b"SET", b"key", b"va\r\nl"]
    ]


def test_multibulk_binary_and_empty_arguments() -> None:
    assert parse_all(b"*2\r\n$0\r\n\r\n$3\r\n\x00\xff\n\r\n") == [[b"", b"\x00\xff\n"]]


def test_empty_and_null_multibulk_give_no_command() -> None:
    assert parse_all(b"*0\r\n*-1\r\n*-7\r\n*1\r\n$4\r\nPING\r\n") == [[b"PING"]]


def test_pipeline_of_many_commands_in_chunks() -> None:
    stream = b"".join(encode_command("SET", f"key:{i}", "v" * (i % 50)) for i in range(10_000))
    parser = CommandParser()
    cmds = []
    for i in range(0, len(stream), 4096):
        parser.feed(stream[i : i + 4096])
        cmds.extend(parser)
    assert len(cmds) == 10_000
    assert cmds[1234] == [b"SET", b"key:1234", b"v" * 34]
    assert parser.buffered == 0


def test_incomplete_input_waits_and_never_raises() -> None:
    data = encode_command("SET", "k", "v")
    parser = CommandParser()
    for byte in data[:-1]:
        parser.feed(bytes([byte]))
        assert parser.next_command() is None
    parser.feed(data[-1:])
    assert parser.next_command() == [b"SET", b"k", b"v"]
    assert parser.next_command() is None


def test_like_redis_the_bytes_after_a_header_cr_and_a_bulk_are_not_checked() -> None:
    assert parse_all(b"*1\rX$2\r\nokYZ") == [[b"ok"]]


@pytest.mark.parametrize(
    "header",
    [b"*abc", b"*", b"*01", b"*+1", b"* 1", b"*1 ", b"*-", b"*-0", b"*99999999999999999999"],
)
def test_invalid_multibulk_length(header: bytes) -> None:
    assert error_of(header + b"\r\n") == "Protocol error: invalid multibulk length"


def test_multibulk_count_over_the_limit() -> None:
    assert parse_all(b"*4\r\n", max_multibulk_len=4) == []  # waits for four bulks
    assert error_of(b"*5\r\n", max_multibulk_len=4) == "Protocol error: invalid multibulk length"


def test_a_short_multibulk_header_meets_the_same_limits() -> None:
    """A 4-byte header ("*3\\r\\n", read by one lookup) is held to the header limits the
    search for its CR applies: the count limit and the header's length limit."""
    command = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    assert parse_all(command, max_multibulk_len=3) == [[b"SET", b"k", b"v"]]
    assert error_of(command, max_multibulk_len=2) == "Protocol error: invalid multibulk length"
    assert error_of(command, max_inline_len=1) == "Protocol error: too big mbulk count string"
    assert parse_all(b"*3\r\n$3\r\nSET\r\n", max_inline_len=4) == []  # waits for the rest


@pytest.mark.parametrize(
    ("data", "got"),
    [
        (b"*1\r\nx3\r\n", "x"),
        (b"*2\r\n$1\r\na\r\n:1\r\n", ":"),
        (b"*1\r\n\r\n\r\n", " "),  # CR/LF in the text become spaces
    ],
)
def test_expected_dollar(data: bytes, got: str) -> None:
    assert error_of(data) == f"Protocol error: expected '$', got '{got}'"


def test_expected_dollar_with_nul_is_cut_like_a_c_string() -> None:
    assert error_of(b"*1\r\n\x00\r\n") == "Protocol error: expected '$', got '"


@pytest.mark.parametrize(
    "header", [b"$-1", b"$abc", b"$", b"$01", b"$1.5", b"$ 1", b"$99999999999999999999"]
)
def test_invalid_bulk_length(header: bytes) -> None:
    assert error_of(b"*1\r\n" + header + b"\r\n") == "Protocol error: invalid bulk length"


def test_bulk_over_the_limit_errors_before_its_payload_is_buffered() -> None:
    parser = CommandParser(max_bulk_len=100)
    parser.feed(b"*1\r\n$100\r\n")
    assert parser.next_command() is None  # 100 is allowed: waits for the payload
    parser = CommandParser(max_bulk_len=100)
    parser.feed(b"*1\r\n$101\r\n")
    with pytest.raises(ProtocolError, match=r"^Protocol error: invalid bulk length$"):
        parser.next_command()


def test_too_big_mbulk_count_string() -> None:
    limits = {"max_inline_len": 8}
    assert parse_all(b"*" + b"1" * 7, **limits) == []  # 8 bytes without CR: still waiting
    assert error_of(b"*" + b"1" * 8, **limits) == "Protocol error: too big mbulk count string"
    # Same verdict when the CR is already there: the split of the input does not matter.
    text = error_of(b"*" + b"1" * 8 + b"\r\n", **limits)
    assert text == "Protocol error: too big mbulk count string"


def test_too_big_bulk_count_string() -> None:
    limits = {"max_inline_len": 8}
    assert parse_all(b"*1\r\n$" + b"1" * 7, **limits) == []
    text = error_of(b"*1\r\n$" + b"1" * 8, **limits)
    assert text == "Protocol error: too big bulk count string"
    text = error_of(b"*1\r\nx" + b"1" * 8, **limits)  # the size check comes before the '$'
    assert text == "Protocol error: too big bulk count string"


# --- inline ------------------------------------------------------------------------------


def test_too_big_inline_request() -> None:
    limits = {"max_inline_len": 10}
    assert parse_all(b"a" * 10, **limits) == []
    assert parse_all(b"a" * 9 + b"\r\n", **limits) == [[b"a" * 9]]
    assert error_of(b"a" * 11, **limits) == "Protocol error: too big inline request"
    assert error_of(b"a" * 11 + b"\n", **limits) == "Protocol error: too big inline request"


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"set \"a b\" 'c d'", [b"set", b"a b", b"c d"]),
        (b'"\\x41"', [b"A"]),
        (b'"a\\"b"', [b'a"b']),
        (b"'it\\'s'", [b"it's"]),
        (b'"\\n\\r\\t\\b\\a\\\\\\q"', [b"\n\r\t\x08\x07\\q"]),
        (b'"\\x4a\\x4B\\x00"', [b"JK\x00"]),
        (b'"\\x4" "\\xzz"', [b"x4", b"xzz"]),  # not two hex digits: \x is just x
        (b"'a\\nb\\\\x'", [b"a\\nb\\\\x"]),  # single quotes: only \' is an escape
        (b'"" \'\' x', [b"", b"", b"x"]),
        (b'a"b c" d', [b"ab c", b"d"]),  # a quote may start mid-token
        (b"  get \t k  ", [b"get", b"k"]),
        (b'"a"\x0b"b"', [b"a", b"b"]),  # any C isspace may follow a closing quote
        (b"\x0bget k\x0c", [b"get", b"k\x0c"]),  # ... but only space/tab/CR/LF end a token
        (b"get k\x00v", [b"get", b"k\x00v"]),  # NUL is an ordinary byte here
        (b"get a\rb", [b"get", b"a", b"b"]),
        (b"set k=v", [b"set", b"k=v"]),
    ],
)
def test_split_args_like_sdssplitargs(line: bytes, args: list[bytes]) -> None:
    assert split_args(line) == args
    assert parse_all(line + b"\r\n") == [args]


@pytest.mark.parametrize(
    "line", [b'"unterminated', b'"a"b', b"'a'b", b"'abc", b'x "a\\', b'a"b', b'"a" "b']
)
def test_unbalanced_quotes(line: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"^Protocol error: unbalanced quotes in request$"):
        split_args(line)
    assert error_of(line + b"\n") == "Protocol error: unbalanced quotes in request"


def test_line_endings_and_empty_lines() -> None:
    data = b"ping\n\n\r\n   \r\nget k\r\nget q\r\r\n\t\n"
    assert parse_all(data) == [[b"ping"], [b"get", b"k"], [b"get", b"q"]]


def test_mixed_inline_and_multibulk_in_one_stream() -> None:
    data = b"PING\r\n" + encode_command("SET", "k", "a b") + b'set k2 "x y"\n' + b"*0\r\nGET k\n"
    expected = [[b"PING"], [b"SET", b"k", b"a b"], [b"set", b"k2", b"x y"], [b"GET", b"k"]]
    assert parse_all(data) == expected


def test_a_star_inside_an_inline_line_is_not_multibulk() -> None:
    assert parse_all(b"keys *\r\n") == [[b"keys", b"*"]]


# --- after an error ----------------------------------------------------------------------


def test_parser_is_dead_after_a_protocol_error() -> None:
    parser = CommandParser()
    parser.feed(b"PING\r\n*x\r\nPING\r\n")
    assert parser.next_command() == [b"PING"]
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.next_command()
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.next_command()
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.feed(b"PING\r\n")


# --- properties --------------------------------------------------------------------------

args_st = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@given(args_st)
def test_encode_command_round_trips(args: list[bytes]) -> None:
    assert parse_all(encode_command(*args)) == [args]


@given(args_st.filter(lambda args: b" " not in args[0]))
def test_redis_py_packed_commands_parse_to_the_same_args(args: list[bytes]) -> None:
    # (redis-py splits a first argument containing spaces into several.)
    packed = b"".join(Connection().pack_command(*args))
    assert parse_all(packed) == [args]


def test_encode_command_accepts_str_int_float() -> None:
    assert encode_command("GET", b"k", 12, 1.5) == (
        b"*4\r\n$3\r\nGET\r\n$1\r\nk\r\n$2\r\n12\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError):
        encode_command("SET", "k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_command("SET", "k", True)


BARE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.")


def quoted(arg: bytes) -> bytes:
    out = []
    for c in arg:
        if c in b'"\\':
            out.append(b"\\" + bytes([c]))
        elif 32 <= c < 127:
            out.append(bytes([c]))
        else:
            out.append(b"\\x%02x" % c)
    return b'"' + b"".join(out) + b'"'


def inline_form(args: list[bytes]) -> bytes:
    """Render args as an inline line: bare when safe, else double quotes with escapes."""
    return b" ".join(arg if arg and set(arg) <= BARE else quoted(arg) for arg in args) + b"\r\n"


@st.composite
def mixed_streams(draw: st.DrawFn) -> tuple[bytes, list[list[bytes]]]:
    parts, expected = [], []
    for args in draw(st.lists(args_st, max_size=8)):
        form = draw(st.sampled_from(["multibulk", "inline", "inline-lf", "blank"]))
        if form == "multibulk":
            parts.append(encode_command(*args))
        elif form == "blank":
            parts.append(draw(st.sampled_from([b"\n", b"\r\n", b"  \r\n", b"*0\r\n", b"*-1\r\n"])))
            continue
        else:
            line = inline_form(args)
            parts.append(line[:-2] + b"\n" if form == "inline-lf" else line)
        expected.append(args)
    return b"".join(parts), expected


@given(mixed_streams(), st.data())
def test_any_chunking_gives_the_same_commands(stream: tuple, data: st.DataObject) -> None:
    raw, expected = stream
    assert parse_all(raw) == expected
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    assert run_split(raw, cuts)[:2] == (expected, None)
    assert run_split(raw, list(range(len(raw))))[:2] == (expected, None)  # byte by byte


protocolish = st.lists(
    st.one_of(
        st.sampled_from(
            [b"*", b"$", b"\r", b"\n", b"\r\n", b"0", b"1", b"3", b"-", b'"', b"'", b"\\", b" "]
        ),
        st.sampled_from([b"x", b"\x00", b"\x0b", b"9", b"*2\r\n", b"$3\r\n", b"abc\r\n"]),
        st.sampled_from([b"*1\r\n", b"$1\r\n", b"$12\r\n", b"*-1\r\n", b"$-1\r\n"]),
        st.binary(max_size=12),
    ),
    max_size=40,
).map(b"".join)
SMALL = {"max_inline_len": 16, "max_bulk_len": 12, "max_multibulk_len": 4,
         "max_request_len": 40}


@settings(max_examples=300)
@given(protocolish, st.data())
def test_arbitrary_bytes_give_commands_or_protocol_error_within_bounds(
    raw: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    whole = run_split(raw, [], **SMALL)
    split = run_split(raw, cuts, **SMALL)
    bytewise = run_split(raw, list(range(len(raw))), **SMALL)
    # Same commands and same error however the bytes arrive.
    assert whole[:2] == split[:2] == bytewise[:2]
    for cmds, _, most in (whole, split, bytewise):
        assert all(len(c) <= SMALL["max_multibulk_len"] for c in cmds)
        assert most <= max(SMALL["max_inline_len"], SMALL["max_bulk_len"]) + 1
    assert bytewise[2] <= max(SMALL["max_inline_len"], SMALL["max_bulk_len"]) + 1


def test_request_over_max_request_len_errors_at_the_header_before_its_payload() -> None:
    # Each argument is within max_bulk_len; together they are not. The wire size counts
    # headers too: *2 $3 SET $4 ab.. = 4 + 9 + 10 = 23 bytes.
    command = encode_command(b"SET", b"abcd")
    assert len(command) == 23
    assert parse_all(command, max_request_len=23) == [[b"SET", b"abcd"]]
    parser = CommandParser(max_request_len=22)
    parser.feed(command[:-6])  # the last header, without the payload
    with pytest.raises(ProtocolError, match=r"^Protocol error: request larger than "
                                            r"max-request-bytes \(22 bytes\)$"):
        parser.next_command()


def test_a_whole_small_command_over_max_request_len_is_refused_too() -> None:
    # Whole in one read, a command of 3 or more small bulks is split at CRLF (the fast
    # path): it must count the size like the byte-by-byte loop. *3 $3 SET $1 k $4 abcd = 30.
    command = encode_command(b"SET", b"k", b"abcd")
    assert len(command) == 30
    assert parse_all(command, max_request_len=30) == [[b"SET", b"k", b"abcd"]]
    assert error_of(command, max_request_len=29) == (
        "Protocol error: request larger than max-request-bytes (29 bytes)")
    assert error_of(command, max_bulk_len=3) == "Protocol error: invalid bulk length"


# Payloads made of the protocol's own pieces: split at CRLF they would read as other
# headers and bulks, so the fast path must see that the lengths disagree and leave them
# to the loop (a parse that differs from Redis's would let a client smuggle arguments).
tricky_arg = st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b"$", b"$1", b"$3", b"$12", b"*2", b"x", b"0", b""]),
    max_size=8,
).map(b"".join)


@given(st.lists(st.lists(tricky_arg, min_size=1, max_size=8), min_size=1, max_size=4))
def test_payloads_that_look_like_protocol_parse_as_their_lengths_say(
    cmds: list[list[bytes]],
) -> None:
    raw = b"".join(encode_command(*args) for args in cmds)
    assert parse_all(raw) == cmds
    assert run_split(raw, list(range(len(raw))))[:2] == (cmds, None)  # the loop's parse
    reader = hiredis.Reader()  # and Redis's own client parser
    reader.feed(raw)
    assert [reader.gets() for _ in cmds] == cmds


def test_the_fast_path_leaves_bytes_after_a_bulk_unchecked_like_the_loop() -> None:
    # Redis skips the two bytes after a payload without looking: not CRLF here, so the
    # split finds no match and the loop parses it, as before.
    data = b"*3\r\n$1\r\naXY$1\r\nbXY$1\r\ncXY*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    assert parse_all(data) == [[b"a", b"b", b"c"]] * 2


def test_large_arguments_and_long_pipelines_past_the_split_window() -> None:
    big = encode_command(b"SET", b"k", b"v" * 5000, b"EX", b"10")  # a bulk past 4 digits
    many = encode_command(*[b"a%d" % i for i in range(200)])  # more arguments than it takes
    pipeline = encode_command(b"SET", b"key", b"x" * 100) * 100  # 13 KiB: many windows
    assert parse_all(big + many + pipeline) == (
        [[b"SET", b"k", b"v" * 5000, b"EX", b"10"], [b"a%d" % i for i in range(200)]]
        + [[b"SET", b"key", b"x" * 100]] * 100)


def test_request_size_is_counted_per_command_across_stalls() -> None:
    # Two commands of 23 bytes fit a limit of 23 each; a split mid-command keeps the count.
    data = encode_command(b"SET", b"abcd") * 2
    assert run_split(data, list(range(len(data))), max_request_len=23)[:2] == (
        [[b"SET", b"abcd"]] * 2, None)
    assert run_split(data, list(range(len(data))), max_request_len=22)[1] is not None


def test_buffered_counts_unconsumed_bytes() -> None:
    parser = CommandParser()
    parser.feed(b"*2\r\n$3\r\nGET\r\n$5\r\nab")
    assert parser.next_command() is None
    assert parser.buffered == 2  # the finished bulk and the headers are consumed
    parser.feed(b"cde\r\nPI")
    assert parser.next_command() == [b"GET", b"abcde"]
    assert parser.next_command() is None
    assert parser.buffered == 2


# --- reply encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (OK, b"+OK\r\n", b"+OK\r\n"),
        (SimpleString("QUEUED"), b"+QUEUED\r\n", b"+QUEUED\r\n"),
        (ErrorReply("ERR bad\r\nthing"), b"-ERR bad  thing\r\n", b"-ERR bad  thing\r\n"),
        (SimpleString("a\nb"), b"+a b\r\n", b"+a b\r\n"),
        (0, b":0\r\n", b":0\r\n"),
        (-123456789012, b":-123456789012\r\n", b":-123456789012\r\n"),
        (2**63, b"$19\r\n9223372036854775808\r\n", b"(9223372036854775808\r\n"),
        (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
        ("h\u00e9", b"$3\r\nh\xc3\xa9\r\n", b"$3\r\nh\xc3\xa9\r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (3.0, b"$1\r\n3\r\n", b",3\r\n"),
        (-0.0, b"$2\r\n-0\r\n", b",-0\r\n"),
        (1e300, b"$6\r\n1e+300\r\n", b",1e+300\r\n"),
        (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
        (-math.inf, b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (math.nan, b"$3\r\nnan\r\n", b",nan\r\n"),
        ([], b"*0\r\n", b"*0\r\n"),
        (
            (b"a", [1, None]),
            b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n",
            b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n_\r\n",
        ),
        ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
        ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
        (frozenset(), b"*0\r\n", b"~0\r\n"),
    ],
)
def test_encode_reply(value: object, resp2: bytes, resp3: bytes) -> None:
    assert encode_reply(value) == resp2
    assert encode_reply(value, 2) == resp2
    assert encode_reply(value, 3) == resp3


def test_encode_reply_subclasses_and_unknown_types() -> None:
    import enum

    class Color(enum.IntEnum):
        RED = 7

    assert encode_reply(Color.RED) == b":7\r\n"
    assert encode_reply(bytearray(b"xy")) == b"$2\r\nxy\r\n"
    with pytest.raises(TypeError):
        encode_reply(object())


def test_large_bulk_reply() -> None:
    assert encode_reply(b"x" * 5000) == b"$5000\r\n" + b"x" * 5000 + b"\r\n"


def test_encode_reply_matches_redis_for_common_replies() -> None:
    assert encode_reply(ErrorReply("WRONGTYPE Operation against a key")) == (
        b"-WRONGTYPE Operation against a key\r\n"
    )
    assert encode_reply([b"a", b"b"]) == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"


# --- cross-check with hiredis -------------------------------------------------------------

leaf = st.one_of(
    st.binary(max_size=20),
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text("abcXYZ 019-", max_size=10).map(SimpleString),
    st.text("abcXYZ 019-", min_size=1, max_size=10).map(lambda t: ErrorReply("ERR " + t)),
)
nested = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


def hiredis_view(value: object, proto: int) -> object:
    """What hiredis returns for the encoding of `value`."""
    if isinstance(value, SimpleString):
        return value.text.encode()
    if isinstance(value, ErrorReply):
        return ("error", value.text)
    if isinstance(value, bool) and proto == 2:
        return int(value)
    if isinstance(value, list):
        return [hiredis_view(v, proto) for v in value]
    return value


def from_hiredis(value: object) -> object:
    if isinstance(value, hiredis.ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return [from_hiredis(v) for v in value]
    return value


@pytest.mark.parametrize("proto", [2, 3])
@given(value=nested)
def test_hiredis_reads_our_replies(proto: int, value: object) -> None:
    reader = hiredis.Reader()
    reader.feed(encode_reply(value, proto))
    got = reader.gets()
    assert reader.gets() is False
    assert from_hiredis(got) == hiredis_view(value, proto)


def test_hiredis_reads_our_resp3_maps_doubles_and_sets() -> None:
    reader = hiredis.Reader()
    reader.feed(encode_reply([{b"a": 1.5, 2: [True]}, {b"x"}, -math.inf, None], 3))
    assert reader.gets() == [{b"a": 1.5, 2: [True]}, [b"x"], -math.inf, None]


@pytest.mark.parametrize("proto", [2, 3])
@pytest.mark.parametrize("value", [
    b"x" * 200_000,
    [b"k%d" % i for i in range(50_000)],
    [b"a", [b"b" * 100_000, 7, None], {b"m": [1, 2]}, {b"s"}, 1.5, OK],
    {b"k%d" % i: b"v" * (i % 300) for i in range(5000)},
    7,
    None,
    ErrorReply("ERR x"),
])
def test_encode_reply_chunks_joins_to_encode_reply_in_bounded_pieces(value: object,
                                                                     proto: int) -> None:
    pieces = list(encode_reply_chunks(value, proto, chunk=4096))
    assert b"".join(pieces) == encode_reply(value, proto)
    # A piece is one element past the chunk size at most, or one large value on its own.
    assert all(len(p) < 4096 + 1024 or p in (value, b"b" * 100_000) for p in pieces)
    if isinstance(value, list) and len(value) > 1000:
        assert len(pieces) > 10


def test_push_is_a_resp3_push_and_a_resp2_array() -> None:
    message = Push((b"message", b"ch", b"hi"))
    assert encode_reply(message, 3) == b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
    assert encode_reply(message, 2) == b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"


def test_replies_are_sent_one_after_another() -> None:
    both = Replies((Push((b"subscribe", b"a", 1)), Push((b"subscribe", b"b", 2))))
    expected = (b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
    assert encode_reply(both, 2) == expected
    assert b"".join(encode_reply_chunks(both, 2)) == expected


def test_an_encoded_reply_goes_out_as_it_is() -> None:
    """``Encoded``: bytes already in RESP (the change feed's shared XREAD replies)."""
    data = b"*1\r\n$3\r\nabc\r\n" * 10_000
    assert encode_reply(Encoded(data), 2) == data and encode_reply(Encoded(data), 3) == data
    assert b"".join(encode_reply_chunks(Encoded(data), 2, chunk=1024)) == data
