"""wire.record: typed msgpack records, strict validation, and the handshake records."""

from __future__ import annotations

import math
import threading
import typing

import attrs
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import wire.record
from wire import ProtocolError
from wire.frames import FrameDecoder
from wire.hello import PROTOCOL_VERSION, Hello, Ping, Refused
from wire.raft import (
    CONFIG,
    ClusterConfig,
    Entry,
    HardState,
    InstallSnapshot,
    Member,
    SnapshotMeta,
)
from wire.record import (
    MAX_INT,
    REGISTRY,
    compile_all,
    decode,
    encode,
    encode_frame_record,
    record,
)


@pytest.fixture(scope="module", autouse=True, params=["generic", "stream"])
def decoder(request: pytest.FixtureRequest) -> typing.Iterator[str]:
    """Every test of this module runs against both decoders: the generic one (input under
    ``STREAM_MIN``) and the streaming one (at least ``STREAM_MIN``), which must accept,
    build and refuse exactly the same records."""
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "stream":
            mp.setattr(wire.record, "STREAM_MIN", 0)
        yield request.param


# --- test-only records covering every annotation form (tags 900+) ---------------------------


@record(tag=900)
@attrs.frozen
class Prims:
    i: int
    b: bool
    by: bytes
    s: str
    f: float


@record(tag=901)
@attrs.frozen
class Opts:
    i: int | None
    b: bool | None
    by: bytes | None
    s: str | None
    f: float | None
    r: Prims | None = None


@record(tag=902)
@attrs.frozen
class Seqs:
    ints: tuple[int, ...]
    strs: tuple[str, ...]
    recs: tuple[Prims, ...]
    maybe_recs: tuple[Prims | None, ...]
    nested: tuple[tuple[int, ...], ...]
    maybe: tuple[bytes, ...] | None = None


@record(tag=903)
@attrs.frozen
class Small:
    n: int = attrs.field(validator=attrs.validators.lt(10))


@record(tag=904)
@attrs.frozen
class Holder:
    inner: Prims
    n: int = 7  # a default is still always encoded


@record(tag=905)
@attrs.frozen(cache_hash=True)
class Hashed:
    """attrs keeps a hidden slot here, so decoding must go through __init__."""

    s: str


@record(tag=906)
@attrs.frozen
class Converted:
    n: int = attrs.field(converter=lambda n: n if n < 100 else 99)


ALL_TEST_RECORDS = [Prims, Opts, Seqs, Small, Holder]


def pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def prims_array(**overrides: object) -> list:
    fields = {"i": 1, "b": True, "by": b"x", "s": "y", "f": 1.5} | overrides
    return [900, *fields.values()]


PRIMS = Prims(1, True, b"x", "y", 1.5)

# --- round trips ----------------------------------------------------------------------------

EXAMPLES = [
    Hello(PROTOCOL_VERSION, "cluster-a", 2, "127.0.0.1:7102", "127.0.0.1:7002"),
    Ping(),
    Refused("cluster id mismatch"),
    Entry(3, 17, CONFIG, b"\x00\xff" * 50),
    Entry(term=MAX_INT, index=0, kind=0, data=b""),
    HardState(),
    HardState(term=9, vote=2, commit=8),
    Member(1, "h:1"),
    ClusterConfig(),
    ClusterConfig((Member(1, "a:1"), Member(2, "b:2", learner=True))),
    SnapshotMeta(100, 4, ClusterConfig((Member(1, "a:1"),))),
    PRIMS,
    Opts(None, None, None, None, None),
    Opts(0, False, b"", "", -0.0, PRIMS),
    Seqs((), (), (), (), ()),
    Seqs((1, MAX_INT), ("a", "é"), (PRIMS,), (None, PRIMS), ((), (1, 2)), (b"z",)),
    Small(9),
    Holder(PRIMS),
]


@pytest.mark.parametrize("obj", EXAMPLES, ids=repr)
def test_round_trip(obj: object) -> None:
    data = encode(obj)
    back = decode(data, expect=type(obj))
    assert back == obj
    assert type(back) is type(obj)
    assert encode(back) == data


def test_layout_is_tag_then_fields_in_order_with_nested_tags() -> None:
    meta = SnapshotMeta(5, 2, ClusterConfig((Member(1, "a", False),)))
    assert msgpack.unpackb(encode(meta)) == [14, 5, 2, [13, [[12, 1, "a", False, False]]]]
    assert msgpack.unpackb(encode(Ping())) == [2]


def test_defaults_are_always_encoded() -> None:
    assert msgpack.unpackb(encode(HardState())) == [11, 0, 0, 0]
    assert msgpack.unpackb(encode(Holder(PRIMS)))[-1] == 7


def test_bytes_and_str_use_distinct_msgpack_types() -> None:
    assert msgpack.unpackb(encode(Refused("r")), raw=True) == [3, b"r"]  # str family
    packed = encode(Entry(1, 1, 0, b"r"))
    assert b"\xc4\x01r" in packed  # bin 8


def test_encode_frame_record_is_a_frame_of_the_record() -> None:
    hello = Hello(1, "c", 1, "p", "c")
    (payload,) = FrameDecoder().feed(encode_frame_record(hello))
    assert decode(payload) == hello


def test_every_registered_record_has_a_supported_plan() -> None:
    compile_all()  # raises TypeError on an unsupported annotation anywhere in REGISTRY
    assert {1, 2, 3, 10, 11, 12, 13, 14, 900, 904} <= set(REGISTRY)


# --- decode errors --------------------------------------------------------------------------


def rejects(data: bytes, match: str, expect: object = None) -> None:
    """``decode`` refuses ``data``; the generic decoder's text matches ``match`` (the
    streaming one words some refusals its own way: refused is what both must do)."""
    with pytest.raises(ProtocolError, match=match if wire.record.STREAM_MIN else None):
        decode(data, expect=expect)  # type: ignore[arg-type]


def test_unknown_tag() -> None:
    rejects(pack([899, 1]), "unknown record tag int 899")
    rejects(pack(["Entry", 1]), "unknown record tag str")


def test_bool_or_float_tag_is_not_a_tag() -> None:
    rejects(pack([True]), "unknown record tag bool")  # True == 1 == Hello's tag
    rejects(pack([2.0]), "unknown record tag float")


@pytest.mark.parametrize("value", [[10, 1, 2, 0], [10, 1, 2, 0, b"", 5], [2, None]])
def test_wrong_field_count(value: list) -> None:
    rejects(pack(value), "fields, got an array of")


@pytest.mark.parametrize("value", [5, "x", None, {"a": 1}, b"\x0a", []])
def test_top_level_must_be_a_non_empty_array(value: object) -> None:
    rejects(pack(value), "expected a record")


@pytest.mark.parametrize(
    ("field", "bad", "expected"),
    [
        ("i", "1", "i: expected int"),
        ("i", 1.0, "i: expected int"),
        ("i", None, "i: expected int"),
        ("b", 1, "b: expected bool, got int 1"),
        ("b", None, "b: expected bool"),
        ("by", "x", "by: expected bytes, got str"),
        ("by", [1], "by: expected bytes, got tuple"),
        ("s", b"y", "s: expected str, got bytes"),
        ("f", 1, "f: expected float, got int 1"),
        ("f", "1.5", "f: expected float, got str"),
    ],
)
def test_each_wrong_primitive_type(field: str, bad: object, expected: str) -> None:
    rejects(pack(prims_array(**{field: bad})), f"Prims.{expected}")


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_int(value: bool) -> None:
    rejects(pack([10, value, 1, 0, b""]), "Entry.term: expected int in .*, got bool")


@pytest.mark.parametrize("value", [-1, -(2**63)])
def test_negative_int_is_out_of_range(value: int) -> None:
    rejects(pack([10, 1, value, 0, b""]), f"Entry.index: expected int in .*, got int {value}")


def test_largest_int_is_accepted() -> None:
    assert decode(pack([10, MAX_INT, 0, 0, b""])).term == MAX_INT


def test_invalid_utf8_in_str_field() -> None:
    rejects(b"\x92\x03\xa2\xff\xfe", "invalid msgpack")


def test_optional_fields_accept_nil_but_not_wrong_types() -> None:
    assert decode(pack([901, None, None, None, None, None, None])) == Opts(
        None, None, None, None, None
    )
    rejects(pack([901, True, None, None, None, None, None]), "Opts.i: expected int .* or nil")
    rejects(pack([901, None, None, "x", None, None, None]), "Opts.by: expected bytes or nil")
    rejects(pack([901, None, None, None, None, None, 5]), r"Opts.r: expected Prims record")
    rejects(pack([901, None, None, None, None, None, [1]]), r"Opts.r: Prims has tag \+ 5")


def test_tuple_fields() -> None:
    good = [902, [1, 2], ["a"], [prims_array()], [None], [[3]], None]
    assert decode(pack(good)).nested == ((3,),)
    rejects(pack([902, 5, ["a"], [], [], [], None]), "Seqs.ints: expected tuple of int")
    rejects(pack([902, [1, -2], [], [], [], [], None]), r"Seqs.ints\[1\]: expected int")
    rejects(pack([902, [], [b"a"], [], [], [], None]), r"Seqs.strs\[0\]: expected str")
    rejects(pack([902, [], [], [], [], [[1], ["x"]], None]), r"Seqs.nested\[1\]\[0\]")
    rejects(pack([902, [], [], [], [], [], ["s"]]), r"Seqs.maybe\[0\]: expected bytes")


def test_nested_record_errors_name_the_path() -> None:
    bad_member = [14, 5, 3, [13, [[12, 1, "a", False, False], [12, "2", "b", True, False]]]]
    rejects(pack(bad_member), r"SnapshotMeta.config.members\[1\].id: expected int")
    bad_bool = [904, prims_array(b=0), 1]
    rejects(pack(bad_bool), r"Holder.inner.b: expected bool, got int 0")


def test_nested_record_with_the_wrong_tag() -> None:
    # An Entry where a Member belongs: same arity, wrong tag.
    value = [13, [[10, 1, 2, 3, b"x"]]]
    rejects(pack(value), r"ClusterConfig.members\[0\]: expected tag 12 \(Member\), got int 10")
    rejects(pack([904, [903, *prims_array()[1:]], 1]), r"Holder.inner: expected tag 900 \(Prims\)")


def test_nested_record_that_is_not_an_array() -> None:
    rejects(pack([14, 1, 1, b"config"]), "SnapshotMeta.config: expected ClusterConfig record")


def test_trailing_bytes() -> None:
    rejects(encode(Ping()) + b"\x00", "trailing bytes")
    rejects(encode(HardState()) + encode(HardState()), "trailing bytes")


def test_truncated_record() -> None:
    data = encode(Entry(1, 2, 0, b"abcdef"))
    for n in range(len(data)):
        rejects(data[:n], "invalid msgpack")


def test_expect_rejects_other_records() -> None:
    data = encode(Ping())
    rejects(data, "expected Hello, got Ping", expect=Hello)
    rejects(data, "expected Hello or Refused, got Ping", expect=(Hello, Refused))
    assert decode(data, expect=(Hello, Ping)) == Ping()


def test_attrs_validator_failure_becomes_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="Small rejected its fields") as info:
        decode(pack([903, 10]))
    assert isinstance(info.value.__cause__, ValueError)


def test_records_with_init_logic_are_built_through_init() -> None:
    hashed = decode(encode(Hashed("k")))
    assert hashed == Hashed("k")
    assert hash(hashed) == hash(Hashed("k"))
    assert decode(pack([906, 500])) == Converted(99)  # the converter ran


def test_huge_declared_lengths_are_rejected_without_allocating() -> None:
    rejects(b"\xdd\x7f\xff\xff\xff", "invalid msgpack")  # array of 2**31 - 1
    rejects(b"\x92\x03\xc6\x7f\xff\xff\xff", "invalid msgpack")  # bin of 2**31 - 1
    rejects(b"\x92\x03\xdb\x7f\xff\xff\xff", "invalid msgpack")  # str of 2**31 - 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\xff" * 8,
        b"\x91" * 5000,
        b"\xde\x00\x01\x01\x01",
        b"\xd6\xff\x00\x00\x00\x00",
    ],
)
def test_garbage_bytes(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


# --- encode errors --------------------------------------------------------------------------


def test_encode_rejects_non_records() -> None:
    with pytest.raises(TypeError, match="not a registered wire record"):
        encode((10, 1, 2, 0, b""))

    @attrs.frozen
    class Unregistered:
        x: int

    with pytest.raises(TypeError, match="not a registered"):
        encode(Unregistered(1))


def test_encode_rejects_wrong_field_types() -> None:
    with pytest.raises(TypeError, match=r"Entry.data: expected bytes, got str"):
        encode(Entry(1, 1, 0, "text"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Entry.term: expected int .*, got bool"):
        encode(Entry(True, 1, 0, b""))
    with pytest.raises(TypeError, match=r"ClusterConfig.members: expected tuple of Member"):
        encode(ClusterConfig([Member(1, "a")]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"members\[1\].learner: expected bool, got int 1"):
        encode(ClusterConfig((Member(1, "a"), Member(2, "b", 1))))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Holder.inner: expected Prims, got Small"):
        encode(Holder(Small(1)))  # type: ignore[arg-type]


def test_encode_rejects_out_of_range_ints() -> None:
    with pytest.raises(ValueError, match=r"Entry.term: expected int .*, got int -1"):
        encode(Entry(-1, 1, 0, b""))
    with pytest.raises(ValueError, match=r"Seqs.ints\[0\]"):
        encode(Seqs((2**64,), (), (), (), ()))


def test_encode_accepts_int_subclasses_but_decodes_plain_ints() -> None:
    import enum

    class Kind(enum.IntEnum):
        CONFIG = 2

    back = decode(encode(Entry(1, 1, Kind.CONFIG, b"")))
    assert back.kind == 2
    assert type(back.kind) is int


def test_encode_rejects_unencodable_strings() -> None:
    with pytest.raises(ValueError, match="unencodable"):
        encode(Refused("\udcff"))


def test_unsupported_annotation_is_a_type_error_naming_the_field() -> None:
    @attrs.frozen
    class Bad:
        m: dict[str, int]

    record(tag=999)(Bad)
    try:
        with pytest.raises(TypeError, match=r"Bad.m: unsupported wire annotation"):
            encode(Bad({}))
    finally:
        del REGISTRY[999]


def test_record_decorator_guards() -> None:
    with pytest.raises(ValueError, match="wire tag 900 used by Prims"):

        @record(tag=900)
        @attrs.frozen
        class Clash:
            pass

    with pytest.raises(TypeError, match="attrs class"):

        @record(tag=998)
        class NotAttrs:
            pass

    assert 998 not in REGISTRY


# --- properties -----------------------------------------------------------------------------


def strategy_for(tp: object) -> st.SearchStrategy:
    """Values of a wire annotation, built from the same annotations the codec reads."""
    simple = {
        int: st.integers(0, MAX_INT),
        bool: st.booleans(),
        bytes: st.binary(max_size=40),
        str: st.text(max_size=20),
        float: st.floats(allow_nan=False),
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and hasattr(tp, "__wire_tag__"):
        hints = typing.get_type_hints(tp)
        return st.builds(tp, *[strategy_for(hints[a.name]) for a in attrs.fields(tp)])
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple:
        return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
    (inner,) = (a for a in args if a is not type(None))
    return st.none() | strategy_for(inner)


ROUND_TRIP_CLASSES = [Hello, Ping, Refused, Entry, HardState, Member, ClusterConfig, SnapshotMeta]
any_record = st.one_of([strategy_for(c) for c in ROUND_TRIP_CLASSES + ALL_TEST_RECORDS[:3]])


@given(any_record)
def test_round_trip_property(obj: object) -> None:
    data = encode(obj)
    back = decode(data, expect=type(obj))
    assert back == obj
    assert encode(back) == data


def accepted_consistently(data: bytes) -> None:
    """decode gives a record or ProtocolError; a record it accepts is one encode accepts."""
    try:
        obj = decode(data)
    except ProtocolError:
        return
    assert type(obj) in REGISTRY.values()
    again = encode(obj)
    assert encode(decode(again)) == again


@given(st.binary(max_size=200))
def test_random_bytes_decode_to_a_record_or_protocol_error(data: bytes) -> None:
    accepted_consistently(data)


# Plausible msgpack values: arrays led by a real tag, holding values of every msgpack type.
msgpack_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), MAX_INT)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5)
)
msgpack_values = st.recursive(
    msgpack_leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
tagged = st.builds(
    lambda tag, rest: [tag, *rest],
    st.sampled_from(sorted(REGISTRY)),
    st.lists(msgpack_values, max_size=7),
)


@given(tagged)
def test_tagged_random_arrays_decode_to_a_record_or_protocol_error(value: list) -> None:
    accepted_consistently(pack(value))


@given(any_record, st.data())
def test_mutated_encodings_decode_to_a_record_or_protocol_error(obj: object, data) -> None:
    encoded = bytearray(encode(obj))
    i = data.draw(st.integers(0, len(encoded) - 1))
    op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if op == "flip":
        encoded[i] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        del encoded[i:]
    else:
        encoded.insert(i, data.draw(st.integers(0, 255)))
    accepted_consistently(bytes(encoded))


@given(st.floats(allow_nan=True, width=32) | st.floats())
def test_floats_survive_exactly(x: float) -> None:
    back = decode(encode(Prims(0, False, b"", "", x)))
    assert back.f == x or (math.isnan(x) and math.isnan(back.f))


def test_a_record_compiled_by_two_threads_at_once_encodes_in_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records are encoded on a node's loop and in its worker threads (large peer
    messages). The first InstallSnapshot of a new leader was dropped with "recursive record
    types are not supported": the other thread was compiling the class at that moment.
    Here thread A holds the class mid-compile until thread B's encode of it is done."""
    msg = InstallSnapshot(4, 1, 2, SnapshotMeta(9, 3, ClusterConfig((Member(1, "h:1"),))),
                          0, b"data", True)
    expected = wire.record.encode(msg)
    monkeypatch.delitem(wire.record._ENCODERS, InstallSnapshot)
    monkeypatch.delitem(wire.record._DECODERS, InstallSnapshot)
    b_done = threading.Event()
    plan = wire.record._plan
    a_inside = threading.Event()

    def held_plan(cls: type) -> typing.Any:
        if cls is InstallSnapshot and threading.current_thread() is not b:
            a_inside.set()
            assert b_done.wait(30)
        return plan(cls)

    monkeypatch.setattr(wire.record, "_plan", held_plan)
    got: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            got[name] = wire.record.encode(msg)
        except TypeError as exc:
            got[name] = exc
        finally:
            if name == "b":
                b_done.set()

    a = threading.Thread(target=run, args=("a",))
    b = threading.Thread(target=run, args=("b",))
    a.start()
    assert a_inside.wait(30)
    b.start()
    a.join(30)
    b.join(30)
    assert got == {"a": expected, "b": expected}
