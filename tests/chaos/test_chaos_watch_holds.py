"""chaos.watchers: the reference feed read whole, and whether it holds the run's beginning.

A run whose watchers start at 0-0 asked ``XREAD ... 0-0``, which the node reads from the
oldest retained change and never answers "compacted": with the feed trimmed by retention
(big values in it), the check read a feed without the run's beginning as complete and
reported acknowledged writes "missing from the feed" and watchers' changes "not in the
feed" (raftkv-chaos run seed 2222 with 4 MiB APPENDs beside it: 525 writes, a false alarm
of data loss).
"""

from __future__ import annotations

import pytest

from chaos import watchers
from client.feed import ZERO, ChangeId
from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.feed import ChangeFeed
from raftkv.kv.sliced import SlicedRead
from raftkv.server.streams import MAX_REPLY_BYTES, FeedReader, XRead, parse_xread
from wire.reply import ErrorReply
from wire.resp import encode_reply
from wire.resp_reply import ReplyParser

T0 = 1_700_000_000_000


def _node_with(kv: KVStateMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    """``watchers._request`` answered by this state's feed, as a node's XREAD is."""
    async def request(addr: object, *args: object, patience: float = 10.0) -> object:
        parsed = parse_xread([a if isinstance(a, bytes) else str(a).encode() for a in args])
        assert isinstance(parsed, XRead)
        reader = FeedReader(kv.feed, None, lambda key: True)
        positions = reader.start(parsed)
        if isinstance(positions, ErrorReply):
            return positions
        reply = reader.read(positions, parsed.count, 2)
        return reply.finish() if isinstance(reply, SlicedRead) else reply

    monkeypatch.setattr(watchers, "_request", request)


def _feed(retained: int, changes: int = 5) -> KVStateMachine:
    kv = KVStateMachine(feed=ChangeFeed(retention_entries=retained))
    for index in range(1, changes + 1):
        kv.apply(encode_entry([b"SET", b"k", b"%d" % index], T0), index=index)
    return kv


async def test_a_feed_trimmed_since_the_start_does_not_hold_a_run_from_zero(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _node_with(_feed(retained=2), monkeypatch)
    assert not await watchers.holds(("node", 1), ZERO)  # (before: True)
    assert not await watchers.holds(("node", 1), ChangeId(2, 0))
    assert await watchers.holds(("node", 1), ChangeId(3, 0))


async def test_a_whole_feed_holds_a_run_from_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    _node_with(_feed(retained=100), monkeypatch)
    assert await watchers.holds(("node", 1), ZERO)
    assert await watchers.holds(("node", 1), ChangeId(4, 0))


class _Conn:
    """A client connection to a node holding ``kv``: its GET, and its XRANGE as the
    node answers it (bounded in bytes as well as by COUNT)."""

    def __init__(self, kv: KVStateMachine) -> None:
        self.kv = kv

    async def request(self, *args: object) -> object:
        raw = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        if raw[0] == b"GET":
            return None
        reply = FeedReader(self.kv.feed, None, lambda key: True).xrange(raw, False)
        reply = reply.finish() if isinstance(reply, SlicedRead) else reply
        parser = ReplyParser()
        parser.feed(encode_reply(reply))
        return parser.next_reply()

    async def aclose(self) -> None:
        pass


async def test_the_whole_feed_is_read_past_pages_cut_short_by_their_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """attack11 (seed 2222 with 256 KiB APPENDs beside it): an XRANGE reply is bounded at
    about MAX_REPLY_BYTES, so a page of big values came back shorter than COUNT, which the
    harness took for the feed's end: 202 acknowledged writes 'missing from the feed'."""
    kv = KVStateMachine(feed=ChangeFeed(retention_entries=1000, retention_bytes=1 << 30))
    big = b"x" * (MAX_REPLY_BYTES // 8)
    for index in range(1, 21):
        kv.apply(encode_entry([b"SET", b"k%d" % index, big], T0), index=index)
    kv.apply(encode_entry([b"SET", b"last", b"1"], T0), index=21)

    async def open_host(*args: object, **kwargs: object) -> _Conn:
        return _Conn(kv)

    monkeypatch.setattr(watchers.Connection, "open_host", open_host)
    feed = await watchers.read_feed(("node", 1))
    assert [c.key for c in feed][-1] == b"last"  # (before: k7, the end of the first page)
    assert len(feed) == 21
