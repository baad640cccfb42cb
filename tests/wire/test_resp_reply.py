"""wire.resp_reply: the client's incremental RESP2/RESP3 reply parser."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire import ProtocolError
from wire.reply import OK, ErrorReply, SimpleString
from wire.resp import encode_reply
from wire.resp_reply import NEED_MORE, ReplyParser


def replies(data: bytes, cuts: list[int] | None = None, **limits: int) -> list[object]:
    """All replies in `data`, fed whole or cut at `cuts`; the rest must be incomplete."""
    parser = ReplyParser(**limits)
    out: list[object] = []
    bounds = [0, *sorted(cuts or []), len(data)]
    for a, b in itertools.pairwise(bounds):
        parser.feed(data[a:b])
        while (reply := parser.next_reply()) is not NEED_MORE:
            out.append(reply)
    return out


def one(data: bytes) -> object:
    got = replies(data)
    assert len(got) == 1, got
    return got[0]


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"+OK\r\n", OK),
        (b"+\r\n", SimpleString("")),
        (b"-ERR no such key\r\n", ErrorReply("ERR no such key")),
        (b"!10\r\nSYNTAX x\r\n\r\n", ErrorReply("SYNTAX x\r\n")),
        (b":0\r\n", 0),
        (b":-42\r\n", -42),
        (b":12345678901\r\n", 12345678901),
        (b"(34928903284092385093248509438509438250\r\n", 34928903284092385093248509438509438250),
        (b"$5\r\nhe\r\no\r\n", b"he\r\no"),
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"_\r\n", None),
        (b"#t\r\n", True),
        (b"#f\r\n", False),
        (b",1.25\r\n", 1.25),
        (b",-3\r\n", -3.0),
        (b",1e+300\r\n", 1e300),
        (b",inf\r\n", math.inf),
        (b",-inf\r\n", -math.inf),
        (b"=15\r\ntxt:Some string\r\n", b"Some string"),
        (b"*0\r\n", []),
        (b"*3\r\n:1\r\n$1\r\na\r\n*1\r\n_\r\n", [1, b"a", [None]]),
        (b"%2\r\n$1\r\na\r\n:1\r\n:2\r\n*0\r\n", {b"a": 1, 2: []}),
        (b"%0\r\n", {}),
        (b"~2\r\n$1\r\nx\r\n:1\r\n", {b"x", 1}),
        (b">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n", [b"message", b"hi"]),
    ],
)
def test_each_reply_type(data: bytes, value: object) -> None:
    got = one(data)
    assert got == value
    assert type(got) is type(value)
    assert replies(data, list(range(len(data)))) == [value]  # byte by byte


def test_nan_double() -> None:
    assert math.isnan(one(b",nan\r\n"))  # type: ignore[arg-type]


def test_aggregate_keys_and_members_become_hashable() -> None:
    assert one(b"%1\r\n*2\r\n:1\r\n:2\r\n$1\r\nv\r\n") == {(1, 2): b"v"}
    assert one(b"~2\r\n*1\r\n$1\r\na\r\n~1\r\n:3\r\n") == {(b"a",), frozenset({3})}
    assert one(b"%1\r\n%1\r\n:1\r\n*1\r\n:2\r\n:0\r\n") == {((1, (2,)),): 0}


def test_attributes_are_parsed_and_dropped() -> None:
    attr = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n"
    assert replies(attr + b":7\r\n") == [7]
    assert replies(b"*2\r\n" + attr + b":1\r\n:2\r\n") == [[1, 2]]
    assert replies(b"|0\r\n+OK\r\n") == [OK]


def test_null_is_a_reply_and_need_more_is_not() -> None:
    parser = ReplyParser()
    assert parser.next_reply() is NEED_MORE
    parser.feed(b"$-1\r\n$3\r\nab")
    assert parser.next_reply() is None
    assert parser.next_reply() is NEED_MORE
    parser.feed(b"c\r\n")
    assert parser.next_reply() == b"abc"
    assert parser.next_reply() is NEED_MORE
    assert parser.buffered == 0


def test_partial_aggregate_keeps_finished_elements() -> None:
    parser = ReplyParser()
    parser.feed(b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1")
    assert parser.next_reply() is NEED_MORE
    assert parser.buffered == 2  # only the unfinished third element is left unconsumed
    parser.feed(b"\r\nc\r\n")
    assert parser.next_reply() == [b"a", b"b", b"c"]


def test_pipelined_replies() -> None:
    data = b"".join(encode_reply(v) for v in [OK, b"x", None, 5, [b"a"]] * 1000)
    got = replies(data, list(range(0, len(data), 7)))
    assert got == [OK, b"x", None, 5, [b"a"]] * 1000


@pytest.mark.parametrize(
    "data",
    [
        b"?x\r\n",  # unknown type byte
        b":12a\r\n",
        b": 1\r\n",
        b":\r\n",
        b":1_000\r\n",
        b"$abc\r\n",
        b"$-2\r\n",
        b"$3\r\nabcd\r\n",  # payload not followed by CRLF
        b"*-2\r\n",
        b"%-1\r\n",
        b"#x\r\n",
        b"_x\r\n",
        b",\r\n",
        b",1_0\r\n",
        b", 1\r\n",
        b",abc\r\n",
        b"=3\r\ntxt\r\n",  # verbatim shorter than its format prefix
        b"=5\r\ntxt-a\r\n",
    ],
)
def test_malformed_replies_raise(data: bytes) -> None:
    parser = ReplyParser()
    parser.feed(data)
    with pytest.raises(ProtocolError):
        parser.next_reply()
    with pytest.raises(ProtocolError):  # and the parser stays dead
        parser.next_reply()


def test_limits() -> None:
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        replies(b"$11\r\n", max_bulk_len=10)
    assert replies(b"$10\r\n", max_bulk_len=10) == []  # allowed: waits for the payload
    with pytest.raises(ProtocolError, match="nested too deeply"):
        replies(b"*1\r\n" * 4 + b":1\r\n", max_depth=3)
    assert replies(b"*1\r\n" * 3 + b":1\r\n", max_depth=3) == [[[[1]]]]
    with pytest.raises(ProtocolError, match="too big reply line"):
        replies(b"+" + b"x" * 20, max_line_len=10)


# --- round trips through encode_reply ----------------------------------------------------

key = st.one_of(st.binary(max_size=8), st.integers(-(2**70), 2**70))
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=8)
leaf = st.one_of(
    st.binary(max_size=20),
    st.none(),
    st.integers(-(2**80), 2**80),
    st.booleans(),
    st.floats(allow_nan=False),
    text.map(SimpleString),
    text.map(lambda t: ErrorReply("ERR " + t)),
)
values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(key, inner, max_size=3),
        st.sets(key, max_size=3),
    ),
    max_leaves=15,
)


def resp2_view(value: object) -> object:
    """What a RESP2 client gets back for `value`: Redis's RESP2 renderings."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value).encode()
    if isinstance(value, float):
        return encode_reply(value, 2).split(b"\r\n")[1]
    if isinstance(value, dict):
        return [resp2_view(x) for kv in value.items() for x in kv]
    if isinstance(value, list | set):
        return [resp2_view(x) for x in value]
    return value


@given(values, st.data())
def test_resp3_round_trip(value: object, data: st.DataObject) -> None:
    encoded = encode_reply(value, 3)
    cuts = data.draw(st.lists(st.integers(0, len(encoded)), max_size=6))
    assert replies(encoded, cuts) == [value]


@given(values)
def test_resp2_round_trip_loses_types_as_redis_does(value: object) -> None:
    assert replies(encode_reply(value, 2)) == [resp2_view(value)]


def test_resp2_renderings() -> None:
    assert resp2_view({b"a": {1}}) == [b"a", [1]]
    got = replies(encode_reply([True, 1.5, 2**64, None], 2))
    assert got == [[1, b"1.5", b"18446744073709551616", None]]
