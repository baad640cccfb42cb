"""raftkv.kv under random input: determinism, snapshots, total decoding, a dict model."""

from __future__ import annotations

import re

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from raftkv.kv import COMMANDS, KVDecodeError, KVStateMachine, decode_command, encode_entry
from raftkv.kv.codec import decode_entry_level
from raftkv.kv.features import FEATURE_LEVEL, EntryNeedsLevel
from raftkv.kv.numbers import parse_int64
from wire.reply import ErrorReply, SimpleString

KEYS = st.sampled_from([b"a", b"b", b"c", b"", b"k\x00", b"n"])
NUMBERS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda i: str(i).encode()),
    st.sampled_from(
        [b"0", b"-0", b"01", b"x", b"", b"9223372036854775807", b"-9223372036854775808"]
    ),
)
VALUES = st.one_of(st.binary(max_size=6), NUMBERS)
OPTIONS = st.sampled_from(
    [
        b"NX",
        b"xx",
        b"GET",
        b"EX",
        b"1",
        b"count",
        b"MATCH",
        b"*",
        b"a*",
        b"TYPE",
        b"string",
        b"sync",
        b"ASYNC",
    ]
)


def _case(name: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from([name.encode(), name.upper().encode(), name.title().encode()])


NAMES = st.one_of(
    st.sampled_from(sorted(COMMANDS)).flatmap(_case),
    st.sampled_from([b"nope", b"", b"GET\x00", b"\xff"]),
)
# Any command shape: a known or unknown name followed by keys, values, numbers and options.
COMMAND = st.builds(
    lambda name, rest: [name, *rest],
    NAMES,
    st.lists(st.one_of(KEYS, VALUES, OPTIONS), max_size=6),
)
PROGRAM = st.lists(COMMAND, max_size=40)

REPLY_TYPES = (bytes, int, list, type(None), SimpleString, ErrorReply)


def _valid_reply(reply: object) -> bool:
    if isinstance(reply, list):
        return all(_valid_reply(item) for item in reply)
    return isinstance(reply, REPLY_TYPES) and not isinstance(reply, bool)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROGRAM)
def test_same_commands_same_replies_and_state(program: list[list[bytes]]) -> None:
    one, two = KVStateMachine(), KVStateMachine()
    for args in program:
        entry = encode_entry(args)
        reply = one.apply(entry)
        assert _valid_reply(reply)
        assert two.apply(entry) == reply
    assert one == two
    assert one.snapshot() == two.snapshot()
    assert one.digest() == two.digest()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROGRAM, PROGRAM)
def test_snapshot_restore_continues_identically(
    before: list[list[bytes]], after: list[list[bytes]]
) -> None:
    original = KVStateMachine()
    for args in before:
        original.apply(encode_entry(args))
    copy = KVStateMachine()
    copy.apply(encode_entry([b"SET", b"stale", b"state"]))  # restore replaces, not merges
    copy.restore(original.snapshot())
    assert copy == original and len(copy) == len(original)
    for args in after:
        entry = encode_entry(args)
        assert copy.apply(entry) == original.apply(entry)
    assert copy.snapshot() == original.snapshot()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=8))
def test_apply_and_read_never_raise(args: list[bytes]) -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"MSET", b"a", b"1", b"b", b"x"]))
    before = kv.snapshot()
    assert _valid_reply(kv.read(args))
    assert kv.snapshot() == before  # read never changes state, even when refusing
    if args:
        assert _valid_reply(kv.apply(encode_entry(args)))


@settings(max_examples=150, deadline=None)
@given(COMMAND)
def test_known_commands_never_raise_and_reads_do_not_mutate(args: list[bytes]) -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"MSET", b"a", b"1", b"n", b"9223372036854775806", b"", b"e"]))
    before = kv.snapshot()
    assert _valid_reply(kv.read(args))
    assert kv.snapshot() == before
    assert _valid_reply(kv.apply(encode_entry(args)))


MSGPACK_OBJECTS = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.binary(max_size=4),
        st.text(max_size=4),
        st.floats(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.binary(max_size=3), st.text(max_size=3)), inner, max_size=3),
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=40), MSGPACK_OBJECTS.map(msgpack.packb)))
@example(msgpack.packb([0, FEATURE_LEVEL + 1, b""]))  # (a later release's form: found once)
def test_decoding_garbage_raises_only_the_clear_error(blob: bytes) -> None:
    try:
        args = decode_command(blob)
    except KVDecodeError:
        pass
    else:
        assert args and all(type(a) is bytes for a in args)
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"keep", b"me"]))
    try:
        kv.restore(blob)
    except KVDecodeError:
        assert kv.state_copy() == {b"keep": b"me"}  # a failed restore changes nothing
    try:  # a corrupt log entry is an error reply, never an exception...
        reply = kv.apply(blob)
    except EntryNeedsLevel:  # ...but a well-formed one of a later release's form stops
        assert decode_entry_level(blob)[1] > FEATURE_LEVEL  # the node (features.py)
        return
    assert _valid_reply(reply)


@settings(deadline=None)
@given(st.binary(max_size=22))
def test_parse_int64_is_redis_strict(raw: bytes) -> None:
    strict = re.fullmatch(rb"0|-?[1-9][0-9]*", raw)
    expected = int(raw) if strict and -(2**63) <= int(raw) < 2**63 else None
    assert parse_int64(raw) == expected


@settings(deadline=None)
@given(st.integers(-(2**63), 2**63 - 1))
def test_parse_int64_reads_back_every_int64(value: int) -> None:
    assert parse_int64(str(value).encode()) == value


# -- SCAN under random churn --------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sets(st.binary(min_size=1, max_size=3), max_size=60),
    st.integers(1, 12),
    st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=3)), max_size=80),
)
def test_scan_returns_every_stable_key_exactly_once(
    stable: set[bytes], count: int, churn: list[tuple[bool, bytes]]
) -> None:
    kv = KVStateMachine()
    for key in stable:
        kv.apply(encode_entry([b"SET", key, b"v"]))
    churn = [(add, b"~" + key) for add, key in churn]  # churn keys are never stable ones
    cursor, seen, step = b"0", [], 0
    while True:
        cursor, keys = kv.read([b"SCAN", cursor, b"COUNT", str(count).encode()])
        seen += keys
        for add, key in churn[step : step + 3]:
            kv.apply(encode_entry([b"SET", key, b"x"] if add else [b"DEL", key]))
        step += 3
        if cursor == b"0":
            break
    assert sorted(k for k in seen if k in stable) == sorted(stable)


# -- model-based: the machine against a plain dict ----------------------------------------


class AgainstDict(RuleBasedStateMachine):
    """SET/GET/DEL/INCR/APPEND/CAS/EXISTS/MSET/MGET against a dict, through the log codec."""

    @initialize()
    def start(self) -> None:
        self.kv = KVStateMachine()
        self.model: dict[bytes, bytes] = {}
        self.follower = KVStateMachine()  # receives a snapshot now and then, then the log

    def run(self, *args: bytes):
        entry = encode_entry(list(args))
        reply = self.kv.apply(entry)
        assert self.follower.apply(entry) == reply
        return reply

    @rule(key=KEYS, value=VALUES)
    def set(self, key: bytes, value: bytes) -> None:
        assert self.run(b"SET", key, value) == SimpleString("OK")
        self.model[key] = value

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.run(b"GET", key) == self.model.get(key)
        assert self.kv.read([b"GET", key]) == self.model.get(key)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=4))
    def delete(self, keys: list[bytes]) -> None:
        expected = len(set(keys) & self.model.keys())
        assert self.run(b"DEL", *keys) == expected
        for key in keys:
            self.model.pop(key, None)

    @rule(key=KEYS)
    def incr(self, key: bytes) -> None:
        reply = self.run(b"INCR", key)
        current = self.model.get(key, b"0")
        value = parse_int64(current)
        if value is None:
            assert reply == ErrorReply("ERR value is not an integer or out of range")
        elif value + 1 >= 2**63:
            assert reply == ErrorReply("ERR increment or decrement would overflow")
        else:
            assert reply == value + 1
            self.model[key] = str(value + 1).encode()

    @rule(key=KEYS, suffix=VALUES)
    def append(self, key: bytes, suffix: bytes) -> None:
        self.model[key] = self.model.get(key, b"") + suffix
        assert self.run(b"APPEND", key, suffix) == len(self.model[key])

    @rule(key=KEYS, expected=VALUES, new=VALUES, use_current=st.booleans())
    def cas(self, key: bytes, expected: bytes, new: bytes, use_current: bool) -> None:
        if use_current and key in self.model:
            expected = self.model[key]
        swapped = self.model.get(key) == expected
        assert self.run(b"CAS", key, expected, new) == int(swapped)
        if swapped:
            self.model[key] = new

    @rule(keys=st.lists(KEYS, min_size=1, max_size=5))
    def exists(self, keys: list[bytes]) -> None:
        assert self.kv.read([b"EXISTS", *keys]) == sum(k in self.model for k in keys)

    @rule(pairs=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=4))
    def mset(self, pairs: list[tuple[bytes, bytes]]) -> None:
        assert self.run(b"MSET", *[x for pair in pairs for x in pair]) == SimpleString("OK")
        self.model.update(pairs)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=5))
    def mget(self, keys: list[bytes]) -> None:
        assert self.kv.read([b"MGET", *keys]) == [self.model.get(k) for k in keys]

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def follower_catches_up_by_snapshot(self) -> None:
        self.follower = KVStateMachine()
        self.follower.restore(self.kv.snapshot())

    @invariant()
    def same_as_model(self) -> None:
        assert self.kv.state_copy() == self.model
        assert len(self.kv) == len(self.model) == self.kv.read([b"DBSIZE"])
        assert self.follower == self.kv
        assert self.kv.read([b"KEYS", b"*"]) == sorted(self.model)


AgainstDict.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestAgainstDict = AgainstDict.TestCase
