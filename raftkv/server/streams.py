"""The change feed as read-only Redis streams: XREAD, XRANGE, XREVRANGE, XINFO STREAM.

``__raftkv:changes`` is every change the log made, ``__raftkv:changes:<glob>`` those to
keys matching the glob (Redis's glob, raftkv.kv.glob; a FLUSHALL is in every one). An
entry's id is ``<log index>-<position in the entry>``, the same on every node; its fields
are ``op`` and ``key``, then ``value`` and ``deadline`` (ms since the epoch) when the
change has them (raftkv.kv.changes). So redis-py's ``xread``, ``redis-cli`` and any stream
consumer can follow the feed, and resume on another node from the last id they saw.

What this node serves is its own feed: changes up to its applied index (a follower may
trail the leader; it never shows a change that is not committed). ``0``/``0-0`` reads
from the oldest retained change, ``$`` only changes made from now on; an id older than the
retained tail answers ``COMPACTED`` naming the oldest id and how to resync. ``BLOCK``
waits for the applier (raftkv.server.blocked_readers), bounded by --watch-max-blocked.

Choices (README "Watching changes"): COUNT is capped at ``MAX_COUNT`` and one reply at
about ``MAX_REPLY_BYTES`` (the client asks again from the last id); other stream commands,
and writes to the feed's names, are refused with a clear error; a key that is not a feed
is an empty stream (RaftKV has no stream type): XREAD returns nothing for it, XRANGE an
empty array, XINFO ``no such key``, a string key ``WRONGTYPE``. ACL: the stream name
must be a key the user may read, and a user without ``allkeys`` sees only the changes
to keys its patterns allow (a FLUSHALL always).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from raftkv.kv.changes import FLUSH_KEY, Change
from raftkv.kv.feed import ChangeFeed, Compacted, Id, key_filter
from raftkv.kv.glob import Glob
from raftkv.node.pending import Pending
from raftkv.server.auth import KEY_DENIED, acl_of
from raftkv.server.connection import Connection
from wire.reply import ErrorReply

if TYPE_CHECKING:
    from raftkv.node.node import Node

FEED = b"__raftkv:changes"
FEED_FILTERED = FEED + b":"
MAX_COUNT = 10_000
# Streams one XREAD may name: each is walked on every read and matched against every change
# while the reader blocks (attack3: 200,000 names in one XREAD BLOCK stalled the node for
# minutes once woken). The feed is one log; a few globs cover what a reader wants.
MAX_STREAMS = 16
TOO_MANY_STREAMS = ErrorReply(f"ERR at most {MAX_STREAMS} streams in one XREAD of the change "
                              "feed (name one filtered stream per glob you need)")
MAX_REPLY_BYTES = 16 * 1024 * 1024
MAX_ID_PART = 2**64 - 1  # Redis's stream ids are two unsigned 64-bit numbers

INVALID_ID = ErrorReply("ERR Invalid stream ID specified as stream command argument")
SYNTAX = ErrorReply("ERR syntax error")
NOT_INTEGER = ErrorReply("ERR value is not an integer or out of range")
BAD_TIMEOUT = ErrorReply("ERR timeout is not an integer or out of range")
NEGATIVE_TIMEOUT = ErrorReply("ERR timeout is negative")
UNBALANCED = ErrorReply("ERR Unbalanced 'xread' list of streams: for each stream key an ID or "
                        "'$' must be specified.")
NO_SUCH_KEY = ErrorReply("ERR no such key")
WRONGTYPE = ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")
READ_ONLY = ("ERR {} is not supported: RaftKV's streams are the read-only change feed "
             "(XREAD, XRANGE, XREVRANGE and XINFO STREAM on __raftkv:changes[:<glob>])")
WRITE_TO_FEED = ErrorReply("ERR __raftkv:changes and __raftkv:changes:* are RaftKV's "
                           "read-only change feed; they cannot be written")
_NUMBER = re.compile(rb"[0-9]{1,20}")


def is_feed_name(key: bytes) -> bool:
    """True for the names of the feed's virtual streams."""
    return key == FEED or key.startswith(FEED_FILTERED)


def writes_feed(keys: list[bytes]) -> ErrorReply | None:
    """``WRITE_TO_FEED`` if a write names one of the feed's streams (the client port asks
    before proposing), else None."""
    return WRITE_TO_FEED if any(map(is_feed_name, keys)) else None


# -- ids ------------------------------------------------------------------------------------


def format_id(change_id: Id) -> bytes:
    return b"%d-%d" % change_id


def _part(raw: bytes) -> int | None:
    if not _NUMBER.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_ID_PART else None


def parse_id(raw: bytes, missing_position: int = 0) -> Id | None:
    """``<index>-<position>`` or ``<index>`` (position ``missing_position``), else None."""
    index, sep, position = raw.partition(b"-")
    first = _part(index)
    second = _part(position) if sep else missing_position
    if first is None or second is None:
        return None
    return (first, second)


def _next(change_id: Id) -> Id | None:
    index, position = change_id
    if position < MAX_ID_PART:
        return (index, position + 1)
    return (index + 1, 0) if index < MAX_ID_PART else None


def _previous(change_id: Id) -> Id | None:
    index, position = change_id
    if position > 0:
        return (index, position - 1)
    return (index - 1, MAX_ID_PART) if index > 0 else None


def parse_range_id(raw: bytes, start: bool) -> Id | ErrorReply:
    """An XRANGE bound: ``-``, ``+``, an id (a bare index covers its whole entry), or an
    exclusive ``(id`` (Redis 6.2)."""
    if raw == b"-":
        return (0, 0)
    if raw == b"+":
        return (MAX_ID_PART, MAX_ID_PART)
    exclusive = raw.startswith(b"(")
    parsed = parse_id(raw[1:] if exclusive else raw, 0 if start else MAX_ID_PART)
    if parsed is None:
        return INVALID_ID
    if not exclusive:
        return parsed
    moved = _next(parsed) if start else _previous(parsed)
    if moved is None:
        return ErrorReply(f"ERR invalid {'start' if start else 'end'} ID for the interval")
    return moved


# -- streams and their entries ---------------------------------------------------------------


@attrs.frozen
class Stream:
    """One virtual stream: its name and which changes it holds."""

    name: bytes
    match: Callable[[Change], bool] | None  # None: every change

    @classmethod
    def named(cls, name: bytes) -> Stream | None:
        if name == FEED:
            return cls(name, None)
        if name.startswith(FEED_FILTERED):
            return cls(name, key_filter(Glob(name[len(FEED_FILTERED):]).match))
        return None

    def restricted(self, may_read: Callable[[bytes], bool] | None) -> Stream:
        """The same stream as a user who may read only some keys sees it."""
        if may_read is None:
            return self
        inner = self.match

        def match(change: Change) -> bool:
            flush = change.key == FLUSH_KEY and change.op in ("flushall", "flushdb")
            if not flush and not may_read(change.key):
                return False
            return inner is None or inner(change)
        return Stream(self.name, match)


def render(change: Change) -> list[Any]:
    """A stream entry: ``[id, [op, <op>, key, <key>, value, <value>, deadline, <ms>]]``."""
    fields: list[bytes] = [b"op", change.op.encode(), b"key", change.key]
    if change.value is not None:
        fields += [b"value", change.value]
    if change.deadline_ms is not None:
        fields += [b"deadline", b"%d" % change.deadline_ms]
    return [format_id(change.id), fields]


def _size(change: Change) -> int:
    return 64 + len(change.key) + (len(change.value) if change.value else 0)


def _capped(changes: list[Change]) -> list[Change]:
    """At most ``MAX_REPLY_BYTES`` of changes (at least one)."""
    total = 0
    for i, change in enumerate(changes):
        total += _size(change)
        if total > MAX_REPLY_BYTES and i > 0:
            return changes[:i]
    return changes


def compacted(exc: Compacted, name: bytes) -> ErrorReply:
    """The error for a resume point older than the tail: the oldest id, and the resync."""
    oldest = format_id(exc.oldest).decode() if exc.oldest is not None else "none (empty)"
    stream = name.decode("utf-8", "replace")
    return ErrorReply(
        f"ERR change feed compacted: oldest retained id is {oldest} (changes up to "
        f"{format_id(exc.floor).decode()} are dropped); resync: note last-generated-id of "
        f"XINFO STREAM {stream}, re-read the keys with SCAN and GET, then XREAD from that "
        "id (changes carry whole values: replaying one already seen is harmless)")


# -- the commands ------------------------------------------------------------------------------


_INTEGER = re.compile(rb"-?[0-9]{1,18}")


def _count(raw: bytes) -> int | ErrorReply:
    """COUNT's value: Redis's integer error; 0 or less means as many as allowed."""
    if not _INTEGER.fullmatch(raw):
        return NOT_INTEGER
    value = int(raw)
    return MAX_COUNT if value <= 0 else min(value, MAX_COUNT)


def _timeout(raw: bytes) -> int | ErrorReply:
    if not _INTEGER.fullmatch(raw):
        return BAD_TIMEOUT
    value = int(raw)
    return NEGATIVE_TIMEOUT if value < 0 else value


@attrs.frozen
class XRead:
    """A parsed XREAD: COUNT, BLOCK (ms, None: no BLOCK) and (stream name, id) pairs."""

    count: int
    block: int | None
    streams: list[tuple[bytes, bytes]]


def parse_xread(args: list[bytes]) -> XRead | ErrorReply:
    count, block, i = MAX_COUNT, None, 1
    while i < len(args):
        word = args[i].lower()
        if word == b"streams":
            break
        if word in (b"count", b"block") and i + 1 < len(args):
            value = _count(args[i + 1]) if word == b"count" else _timeout(args[i + 1])
            if isinstance(value, ErrorReply):
                return value
            if word == b"count":
                count = value
            else:
                block = value
            i += 2
            continue
        return SYNTAX
    rest = args[i + 1:]
    if i >= len(args) or not rest:
        return SYNTAX
    if len(rest) % 2:
        return UNBALANCED
    half = len(rest) // 2
    if half > MAX_STREAMS:
        return TOO_MANY_STREAMS
    return XRead(count, block, list(zip(rest[:half], rest[half:], strict=True)))


class FeedReader:
    """Answers the stream commands from one node's feed, as one user sees it."""

    def __init__(self, feed: ChangeFeed, may_read: Callable[[bytes], bool] | None,
                 key_exists: Callable[[bytes], bool]) -> None:
        self.feed = feed
        self.may_read = may_read  # None: every key
        self.key_exists = key_exists  # a plain key of that name exists (WRONGTYPE)

    def stream(self, name: bytes) -> Stream | ErrorReply | None:
        """The virtual stream ``name`` as this user sees it; None for a plain name."""
        if self.may_read is not None and not self.may_read(name):
            return KEY_DENIED
        stream = Stream.named(name)
        return stream.restricted(self.may_read) if stream is not None else None

    # XREAD

    def start(self, request: XRead) -> list[tuple[Stream, Id]] | ErrorReply:
        """The streams to read and the id after which each starts (``$`` resolved now)."""
        positions: list[tuple[Stream, Id]] = []
        for name, raw in request.streams:
            stream = self.stream(name)
            if isinstance(stream, ErrorReply):
                return stream
            if raw == b"$":
                after = self.feed.last_id
            else:
                parsed = parse_id(raw)
                if parsed is None:
                    return INVALID_ID
                after = max(parsed, self.feed.known_floor) if parsed == (0, 0) else parsed
            if stream is None:
                if self.key_exists(name):
                    return WRONGTYPE
                continue  # a stream that does not exist and never will: nothing to read
            positions.append((stream, after))
        return positions

    def read(self, positions: list[tuple[Stream, Id]], count: int, proto: int) -> Any:
        """XREAD's reply: each stream with entries after its id, or None if none has."""
        found: list[tuple[bytes, list[Any]]] = []
        budget = MAX_REPLY_BYTES
        for stream, after in positions:
            try:
                changes = self.feed.after(after, count, stream.match)
            except Compacted as exc:
                return compacted(exc, stream.name)
            changes = _capped(changes)
            if changes and budget > 0:
                budget -= sum(map(_size, changes))
                found.append((stream.name, [render(c) for c in changes]))
        if not found:
            return None
        if proto == 3:
            return dict(found)
        return [[name, entries] for name, entries in found]

    @staticmethod
    def wants(positions: list[tuple[Stream, Id]]) -> Callable[[Change], bool]:
        """For a blocked reader: is this newly applied change part of its answer?"""
        def wants(change: Change) -> bool:
            for stream, after in positions:
                if change.id > after and (stream.match is None or stream.match(change)):
                    return True
            return False
        return wants

    # XRANGE / XREVRANGE

    def xrange(self, args: list[bytes], reverse: bool) -> Any:
        name = "xrevrange" if reverse else "xrange"
        if len(args) < 4:
            return ErrorReply(f"ERR wrong number of arguments for '{name}' command")
        count = MAX_COUNT
        if len(args) > 4:
            if len(args) != 6 or args[4].lower() != b"count":
                return SYNTAX
            parsed_count = _count(args[5])
            if isinstance(parsed_count, ErrorReply):
                return parsed_count
            count = 0 if int(args[5]) <= 0 else parsed_count
        first, second = (args[3], args[2]) if reverse else (args[2], args[3])
        start = parse_range_id(first, True)
        if isinstance(start, ErrorReply):
            return start
        end = parse_range_id(second, False)
        if isinstance(end, ErrorReply):
            return end
        stream = self.stream(args[1])
        if isinstance(stream, ErrorReply):
            return stream
        if stream is None:
            return WRONGTYPE if self.key_exists(args[1]) else []
        changes = self.feed.between(start, end, count, reverse, stream.match)
        return [render(c) for c in _capped(changes)]

    # XINFO STREAM

    def xinfo(self, args: list[bytes]) -> Any:
        if len(args) < 2:
            return ErrorReply("ERR wrong number of arguments for 'xinfo' command")
        sub = args[1].lower()
        if sub == b"help" and len(args) == 2:
            return [b"XINFO STREAM <key>: the change feed's length, first and last entries, "
                    b"last-generated-id and recorded-first-entry-id."]
        if sub != b"stream":
            return ErrorReply(f"ERR XINFO {args[1].decode('utf-8', 'replace').upper()} is not "
                              "supported: the change feed has no consumer groups")
        if len(args) != 3:
            return ErrorReply("ERR XINFO STREAM FULL is not supported on the change feed"
                              if len(args) > 3 and args[3].lower() == b"full" else
                              "ERR wrong number of arguments for 'xinfo|stream' command")
        stream = self.stream(args[2])
        if isinstance(stream, ErrorReply):
            return stream
        if stream is None:
            return WRONGTYPE if self.key_exists(args[2]) else NO_SUCH_KEY
        feed = self.feed
        top = (MAX_ID_PART, MAX_ID_PART)
        if stream.match is None:
            length = len(feed)
        else:
            length = len(feed.between((0, 0), top, len(feed) or 1, False, stream.match))
        first = feed.between((0, 0), top, 1, False, stream.match)
        last = feed.between((0, 0), top, 1, True, stream.match)
        oldest = feed.first
        return {
            b"length": length,
            b"radix-tree-keys": 0,
            b"radix-tree-nodes": 0,
            b"last-generated-id": format_id(feed.last_id),
            b"max-deleted-entry-id": format_id(feed.known_floor),
            b"entries-added": length,
            b"recorded-first-entry-id": format_id(oldest.id if oldest is not None else (0, 0)),
            b"groups": 0,
            b"first-entry": render(first[0]) if first else None,
            b"last-entry": render(last[0]) if last else None,
        }


def _reader(node: Node, conn: Connection) -> FeedReader:
    user = acl_of(conn).user(conn.user)
    may_read = None if user is None or user.allkeys else user.may_access
    return FeedReader(node.kv.feed, may_read,
                      lambda key: node.kv.read([b"exists", key]) == 1)


def cmd_xread(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    request = parse_xread(args)
    if isinstance(request, ErrorReply):
        return Pending.of(request)
    reader = _reader(node, conn)
    positions = reader.start(request)
    if isinstance(positions, ErrorReply):
        return Pending.of(positions)
    proto = conn.proto
    reply = reader.read(positions, request.count, proto)
    if reply is not None or request.block is None or not positions:
        return Pending.of(reply)
    blocked = conn.server.blocked if conn.server is not None else None
    if blocked is None:
        return Pending.of(ErrorReply("ERR XREAD BLOCK is not available on this connection"))
    return blocked.block(node.start_background, request.block, reader.wants(positions),
                         lambda: reader.read(positions, request.count, proto), conn.on_end)


def cmd_xrange(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return Pending.of(_reader(node, conn).xrange(args, reverse=False))


def cmd_xrevrange(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return Pending.of(_reader(node, conn).xrange(args, reverse=True))


def cmd_xinfo(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return Pending.of(_reader(node, conn).xinfo(args))


def _refuse(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return Pending.of(ErrorReply(READ_ONLY.format(args[0].decode("utf-8", "replace").upper())))


# Redis's other stream commands: a clear error rather than "unknown command".
REFUSED = (b"xadd", b"xdel", b"xtrim", b"xlen", b"xgroup", b"xreadgroup", b"xack",
           b"xclaim", b"xautoclaim", b"xpending", b"xsetid")

HANDLERS: dict[bytes, Callable[[Any, Any, list[bytes]], Pending]] = {
    b"xread": cmd_xread,
    b"xrange": cmd_xrange,
    b"xrevrange": cmd_xrevrange,
    b"xinfo": cmd_xinfo,
    **dict.fromkeys(REFUSED, _refuse),
}
