"""The change feed's stream commands (raftkv.server.streams): id and argument parsing with
Redis's errors, XREAD/XRANGE/XREVRANGE/XINFO replies, filters, the compacted error and the
ACL restriction, all on a state machine's feed (no node)."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import pytest

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.changes import Change
from raftkv.kv.feed import ChangeFeed
from raftkv.kv.sliced import SlicedRead
from raftkv.server import streams
from raftkv.server.commands import _refused, _writes_feed
from raftkv.server.connection import Connection
from raftkv.server.streams import (
    INVALID_ID,
    MAX_COUNT,
    NEGATIVE_TIMEOUT,
    NO_SUCH_KEY,
    SYNTAX,
    TOO_MANY_STREAMS,
    UNBALANCED,
    WRITE_TO_FEED,
    WRONGTYPE,
    FeedReader,
    ReplyCache,
    XRead,
    cmd_xread,
    parse_id,
    parse_range_id,
    parse_xread,
    render,
)
from wire.reply import Encoded, ErrorReply, Streamed
from wire.resp import encode_reply
from wire.resp_reply import NEED_MORE, ReplyParser

T0 = 1_700_000_000_000
TOP = 2**64 - 1


def b(*args: str | int) -> list[bytes]:
    return [str(a).encode() for a in args]


@pytest.fixture
def kv() -> KVStateMachine:
    kv = KVStateMachine(feed=ChangeFeed(retention_entries=100))
    for index, args in ((1, b("SET", "user:1", "alice", "PX", 5000)),
                        (2, b("MSET", "user:2", "bob", "x", 1)),
                        (3, b("INCR", "x")),
                        (4, b("DEL", "user:1"))):
        kv.apply(encode_entry(args, T0), index=index)
    return kv


class Reader(FeedReader):
    """A FeedReader whose sliced reads are run to the end at once."""

    def read(self, *args):
        return done(super().read(*args))

    def xrange(self, *args, **kwargs):
        return done(super().xrange(*args, **kwargs))

    def xinfo(self, *args):
        return done(super().xinfo(*args))


def decoded(reply):
    """An encoded reply (what XREAD and XRANGE answer) read back as a client reads it."""
    if not isinstance(reply, Encoded | Streamed):
        return reply
    parser = ReplyParser()
    parser.feed(encode_reply(reply))
    value = parser.next_reply()
    assert parser.next_reply() is NEED_MORE  # (exactly one reply)
    return value


def done(reply):
    return decoded(reply.finish() if isinstance(reply, SlicedRead) else reply)


def reader(kv: KVStateMachine, patterns=None) -> FeedReader:
    return Reader(kv.feed, patterns, lambda key: kv.read([b"exists", key]) == 1)


def xread(kv: KVStateMachine, *args: str | int, proto: int = 2, patterns=None):
    request = parse_xread(b("XREAD", *args))
    assert isinstance(request, XRead)
    r = reader(kv, patterns)
    positions = r.start(request)
    if isinstance(positions, ErrorReply):
        return positions
    return r.read(positions, request.count, proto)


@pytest.mark.parametrize(("raw", "expected"), [
    (b"5-3", (5, 3)), (b"5", (5, 0)), (b"0", (0, 0)), (b"0-0", (0, 0)),
    (b"18446744073709551615-18446744073709551615", (TOP, TOP)),
    (b"18446744073709551616", None), (b"-1", None), (b"5-", None), (b"5-x", None),
    (b"", None), (b"+5", None), (b" 5", None), (b"5-3-1", None), (b"1e3", None),
])
def test_parse_id(raw: bytes, expected: tuple[int, int] | None) -> None:
    assert parse_id(raw) == expected


@pytest.mark.parametrize(("raw", "start", "expected"), [
    (b"-", True, (0, 0)), (b"+", False, (TOP, TOP)), (b"7", True, (7, 0)),
    (b"7", False, (7, TOP)), (b"(7-2", True, (7, 3)), (b"(7-2", False, (7, 1)),
    (b"(7-0", False, (6, TOP)), (b"(7-18446744073709551615", True, (8, 0)),
    (b"(0-0", False, ErrorReply("ERR invalid end ID for the interval")),
    (b"(18446744073709551615-18446744073709551615", True,
     ErrorReply("ERR invalid start ID for the interval")),
    (b"(-", True, INVALID_ID), (b"(+", False, INVALID_ID), (b"x", True, INVALID_ID),
])
def test_parse_range_id(raw: bytes, start: bool, expected: object) -> None:
    assert parse_range_id(raw, start) == expected


@pytest.mark.parametrize(("args", "expected"), [
    (("STREAMS", "s", "0"), XRead(MAX_COUNT, None, [(b"s", b"0")])),
    (("COUNT", 5, "BLOCK", 0, "STREAMS", "a", "b", "1", "$"),
     XRead(5, 0, [(b"a", b"1"), (b"b", b"$")])),
    (("count", 0, "streams", "a", "1"), XRead(MAX_COUNT, None, [(b"a", b"1")])),
    (("COUNT", 10**9, "STREAMS", "a", "1"), XRead(MAX_COUNT, None, [(b"a", b"1")])),
    (("STREAMS", "a", "b", "1"), UNBALANCED),
    (("STREAMS", *["s"] * 33, *["0"] * 33), TOO_MANY_STREAMS),
    (("STREAMS",), SYNTAX),
    (("COUNT", 5), SYNTAX),
    (("NOPE", "STREAMS", "a", "1"), SYNTAX),
    (("COUNT", "x", "STREAMS", "a", "1"),
     ErrorReply("ERR value is not an integer or out of range")),
    (("BLOCK", -1, "STREAMS", "a", "1"), NEGATIVE_TIMEOUT),
    (("BLOCK", "1.5", "STREAMS", "a", "1"),
     ErrorReply("ERR timeout is not an integer or out of range")),
])
def test_parse_xread(args: tuple, expected: object) -> None:
    assert parse_xread(b("XREAD", *args)) == expected


def test_xread_gives_every_change_with_its_fields(kv: KVStateMachine) -> None:
    assert xread(kv, "STREAMS", "__raftkv:changes", "0") == [[b"__raftkv:changes", [
        [b"1-0", [b"op", b"set", b"key", b"user:1", b"value", b"alice",
                  b"deadline", b"%d" % (T0 + 5000)]],
        [b"2-0", [b"op", b"mset", b"key", b"user:2", b"value", b"bob"]],
        [b"2-1", [b"op", b"mset", b"key", b"x", b"value", b"1"]],
        [b"3-0", [b"op", b"incr", b"key", b"x", b"value", b"2"]],
        [b"4-0", [b"op", b"del", b"key", b"user:1"]],
    ]]]


def test_xread_resumes_after_an_id_filters_and_counts(kv: KVStateMachine) -> None:
    reply = xread(kv, "COUNT", 1, "STREAMS", "__raftkv:changes", "2-0")
    assert [e[0] for e in reply[0][1]] == [b"2-1"]
    reply = xread(kv, "STREAMS", "__raftkv:changes:user:*", "__raftkv:changes", "1", "3")
    assert [(name, [e[0] for e in entries]) for name, entries in reply] == [
        (b"__raftkv:changes:user:*", [b"2-0", b"4-0"]), (b"__raftkv:changes", [b"4-0"])]
    assert xread(kv, "STREAMS", "__raftkv:changes", "4-0") is None
    assert xread(kv, "STREAMS", "__raftkv:changes", "$") is None
    resp3 = xread(kv, "STREAMS", "__raftkv:changes:x", "0", proto=3)
    assert list(resp3) == [b"__raftkv:changes:x"] and len(resp3[b"__raftkv:changes:x"]) == 2


def test_xread_on_plain_names_and_bad_ids(kv: KVStateMachine) -> None:
    assert xread(kv, "STREAMS", "no-such-stream", "0") is None  # an empty stream
    assert xread(kv, "STREAMS", "x", "0") == WRONGTYPE  # a string key
    assert xread(kv, "STREAMS", "__raftkv:changes", "1-x") == INVALID_ID


def test_resuming_before_the_retained_tail_is_a_compacted_error() -> None:
    kv = KVStateMachine(feed=ChangeFeed(retention_entries=2))
    for index in range(1, 6):
        kv.apply(encode_entry(b("SET", "k", index), T0), index=index)
    error = xread(kv, "STREAMS", "__raftkv:changes", "2-0")
    assert isinstance(error, ErrorReply)
    assert error.text.startswith("ERR change feed compacted: oldest retained id is 4-0 ")
    assert "up to 3-0 are dropped" in error.text
    assert "XINFO STREAM __raftkv:changes" in error.text and "SCAN" in error.text
    assert [e[0] for e in xread(kv, "STREAMS", "__raftkv:changes", "3-0")[0][1]] == [
        b"4-0", b"5-0"]
    # "0" means from the oldest retained: never compacted.
    assert [e[0] for e in xread(kv, "STREAMS", "__raftkv:changes", "0-0")[0][1]] == [
        b"4-0", b"5-0"]


def test_xrange_and_xrevrange(kv: KVStateMachine) -> None:
    r = reader(kv)
    ids = lambda reply: [e[0] for e in reply]  # noqa: E731
    assert ids(r.xrange(b("XRANGE", "__raftkv:changes", "-", "+"), False)) == [
        b"1-0", b"2-0", b"2-1", b"3-0", b"4-0"]
    assert ids(r.xrange(b("XRANGE", "__raftkv:changes", "2", "2"), False)) == [b"2-0", b"2-1"]
    assert ids(r.xrange(b("XRANGE", "__raftkv:changes", "(2-0", "+", "COUNT", 2),
                        False)) == [b"2-1", b"3-0"]
    assert ids(r.xrange(b("XREVRANGE", "__raftkv:changes", "+", "-", "COUNT", 2),
                        True)) == [b"4-0", b"3-0"]
    assert ids(r.xrange(b("XREVRANGE", "__raftkv:changes:user:*", "(4-0", "-"), True)) == [
        b"2-0", b"1-0"]
    assert r.xrange(b("XRANGE", "__raftkv:changes", "-", "+", "COUNT", 0), False) == []
    assert r.xrange(b("XRANGE", "__raftkv:changes", "-", "+", "COUNT"), False) == SYNTAX
    assert r.xrange(b("XRANGE", "__raftkv:changes", "x", "+"), False) == INVALID_ID
    assert r.xrange(b("XRANGE", "nothing", "-", "+"), False) == []
    assert r.xrange(b("XRANGE", "x", "-", "+"), False) == WRONGTYPE


def test_xinfo_stream(kv: KVStateMachine) -> None:
    info = reader(kv).xinfo(b("XINFO", "STREAM", "__raftkv:changes:user:*"))
    assert info[b"length"] == 3
    assert info[b"first-entry"][0] == b"1-0" and info[b"last-entry"][0] == b"4-0"
    assert info[b"last-generated-id"] == b"4-0"
    assert info[b"recorded-first-entry-id"] == b"1-0"
    assert info[b"max-deleted-entry-id"] == b"0-0"
    assert reader(kv).xinfo(b("XINFO", "STREAM", "nothing")) == NO_SUCH_KEY
    refused = reader(kv).xinfo(b("XINFO", "GROUPS", "__raftkv:changes"))
    assert isinstance(refused, ErrorReply) and "no consumer groups" in refused.text


def test_a_user_restricted_to_some_keys_sees_only_their_changes(kv: KVStateMachine) -> None:
    patterns = (b"user:*", b"__raftkv:changes*")
    reply = xread(kv, "STREAMS", "__raftkv:changes", "0", patterns=patterns)
    assert [e[0] for e in reply[0][1]] == [b"1-0", b"2-0", b"4-0"]
    denied = xread(kv, "STREAMS", "__raftkv:changes", "0", patterns=(b"user:*",))
    assert denied == ErrorReply("NOPERM No permissions to access a key")


@pytest.mark.parametrize(("args", "refused"), [
    (b("SET", "__raftkv:changes", "v"), True),
    (b("MSET", "a", "1", "__raftkv:changes:user:*", "2"), True),
    (b("DEL", "a", "__raftkv:changes:x"), True),
    (b("RAFT", "ONCE", 1, 1, "SET", "__raftkv:changes", "v"), True),
    (b("set", "__raftkv:changes=v"), True),  # the original form (attack7)
    (b("set", "__raftkv:changes:x=v"), True),
    (b("set", "a=__raftkv:changes"), False),
    (b("SET", "a", "__raftkv:changes"), False),  # a value, not a key
    (b("SET", "__raftkv:changesX", "v"), False),
    (b("GET", "__raftkv:changes"), False),
])
def test_writes_to_the_feed_names_are_refused(args: list[bytes], refused: bool) -> None:
    assert _writes_feed(args) == (WRITE_TO_FEED if refused else None)
    # And so does the client port's check before any command runs (it looks the command
    # up once: a write's hot path, issue 15).
    node = SimpleNamespace(settings=SimpleNamespace(enable_scripts=True))
    assert _refused(node, args) == (WRITE_TO_FEED if refused else None)  # type: ignore[arg-type]


def test_a_long_filtered_read_is_done_in_slices_and_notices_compaction() -> None:
    feed = ChangeFeed(retention_entries=100_000)
    for i in range(1, 20_001):
        feed.append(i, [Change(i, 0, "set", b"other:%d" % i, b"v", None)])
    feed.append(20_001, [Change(20_001, 0, "set", b"user:1", b"v", None)])
    r = FeedReader(feed, None, lambda key: False)
    request = parse_xread(b("XREAD", "STREAMS", "__raftkv:changes:user:*", "0"))
    positions = r.start(request)
    job = r.read(positions, MAX_COUNT, 2)
    assert not job.step()  # 20,000 changes to look at: more than one slice
    steps = 1
    while not job.step():
        steps += 1
    assert steps >= 2
    assert decoded(job.result) == [[b"__raftkv:changes:user:*", [
        [b"20001-0", [b"op", b"set", b"key", b"user:1", b"value", b"v"]]]]]
    job = r.read(positions, MAX_COUNT, 2)
    assert not job.step()
    feed.retention_entries = 5
    feed.append(20_002, [])  # the tail is trimmed under the read's feet
    error = job.finish()
    assert isinstance(error, ErrorReply) and "change feed compacted" in error.text
    xrange = r.xrange(b("XREVRANGE", "__raftkv:changes", "+", "-"), True)
    assert [e[0] for e in done(xrange)] == [b"20001-0", b"20000-0", b"19999-0", b"19998-0"]


def test_a_slice_is_bounded_by_the_work_done_not_by_the_number_of_changes() -> None:
    """attack3: a `?` glob walked 4,096 changes a slice whatever each cost (400 ms with
    200-byte keys). The matcher is linear now (pscost), but 16 sets searched along a 1 MiB
    key still count ~1M units: that one change is matched over many slices."""
    feed = ChangeFeed()
    feed.append(1, [Change(1, 0, "set", b"a" * (1 << 20), b"v", None)])
    feed.append(2, [Change(2, 0, "set", b"a" + b"b" * 16, b"v", None)])
    r = FeedReader(feed, None, lambda key: False)
    stream = "__raftkv:changes:*" + "[b-c]" * 16 + "*"
    positions = r.start(parse_xread(b("XREAD", "STREAMS", stream, "0")))
    job = r.read(positions, MAX_COUNT, 2)
    steps = 1
    while not job.step():
        steps += 1
    assert steps >= 100  # (the glob's work units, BUDGET units a slice)
    assert [e[0] for e in decoded(job.result)[0][1]] == [b"2-0"]


@pytest.mark.parametrize("proto", [2, 3])
def test_the_encoded_xread_reply_is_the_plain_reply_encoded(kv: KVStateMachine,
                                                            proto: int) -> None:
    request = parse_xread(b("XREAD", "STREAMS", "__raftkv:changes:x", "__raftkv:changes",
                            "__raftkv:changes:x", "0", "3", "2"))
    r = FeedReader(kv.feed, None, lambda key: False)
    reply = r.read(r.start(request), MAX_COUNT, proto).finish()
    x_all = [render(c) for c in kv.feed.after((0, 0), 100) if c.key == b"x"]
    last = [render(c) for c in kv.feed.after((3, 0), 100)]
    x_late = [render(c) for c in kv.feed.after((2, 0), 100) if c.key == b"x"]
    plain: object = [[b"__raftkv:changes:x", x_all], [b"__raftkv:changes", last],
                     [b"__raftkv:changes:x", x_late]]
    if proto == 3:  # a map: a name given twice keeps its last entries, as a dict does
        plain = dict(plain)  # type: ignore[arg-type]
    assert reply == Encoded(encode_reply(plain, proto))


def test_readers_at_the_same_ids_share_one_encoded_reply(kv: KVStateMachine) -> None:
    cache = ReplyCache(kv.feed)
    r = FeedReader(kv.feed, None, lambda key: False, cache)
    request = parse_xread(b("XREAD", "STREAMS", "__raftkv:changes", "1"))
    first = r.read(r.start(request), MAX_COUNT, 2).finish()
    again = r.read(r.start(request), MAX_COUNT, 2).finish()
    assert again is first and cache.hits == 1
    assert r.read(r.start(request), MAX_COUNT, 3).finish() is not first  # another protocol
    restricted = FeedReader(kv.feed, (b"*",), lambda key: False, cache)
    assert restricted.read(restricted.start(request), MAX_COUNT, 2).finish() is not first
    kv.apply(encode_entry(b("SET", "y", 1), T0), index=5)  # the feed moved: read again
    moved = r.read(r.start(request), MAX_COUNT, 2).finish()
    assert moved is not first and decoded(moved)[0][1][-1][0] == b"5-0"


def test_a_read_up_to_a_horizon_is_shared_after_the_feed_moves_past_it(
        kv: KVStateMachine) -> None:
    """Blocked readers read up to the last pass's horizon, which an entry applied past it
    does not change: their shared reply outlives the feed's version (a pass over a hundred
    watchers yields to the loop while entries are applied, and each new version made the
    next watcher read and join its reply again), until the horizon moves."""
    cache = ReplyCache(kv.feed)
    r = FeedReader(kv.feed, None, lambda key: False, cache)
    request = parse_xread(b("XREAD", "BLOCK", 0, "STREAMS", "__raftkv:changes", "1"))
    horizon = kv.feed.last_id
    first = r.read(r.start(request), MAX_COUNT, 2, True, horizon).finish()
    kv.apply(encode_entry(b("SET", "y", 1), T0), index=5)  # past the horizon
    again = r.read(r.start(request), MAX_COUNT, 2, True, horizon).finish()
    assert again is first and cache.hits == 1
    assert [e[0] for e in decoded(again)[0][1]] == [b"2-0", b"2-1", b"3-0", b"4-0"]
    moved = r.read(r.start(request), MAX_COUNT, 2, True, kv.feed.last_id).finish()
    assert moved is not first and decoded(moved)[0][1][-1][0] == b"5-0"  # a new horizon
    assert r.read(r.start(request), MAX_COUNT, 2, True, horizon).finish() is not first
    unbounded = r.read(r.start(request), MAX_COUNT, 2).finish()
    kv.apply(encode_entry(b("SET", "y", 2), T0), index=6)  # (unbounded: the feed moved)
    assert r.read(r.start(request), MAX_COUNT, 2).finish() is not unbounded


def test_the_shared_replies_bounded_and_not_keep_to_one_byte_bound(
        kv: KVStateMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ReplyCache(kv.feed)
    r = FeedReader(kv.feed, None, lambda key: False, cache)
    one = r.read(r.start(parse_xread(b("XREAD", "STREAMS", "__raftkv:changes", "0"))),
                 MAX_COUNT, 2).finish()
    monkeypatch.setattr(ReplyCache, "MAX_BYTES", len(one.data) + 10)
    horizon = kv.feed.last_id
    for start in ("0", "1", "2"):  # the first fills the bound: the others are not kept
        request = parse_xread(b("XREAD", "BLOCK", 0, "STREAMS", "__raftkv:changes", start))
        r.read(r.start(request), MAX_COUNT, 2, True, horizon).finish()
        r.read(r.start(parse_xread(b("XREAD", "STREAMS", "__raftkv:changes", start))),
               MAX_COUNT, 2).finish()
    assert cache._bytes + cache._bounded_bytes <= ReplyCache.MAX_BYTES
    assert len(cache._bounded) + len(cache._replies) == 1


def test_a_blocked_read_that_finds_nothing_moves_its_ids_on(kv: KVStateMachine) -> None:
    r = FeedReader(kv.feed, None, lambda key: False)
    request = parse_xread(b("XREAD", "BLOCK", 0, "STREAMS", "__raftkv:changes:nobody*",
                            "__raftkv:changes:user:*", "0", "2-0"))
    positions = r.start(request)
    assert r.news(positions)
    assert r.read(positions, MAX_COUNT, 2).finish() is not None  # (user:1's delete, 4-0)
    positions = [(positions[0][0], (0, 0))]
    assert r.read(positions, MAX_COUNT, 2, advance=True).finish() is None
    assert positions[0][1] == (4, 0) and not r.news(positions)  # next time: only newer


def test_each_entry_is_encoded_once_for_every_reader_and_the_kept_entries_are_bounded(
        kv: KVStateMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ReplyCache(kv.feed)
    r = FeedReader(kv.feed, None, lambda key: False, cache)
    plain = FeedReader(kv.feed, None, lambda key: False)
    read = lambda reader, start: reader.read(reader.start(parse_xread(  # noqa: E731
        b("XREAD", "STREAMS", "__raftkv:changes", start))), MAX_COUNT, 2).finish()
    assert read(r, "0") == read(plain, "0") and len(cache.entries) == 5
    rendered: list[Change] = []
    encode = streams.entry_bytes
    monkeypatch.setattr(streams, "entry_bytes", lambda c: rendered.append(c) or encode(c))
    for start in ("1", "2-0", "3"):  # readers at other ids: the entries are reused
        assert read(r, start) == read(plain, start)
    assert len(rendered) == 4 + 3 + 1  # (only the reader without the cache encoded)
    monkeypatch.setattr(ReplyCache, "MAX_ENTRIES", 2)
    kv.apply(encode_entry(b("SET", "y", 1), T0), index=5)
    assert read(r, "0") == read(plain, "0")
    assert list(cache.entries) == [(4, 0), (5, 0)]  # the oldest dropped first


@pytest.mark.parametrize("op", ["set", "del", "expired", "flushall", "mset", "getdel"])
@pytest.mark.parametrize("value", [None, b"", b"v", b"\r\n" * 40])
@pytest.mark.parametrize("deadline", [None, 0, 2**63 - 1])
def test_an_entry_encoded_directly_is_the_generic_encoding_of_its_rendering(
        op: str, value: bytes | None, deadline: int | None) -> None:
    """entry_bytes builds a feed entry's RESP without the generic encoder (2.5 -> 1 us a
    change, once per change per node with a watcher): the same bytes, every field shape."""
    for key in (b"", b"k", b"key:\x00\r\n" * 9):
        change = Change(2**64 - 1, 2**63 - 1, op, key, value, deadline)
        assert streams.entry_bytes(change) == encode_reply(render(change), 2)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_large_range_is_encoded_as_it_is_sent_never_held_whole(reverse: bool) -> None:
    """XRANGE - + of a feed of 4 KiB values was encoded whole (16 MiB a reply) as soon as
    it was read: 300 connections asking and not reading held 300 of them (5.3 GB). Now
    the reply holds the feed's own change tuples and is encoded a piece at a time as the
    writer sends it; it weighs what it will send; the pieces make the same reply."""
    kv = KVStateMachine(feed=ChangeFeed(retention_entries=10_000))
    for i in range(2000):
        kv.apply(encode_entry([b"SET", b"k%04d" % i, bytes([i % 251]) * 4096], T0),
                 index=i + 1)
    args = b("XREVRANGE", "__raftkv:changes", "+", "-") if reverse else \
        b("XRANGE", "__raftkv:changes", "-", "+")
    job = FeedReader(kv.feed, None, lambda key: False).xrange(args, reverse=reverse)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        reply = job.finish()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert isinstance(reply, Streamed) and held < 256 * 1024, held  # (8 MiB of entries)
    assert 8_000_000 < reply.size < 9_000_000  # (the entries' bytes)
    pieces = list(reply.pieces())
    assert len(pieces) > 100 and max(map(len, pieces)) < 80 * 1024
    entries = decoded(Encoded(b"".join(pieces)))
    changes = kv.feed.chunk((0, 0), (TOP, 0), 10_000, reverse)
    assert entries == [[b"%d-%d" % c.id, [b"op", b"set", b"key", c.key, b"value", c.value]]
                       for c in changes]


def test_entries_a_read_encoded_are_shared_before_it_finishes(
        kv: KVStateMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers' slices interleave (a hundred watchers read the same new changes at once):
    what one read encoded is in the cache when it yields, not only when it ends. Found on
    the quiet machine: kept once at the end of each read, every watcher encoded every
    change itself, and 100 watchers cost a node 3x the CPU a reply (bench_watch.py --raw
    --requests 30000: 1.0-1.7 ms a reply against 0.3-0.5, changes delivered seconds late)."""
    cache = ReplyCache(kv.feed)
    changes = [Change(10, i, "set", b"k%d" % i, b"v" * 32, None) for i in range(200)]
    encoded: list[Change] = []
    encode = streams.entry_bytes
    monkeypatch.setattr(streams, "entry_bytes", lambda c: encoded.append(c) or encode(c))
    first = streams.encode_entries(changes, cache)
    next(first)  # one slice of the first read, which then yields to another reader
    sliced = len(encoded)
    assert 0 < sliced < len(changes)
    second = streams.encode_entries(changes, cache)
    with pytest.raises(StopIteration) as ended:
        while True:
            next(second)
    assert len(encoded) == len(changes)  # the second encoded only what the first had not
    assert ended.value.value == [encode(c) for c in changes]


@pytest.mark.parametrize("proto", [2, 3])
def test_a_large_xread_without_block_is_encoded_as_it_is_sent(proto: int) -> None:
    """XREAD STREAMS ... 0 without COUNT reads up to 10,000 changes (16 MiB), like XRANGE - +,
    and was encoded whole at once (XRANGE's were streamed, harden8). Now the handler gives a
    read done in slices whose reply holds the feed's own changes and is encoded a piece at a
    time as the writer sends it, weighed at what it will send; the pieces make the same
    reply, a name given twice included (RESP3: a map keeps its last entries)."""
    kv = KVStateMachine(feed=ChangeFeed(retention_entries=10_000))
    for i in range(2000):
        kv.apply(encode_entry([b"SET", b"k%04d" % i, bytes([i % 251]) * 4096], T0),
                 index=i + 1)
    node = SimpleNamespace(kv=kv, removed=False)
    conn = Connection(1, "127.0.0.1:1", user="default")
    conn.proto = proto
    names = [b"__raftkv:changes", b"__raftkv:changes:k1*", b"__raftkv:changes:k1*"]
    args = [b"XREAD", b"STREAMS", *names, b"0", b"0", b"1500"]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        pending = cmd_xread(node, conn, args)  # type: ignore[arg-type]
        job = pending.value
        assert isinstance(job, SlicedRead)  # (the rest is stepped by the connection's writer)
        reply = job.finish()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert isinstance(reply, Streamed) and held < 256 * 1024, held  # (12 MiB of entries)
    pieces = list(reply.pieces())
    sent = sum(map(len, pieces))
    assert 0.9 * sent < reply.size < 1.1 * sent and max(map(len, pieces)) < 80 * 1024
    every = [render(c) for c in kv.feed.after((0, 0), 10_000)]
    ones = [render(c) for c in kv.feed.after((0, 0), 10_000) if c.key.startswith(b"k1")]
    late = [render(c) for c in kv.feed.after((1500, 0), 10_000) if c.key.startswith(b"k1")]
    plain: object = [[names[0], every], [names[1], ones], [names[2], late]]
    if proto == 3:
        plain = dict(plain)  # type: ignore[arg-type]
    assert b"".join(pieces) == encode_reply(plain, proto)


@pytest.mark.parametrize(("args", "scripts", "refused"), [
    (b("EVAL", "return 1", 0), False, "scripts"),
    (b("RAFT", "ONCE", 1, 1, "EVAL", "return 1", 0), False, "scripts"),
    (b("EVAL", "return 1", 0), True, None),
    (b("once", 1, 1, "SET", "a", "b"), True, "unknown"),  # the log's own command
    (b("RAFT", "ONCE", 1, 1, "once", 1, 1, "SET", "a", "b"), True, None),  # RAFT answers it
    (b("SET", "a", "b"), False, None),
])
def test_the_client_port_refuses_internal_commands_and_disabled_scripts(
        args: list[bytes], scripts: bool, refused: str | None) -> None:
    node = SimpleNamespace(settings=SimpleNamespace(enable_scripts=scripts))
    reply = _refused(node, args)  # type: ignore[arg-type]
    if refused is None:
        assert reply is None
    else:
        assert isinstance(reply, ErrorReply)
        assert ("disabled" if refused == "scripts" else "unknown command") in reply.text
