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

import math
import re
import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from typing import Any

import attrs

from raftkv.kv.changes import FLUSH_KEY, Change
from raftkv.kv.feed import MAX_POSITION, TOP_ID, ChangeFeed, Compacted, Id
from raftkv.kv.glob import Glob, Steps, stringmatch
from raftkv.kv.sliced import SlicedRead
from raftkv.node.node import REMOVED, Node
from raftkv.node.pending import Pending
from raftkv.server.auth import KEY_DENIED, NOAUTH, acl_of
from raftkv.server.blocked_readers import BlockedReaders
from raftkv.server.connection import Connection
from wire.reply import Encoded, ErrorReply, Streamed
from wire.resp import encode_reply

FEED = b"__raftkv:changes"
FEED_FILTERED = FEED + b":"
MAX_COUNT = 10_000
MAX_REPLY_BYTES = 16 * 1024 * 1024
# An XRANGE/XREVRANGE reply larger than this is encoded as its client reads it (``streamed``).
STREAM_ABOVE = 64 * 1024
STREAM_PIECE = 64 * 1024
MAX_ID_PART = 2**64 - 1  # Redis's stream ids are two unsigned 64-bit numbers
# A read is done in slices of about ``BUDGET`` units of work, the client port (or the
# blocked readers' task) yielding to the loop in between (raftkv.kv.sliced, as KEYS and
# SCAN do). A unit is about one glob matcher step (raftkv.kv.glob: a `?` or `[` pattern
# costs a unit a key byte or more, a literal-and-`*` one a unit per 256 bytes), so a slice
# is bounded by the work done, not by the number of changes: attack3 made 4,096 changes a
# slice cost 400 ms with `?*?*?*?*b` on 200-byte keys. A unit is about 1 us of CPU here.
BUDGET = 2048
FIRST_SLICE = 256  # an XRANGE's slice in its command handler (``_settled_small``)
BATCH = 256  # changes taken from the tail at once (a list copy) by a read
CHANGE_COST = 1  # units a change costs a read beyond its filter
ENCODE_COST = 10  # units a change costs to render and encode, plus its bytes:
BYTES_PER_UNIT = 512  # bytes of a reply encoded per unit
# Streams one XREAD may name: each is walked on every read, a blocked reader's after each
# applied batch, so their number is bounded (they are all views of one feed).
MAX_XREAD_STREAMS = 32
TOO_MANY_STREAMS = ErrorReply(f"ERR XREAD reads at most {MAX_XREAD_STREAMS} streams at once "
                              "(they are all views of one change feed)")

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
    """One virtual stream: its name and which changes it holds (``glob``: to keys matching
    it; ``acl``: to keys matching one of the user's key patterns; None: every key). A
    FLUSHALL is in every stream."""

    name: bytes
    glob: Glob | None
    acl: tuple[Glob, ...] | None = None

    @classmethod
    def named(cls, name: bytes) -> Stream | None:
        if name == FEED:
            return cls(name, None)
        if name.startswith(FEED_FILTERED):
            return cls(name, Glob(name[len(FEED_FILTERED):]))
        return None

    def restricted(self, patterns: tuple[bytes, ...] | None) -> Stream:
        """The same stream as a user who may read only keys matching ``patterns`` sees it
        (None: every key)."""
        if patterns is None:
            return self
        return Stream(self.name, self.glob, tuple(Glob(p) for p in patterns))

    @property
    def every(self) -> bool:
        """Every change is in it (no filter, no restriction): nothing to match."""
        return self.glob is None and self.acl is None

    def steps(self, change: Change) -> Steps:
        """Is ``change`` in this stream? A generator yielding the matchers' work
        (raftkv.kv.glob), so one long key cannot hold a slice for long. (By position: a
        ``Change`` or its plain tuple.)"""
        key = change[3]
        if key == FLUSH_KEY and change[2] in ("flushall", "flushdb"):
            return True
        if self.acl is not None:
            for glob in self.acl:
                if (yield from glob.steps(key)):
                    break
            else:
                return False
        if self.glob is None:
            return True
        return (yield from self.glob.steps(key))


def render(change: Change | tuple[Any, ...]) -> list[Any]:
    """A stream entry: ``[id, [op, <op>, key, <key>, value, <value>, deadline, <ms>]]``.
    (By position: a ``Change`` or the plain tuple of its fields, as ``_collect`` gives a
    read that holds many: ``plain``.)"""
    index, position, op, key, value, deadline_ms = change
    fields: list[bytes] = [b"op", op.encode(), b"key", key]
    if value is not None:
        fields += [b"value", value]
    if deadline_ms is not None:
        fields += [b"deadline", b"%d" % deadline_ms]
    return [b"%d-%d" % (index, position), fields]


_FIELD_OP = b"$2\r\nop\r\n"
_FIELD_KEY = b"$3\r\nkey\r\n"
_FIELD_VALUE = b"$5\r\nvalue\r\n"
_FIELD_DEADLINE = b"$8\r\ndeadline\r\n"
_OPS: dict[str, bytes] = {}  # an op's name as a bulk string (a handful of names)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


def entry_bytes(change: Change | tuple[Any, ...]) -> bytes:
    """``encode_reply(render(change), 2)`` built directly: a node with a watcher encodes
    every change once, and the generic encoder took 2.5 us of CPU a change, this 1.0.
    (By position: a ``Change`` or its plain tuple.)"""
    index, position, op_name, key, value, deadline = change
    op = _OPS.get(op_name)
    if op is None:
        op = _bulk(op_name.encode())
        if len(_OPS) < 64:
            _OPS[op_name] = op
    change_id = b"%d-%d" % (index, position)
    if deadline is None:  # (most changes: one format, no list of pieces)
        if value is None:
            return b"*2\r\n$%d\r\n%b\r\n*4\r\n%b%b%b$%d\r\n%b\r\n" % (
                len(change_id), change_id, _FIELD_OP, op, _FIELD_KEY, len(key), key)
        return b"*2\r\n$%d\r\n%b\r\n*6\r\n%b%b%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n" % (
            len(change_id), change_id, _FIELD_OP, op, _FIELD_KEY, len(key), key,
            _FIELD_VALUE, len(value), value)
    pieces = [b"*2\r\n$%d\r\n%b\r\n*%d\r\n%b%b%b$%d\r\n%b\r\n" % (
        len(change_id), change_id, 4 + 2 * (value is not None) + 2 * (deadline is not None),
        _FIELD_OP, op, _FIELD_KEY, len(key), key)]
    if value is not None:
        pieces += (_FIELD_VALUE, _bulk(value))
    if deadline is not None:
        pieces += (_FIELD_DEADLINE, _bulk(b"%d" % deadline))
    return b"".join(pieces)


def _size(change: Change | tuple[Any, ...]) -> int:
    value = change[4]
    return 64 + len(change[3]) + (len(value) if value else 0)


def _capped_sliced(changes: list[Change]) -> Generator[int, None, tuple[list[Change], int]]:
    """At most ``MAX_REPLY_BYTES`` of changes (at least one) and their size, yielding the
    work as it goes: weighing 16,000 changes at once held a slice 10-40 ms (four such
    slices in one pass of the loop, with 300 readers asking, lost the leader its term)."""
    total = 0
    for i, change in enumerate(changes):
        size = _size(change)
        if total + size > MAX_REPLY_BYTES and i > 0:
            return changes[:i], total
        total += size
        if i & 255 == 255:
            yield 256 * CHANGE_COST
    return changes, total


def encode_entries(changes: list[Change], cache: ReplyCache | None = None
                   ) -> Generator[int, None, list[bytes]]:
    """Each change as an encoded stream entry (the same bytes in RESP2 and RESP3: arrays
    of bulk strings), yielding the work done as it goes; through ``cache``'s entries, so
    each change is rendered and encoded once however many readers read it."""
    out: list[bytes] = []
    work = 0
    known = cache.entries if cache is not None else {}
    # Kept in the cache at each slice's end (one trim a slice), before the read yields:
    # other readers' slices run between two of ours, and a hundred watchers reading the
    # same new changes must find them encoded. (Kept once at the end of the read, each
    # encoded them all itself: 100 watchers cost a node 3x the CPU a reply.)
    new: list[tuple[Id, bytes]] = []
    for change in changes:
        change_id = (change[0], change[1])
        piece = known.get(change_id)
        if piece is None:
            piece = entry_bytes(change)
            work += ENCODE_COST + len(piece) // BYTES_PER_UNIT
            new.append((change_id, piece))
        else:
            work += CHANGE_COST
        out.append(piece)
        if work >= 256:
            if cache is not None and new:
                cache.keep_entries(new)
                new = []
            yield work
            work = 0
    if cache is not None and new:
        cache.keep_entries(new)
    if work:
        yield work
    return out


def streamed(changes: list[Change], size: int, cache: ReplyCache | None = None) -> Streamed:
    """An array of ``changes``' entries, encoded a piece of about ``STREAM_PIECE`` bytes at
    a time as the connection's writer sends it (through ``cache``, as ``encode_entries``).

    Why: a reply of the whole feed is up to ``MAX_REPLY_BYTES``; built at once, 300
    connections asking for it and not reading held 300 of them (5.3 GB peak RSS, the
    leader's loop stalled for seconds: tests/bench/attack_xrange_readers.py). Streamed,
    a client that does not read holds the list of changes (references to the feed's own
    values) and one piece; the reply is weighed at ``size`` in its output buffer, so the
    output-buffer limits bound what such clients may pin once the feed drops them."""
    return Streamed(size, lambda: _entry_pieces(changes, cache))


def streamed_xread(taken: list[tuple[bytes, list[Change], int]], proto: int,
                   cache: ReplyCache | None = None) -> Streamed:
    """``xread_reply`` of each stream's (name, changes, their size), encoded as it is sent
    (``streamed``): an XREAD without BLOCK reads as much as an XRANGE of the whole feed."""
    if proto == 3:  # a map: a name given twice keeps its last entries, as a dict does
        taken = list({name: (name, changes, size) for name, changes, size in taken}.values())
        head = b"%%%d\r\n" % len(taken)
    else:
        head = b"*%d\r\n" % len(taken)
    found = [(name, changes) for name, changes, _ in taken]
    size = sum(len(name) + weight for name, _, weight in taken)

    def pieces() -> Iterator[bytes]:
        yield head
        for name, changes in found:
            yield (encode_reply(name, 3) if proto == 3 else
                   b"*2\r\n" + encode_reply(name, 2))
            yield from _entry_pieces(changes, cache)
    return Streamed(size, pieces)


def _entry_pieces(changes: list[Change], cache: ReplyCache | None) -> Iterator[bytes]:
    """An array of ``changes``' entries in pieces of about ``STREAM_PIECE`` bytes."""
    known = cache.entries if cache is not None else {}
    out = [b"*%d\r\n" % len(changes)]
    held = 0
    for change in changes:
        change_id = (change[0], change[1])
        piece = known.get(change_id)
        if piece is None:
            piece = entry_bytes(change)
            if cache is not None:
                cache.keep_entries([(change_id, piece)])
        out.append(piece)
        held += len(piece)
        if held >= STREAM_PIECE:
            yield b"".join(out)
            out, held = [], 0
    if out:
        yield b"".join(out)


def _array(pieces: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(pieces) + b"".join(pieces)


def xread_reply(found: list[tuple[bytes, list[bytes]]], proto: int) -> Encoded:
    """XREAD's reply from each stream's encoded entries: an array of [name, entries] pairs
    (RESP3: a map of name to entries, a name given twice keeping its last entries, as a
    dict does)."""
    if proto == 3:
        streams = dict(found)
        return Encoded(b"%%%d\r\n" % len(streams) + b"".join(
            encode_reply(name, 3) + _array(entries) for name, entries in streams.items()))
    return Encoded(b"*%d\r\n" % len(found) + b"".join(
        b"*2\r\n" + encode_reply(name, 2) + _array(entries) for name, entries in found))


class ReplyCache:
    """A node's encoded feed, shared by its readers: each change's entry, encoded once
    (ids mean the same change on every node and forever), and whole XREAD replies for the
    feed as it stands (its ``version``): readers at the same ids with the same streams,
    COUNT, protocol and key restriction get the same bytes. The watchers of one feed all
    come back with the id of the last change they got, so after each applied batch a
    hundred of them ask the same question: the first read answers it, the others share its
    bytes; a watcher that is behind joins entries encoded for the others (README "Watching
    changes"). A read up to a bound (a blocked reader's horizon, ``visible``) answers the
    same however the feed moves past it, so its reply is kept until the bound moves, not
    until the feed does: a pass over a hundred watchers yields to the loop every few ms,
    entries are applied meanwhile, and each change of version made the next watcher read
    and join its reply again. Bounded: ``MAX_REPLIES`` replies and ``MAX_BYTES`` in all,
    (both kinds together), emptied when the feed moves (unbounded reads) or the bound
    does (bounded ones);
    ``MAX_ENTRIES`` entries and ``MAX_BYTES``, the oldest dropped first."""

    MAX_REPLIES = 256
    MAX_ENTRIES = 100_000
    MAX_BYTES = 32 * 1024 * 1024

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self._version = -1
        self._replies: dict[Any, Encoded] = {}
        self._bytes = 0
        self._until: Id = TOP_ID  # the bound of the replies in ``_bounded``
        self._bounded: dict[Any, Encoded] = {}
        self._bounded_bytes = 0
        self.entries: OrderedDict[Id, bytes] = OrderedDict()  # (the oldest kept first)
        self._entry_bytes = 0
        self.hits = 0
        # What blocked XREADs see (``visible``): the feed's last id when the blocked
        # readers' current pass began.
        self.horizon: Id = feed.last_id
        self._pass = -1

    def visible(self, passes: int) -> Id:
        """The newest id an XREAD ... BLOCK may read: the feed's last id as the blocked
        readers' pass number ``passes`` (``BlockedReaders.passes``) first asked. Changes
        applied after it wait for the next pass, at most a window later
        (raftkv.server.blocked_readers): a watcher gets them all in one reply instead of
        one round trip per applied batch, and every watcher of a feed asks the same
        question, answered once."""
        if passes != self._pass:
            self._pass = passes
            self.horizon = self.feed.last_id
        return self.horizon

    def _now(self) -> None:
        if self._version != self.feed.version:
            self._version = self.feed.version
            self._replies = {}
            self._bytes = 0

    def get(self, key: Any, until: Id = TOP_ID) -> Encoded | None:
        """The reply kept for ``key``, a read up to ``until`` (TOP_ID: unbounded)."""
        if until != TOP_ID:
            reply = self._bounded.get(key) if until == self._until else None
        else:
            self._now()
            reply = self._replies.get(key)
        if reply is not None:
            self.hits += 1
        return reply

    def put(self, key: Any, reply: Encoded, version: int, until: Id = TOP_ID) -> None:
        """Keep ``reply``, read from the feed at ``version`` up to ``until``, if the feed
        (unbounded) or the bound (bounded) is still where the read began."""
        size = len(reply.data)
        if until != TOP_ID:
            if until != self._until:
                self._until, self._bounded, self._bounded_bytes = until, {}, 0
            if (len(self._bounded) < self.MAX_REPLIES
                    and self._bytes + self._bounded_bytes + size <= self.MAX_BYTES):
                self._bounded[key] = reply
                self._bounded_bytes += size
            return
        self._now()
        if (version == self._version and len(self._replies) < self.MAX_REPLIES
                and self._bytes + self._bounded_bytes + size <= self.MAX_BYTES):
            self._replies[key] = reply
            self._bytes += size

    def keep_entries(self, pieces: list[tuple[Id, bytes]]) -> None:
        """Keep these changes' encoded entries (an entry over ``MAX_BYTES / 64`` is not
        kept), then drop the oldest beyond the bounds."""
        entries, largest = self.entries, self.MAX_BYTES // 64
        added = 0
        for change_id, piece in pieces:
            if len(piece) <= largest and change_id not in entries:
                entries[change_id] = piece
                added += len(piece)
        self._entry_bytes += added
        while len(entries) > self.MAX_ENTRIES or self._entry_bytes > self.MAX_BYTES:
            self._entry_bytes -= len(entries.popitem(last=False)[1])


_CACHES: weakref.WeakKeyDictionary[ChangeFeed, ReplyCache] = weakref.WeakKeyDictionary()


def reply_cache(feed: ChangeFeed) -> ReplyCache:
    """The node's cache of XREAD replies for ``feed`` (the last one asked for first: a
    weak-key lookup builds a weak reference, on every watcher's every XREAD)."""
    last = _LAST_CACHE[0]
    if last is not None and last.feed is feed:
        return last
    cache = _CACHES.get(feed)
    if cache is None:
        cache = _CACHES[feed] = ReplyCache(feed)
    _LAST_CACHE[0] = cache
    return cache


_LAST_CACHE: list[ReplyCache | None] = [None]


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
    if raw.isdigit() and len(raw) <= 18:  # (the usual case, without the regex)
        return min(int(raw), MAX_COUNT) or MAX_COUNT
    if not _INTEGER.fullmatch(raw):
        return NOT_INTEGER
    value = int(raw)
    return MAX_COUNT if value <= 0 else min(value, MAX_COUNT)


def _timeout(raw: bytes) -> int | ErrorReply:
    if raw.isdigit() and len(raw) <= 18:  # (the usual case, without the regex)
        return int(raw)
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
    if half > MAX_XREAD_STREAMS:
        return TOO_MANY_STREAMS
    return XRead(count, block, list(zip(rest[:half], rest[half:], strict=True)))


class FeedReader:
    """Answers the stream commands from one node's feed, as one user sees it: a user whose
    key ``patterns`` are given (None: every key) sees only the changes to keys they match.
    ``cache``: the node's shared XREAD replies (None: every read is its own)."""

    def __init__(self, feed: ChangeFeed, patterns: tuple[bytes, ...] | None,
                 key_exists: Callable[[bytes], bool], cache: ReplyCache | None = None) -> None:
        self.feed = feed
        self.patterns = patterns
        self.key_exists = key_exists  # a plain key of that name exists (WRONGTYPE)
        self.cache = cache

    def stream(self, name: bytes) -> Stream | ErrorReply | None:
        """The virtual stream ``name`` as this user sees it; None for a plain name."""
        if self.patterns is not None and not any(stringmatch(p, name) for p in self.patterns):
            return KEY_DENIED
        stream = Stream.named(name)
        return stream.restricted(self.patterns) if stream is not None else None

    # XREAD

    def start(self, request: XRead) -> list[tuple[Stream, Id]] | ErrorReply:
        """The streams to read and the id after which each starts (``$`` resolved now)."""
        positions: list[tuple[Stream, Id]] = []
        for name, raw in request.streams:
            stream = self.stream(name)
            if isinstance(stream, ErrorReply):
                return stream
            after = self._after(raw)
            if after is None:
                return INVALID_ID
            if stream is None:
                if self.key_exists(name):
                    return WRONGTYPE
                continue  # a stream that does not exist and never will: nothing to read
            positions.append((stream, after))
        return positions

    def resume(self, streams: list[Stream], ids: list[bytes]) -> list[tuple[Stream, Id]] | None:
        """``start`` for streams already resolved (``LastXRead``): each with its id from
        ``ids``; None if an id is not valid (the full parse answers why)."""
        positions: list[tuple[Stream, Id]] = []
        for stream, raw in zip(streams, ids, strict=True):
            after = self._after(raw)
            if after is None:
                return None
            positions.append((stream, after))
        return positions

    def _after(self, raw: bytes) -> Id | None:
        """The id an XREAD id argument reads after (``$``: the last now; ``0``: the oldest
        retained), or None if it is not an id."""
        if raw == b"$":
            return self.feed.last_id
        parsed = parse_id(raw)
        if parsed == (0, 0):
            return max(parsed, self.feed.known_floor)
        return parsed

    def _collect(self, after: Id, until: Id, count: int, stream: Stream,
                 reverse: bool = False, strict: bool = False, plain: bool = False
                 ) -> Generator[int, None, tuple[list[Change], Id]]:
        """Walk the feed a ``BATCH`` at a time, yielding the work done; returns up to
        ``count`` changes of ``stream`` with after < id <= until (``reverse``: the newest
        first) and where the walk stopped (the last change it examined, or the bound it
        started from: a reader that found nothing may go on from there). ``strict``: a
        reader resuming after ``after`` (XREAD), so ``Compacted`` is raised if the tail no
        longer reaches back to where the walk stands. ``plain``: the changes as plain
        tuples, which the collector stops tracking (a ``Change`` is a tuple subclass, always
        tracked): 300 XRANGEs of a 16,000-change tail held 4.8 million tracked Changes, and
        each full collection walked them all on the loop (1.3 s)."""
        found: list[Change] = []
        feed, every = self.feed, stream.every
        edge = until if reverse else after
        while True:
            if strict:
                feed.check(after)
            batch = feed.chunk(after, until, BATCH, reverse, plain)
            if not batch:
                return found, edge
            if every:
                batch = batch[:count - len(found)]
                found += batch
                yield CHANGE_COST * len(batch)
            else:
                work = 0
                for i, change in enumerate(batch):
                    if (yield from stream.steps(change)):
                        found.append(change)
                        if len(found) >= count:
                            batch = batch[:i + 1]
                            break
                    work += CHANGE_COST
                    if work >= 256:
                        yield work
                        work = 0
                yield work + CHANGE_COST
            index, position = batch[-1][:2]
            if reverse:
                until = edge = ((index, position - 1) if position
                                else (index - 1, MAX_POSITION))
            else:
                after = edge = (index, position)
            if len(found) >= count:
                return found, edge

    def read(self, positions: list[tuple[Stream, Id]], count: int, proto: int,
             advance: bool = False, until: Id = TOP_ID, stream: bool = False) -> FeedRead:
        """XREAD's reply, as a read done in slices: each stream with entries after its id
        and up to ``until`` (a blocked reader's horizon, ``ReplyCache.visible``), encoded
        and shared through the cache, or None if none has. ``advance``: a blocked
        reader's read; when it finds nothing, each position moves to where its walk
        stopped, so the next wake-up looks only at changes applied since. ``stream``: a
        reply over ``STREAM_ABOVE`` is encoded as its client reads it (``streamed_xread``)
        and not shared: an XREAD without BLOCK, one-off like an XRANGE (a watcher's
        replies are small and shared)."""
        key = (self.patterns, proto, count, until,
               tuple((s.name, after) for s, after in positions))
        cache = self.cache
        if cache is not None:  # (a watcher of a busy feed: most reads end here)
            shared = cache.get(key, until)
            if shared is not None:
                return FeedRead.answered(shared)

        def body(job: FeedRead) -> Iterator[int]:
            if cache is not None:
                shared = cache.get(key, until)
                if shared is not None:
                    job.result = shared
                    return
            version = self.feed.version
            taken: list[tuple[bytes, list[Change], int]] = []
            edges: list[Id] = []
            budget = MAX_REPLY_BYTES
            for view, after in positions:
                try:
                    changes, edge = yield from self._collect(after, until, count, view,
                                                             strict=True, plain=True)
                except Compacted as exc:
                    job.result = compacted(exc, view.name)
                    return
                edges.append(edge)
                if changes and budget > 0:
                    changes, size = yield from _capped_sliced(changes)
                    budget -= size
                    taken.append((view.name, changes, size))
            if stream and MAX_REPLY_BYTES - budget > STREAM_ABOVE:
                job.result = streamed_xread(taken, proto, cache)
                return
            found: list[tuple[bytes, list[bytes]]] = []
            for name, changes, _ in taken:
                found.append((name, (yield from encode_entries(changes, cache))))
            if found:
                job.result = xread_reply(found, proto)
                if cache is not None:  # (if the feed did not move during the read)
                    cache.put(key, job.result, version, until)
            elif advance:
                positions[:] = [(stream, edge) for (stream, _), edge in zip(
                    positions, edges, strict=True)]
        return FeedRead(body)

    def news(self, positions: list[tuple[Stream, Id]]) -> bool:
        """Could the feed hold something after any of ``positions``? (A blocked reader
        skips its read when not: a cheap test, no matching.)"""
        last = self.feed.last_id
        return any(after < last for _, after in positions)

    def nothing_before(self, positions: list[tuple[Stream, Id]], until: Id) -> bool:
        """Is every position at ``until`` or past it, and still retained? Then a read up to
        ``until`` would find nothing and leave the positions as they are: a watcher back
        right after its reply, within the blocked readers' window, blocks at once."""
        floor = self.feed.known_floor
        return all(until <= after and floor <= after for _, after in positions)

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
        if count <= 0 or start > end:
            return []

        def body(job: FeedRead) -> Iterator[int]:
            after = (start[0], start[1] - 1)  # (position -1 sorts below every real one)
            changes, _ = yield from self._collect(after, end, count, stream, reverse,
                                                  plain=True)
            changes, size = yield from _capped_sliced(changes)
            if size > STREAM_ABOVE:  # encoded as the client reads it (``streamed``)
                job.result = streamed(changes, size, self.cache)
                return
            entries = yield from encode_entries(changes, self.cache)
            job.result = Encoded(_array(entries))  # (the same bytes in RESP2 and RESP3)
        return FeedRead(body)

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

        def body(job: FeedRead) -> Iterator[int]:
            length = len(feed)
            if not stream.every:  # (one pass: the matching changes, first and last)
                matching, _ = yield from self._collect((-1, 0), TOP_ID, length or 1, stream)
                length = len(matching)
            first, _ = yield from self._collect((-1, 0), TOP_ID, 1, stream)
            last, _ = yield from self._collect((-1, 0), TOP_ID, 1, stream, reverse=True)
            job.result = self._info(length, first, last)
        return FeedRead(body)

    def _info(self, length: int, first: list[Change], last: list[Change]) -> dict[bytes, Any]:
        feed = self.feed
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


class FeedRead(SlicedRead):
    """A stream command's reply, computed a slice of the feed at a time: ``body`` yields
    the work done and sets ``result`` (the client port steps it, yielding to its loop in
    between; ``settled`` gives the reply at once when one slice is enough)."""

    __slots__ = ("_body",)

    def __init__(self, body: Callable[[FeedRead], Iterator[int]], result: Any = None
                 ) -> None:
        self._body = body
        super().__init__()
        self.result = result

    def _run(self) -> Iterator[int]:
        return self._body(self)

    def step(self, budget: int = BUDGET) -> bool:
        """One slice of the feed's own size (``BUDGET``), whoever steps it."""
        return super().step(budget)

    def settled(self) -> Any:
        """The reply if the first slice finishes the read, else this read itself."""
        return self.result if self.step() else self

    @classmethod
    def answered(cls, reply: Any) -> FeedRead:
        """A read already done: ``reply`` (a shared reply, nothing left to read)."""
        return cls(_answered, reply)


def _answered(job: FeedRead) -> Iterator[int]:
    return iter(())


def _patterns(conn: Connection) -> tuple[bytes, ...] | ErrorReply | None:
    """The key patterns of ``conn``'s user now (None: every key); NOAUTH if the user is
    gone or off (ACL LOAD)."""
    user = acl_of(conn).user(conn.user)
    if user is None:
        return NOAUTH
    return None if user.allkeys else tuple(user.patterns)


def _reader(node: Node, conn: Connection) -> FeedReader:
    patterns = _user_patterns(conn)
    feed = node.kv.feed
    return FeedReader(feed, patterns, lambda key: node.kv.read([b"exists", key]) == 1,
                      reply_cache(feed))


def cmd_xread(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if node.removed:  # its feed never moves again (attack7: a watch sat there for good)
        return Pending.of(REMOVED)
    return _xread(node, conn, args, conn.server.blocked if conn.server is not None else None)


class LastXRead:
    """A connection's last XREAD as parsed (``Connection.last_xread``): its arguments but
    the ids, its reader and request, and its streams. A watcher sends the same XREAD after
    every reply but for its ids; parsing it and resolving its streams again was about half
    of what its re-blocking XREAD cost the node. Kept only for an XREAD of feed streams
    alone (whether a plain name is a key, WRONGTYPE, is asked each time)."""

    __slots__ = ("head", "reader", "request", "streams")

    def __init__(self, head: list[bytes], reader: FeedReader, request: XRead,
                 streams: list[Stream]) -> None:
        self.head = head
        self.reader = reader
        self.request = request
        self.streams = streams


def _user_patterns(conn: Connection) -> tuple[bytes, ...] | None:
    """The key patterns ``_reader`` reads with (None: every key)."""
    user = acl_of(conn).user(conn.user)
    return None if user is None or user.allkeys else tuple(user.patterns)


def _again(node: Node, conn: Connection, args: list[bytes]
           ) -> tuple[FeedReader, XRead, list[tuple[Stream, Id]]] | None:
    """``args`` resolved from the connection's last XREAD if only its ids differ and its
    user reads with the same key patterns (ACL LOAD may have changed them), else None:
    what a full parse would give."""
    last: LastXRead | None = conn.last_xread
    if last is None:
        return None
    n = len(last.streams)
    reader = last.reader
    if (len(args) != len(last.head) + n or args[:-n] != last.head
            or reader.feed is not node.kv.feed or reader.patterns != _user_patterns(conn)):
        return None
    positions = reader.resume(last.streams, args[-n:])
    return None if positions is None else (reader, last.request, positions)


def _xread(node: Node, conn: Connection, args: list[bytes], blocked: BlockedReaders | None
           ) -> Pending:
    again = _again(node, conn, args)
    if again is not None:
        reader, request, positions = again
    else:
        request = parse_xread(args)
        if isinstance(request, ErrorReply):
            return Pending.of(request)
        reader = _reader(node, conn)
        started = reader.start(request)
        if isinstance(started, ErrorReply):
            return Pending.of(started)
        positions = started
        n = len(request.streams)
        conn.last_xread = (LastXRead(args[:-n], reader, request, [s for s, _ in positions])
                           if len(positions) == n else None)
    proto, count, block = conn.proto, request.count, request.block
    cache = reader.cache
    # An XREAD ... BLOCK reads up to the horizon of the blocked readers' last pass (its
    # wake-ups are coalesced: README "Watching changes"); one without BLOCK, or with a
    # BLOCK shorter than the window, reads everything there is.
    horizon: Callable[[], Id] | None = None
    if blocked is not None and cache is not None and block is not None and (
            block == 0 or block >= blocked.window * 1000):
        def horizon() -> Id:
            return cache.visible(blocked.passes)
    until = horizon() if horizon is not None else TOP_ID
    job: FeedRead | None = None
    done = True
    # (A watcher back right after its reply, within the window: nothing to read until
    # the next pass, so it blocks at once.)
    if horizon is None or not positions or not reader.nothing_before(positions, until):
        # Without BLOCK, a read like an XRANGE: a large reply streamed, a first slice of
        # FIRST_SLICE here and the rest in the writer, among the node's SLICED_AT_ONCE.
        job = reader.read(positions, count, proto, advance=block is not None, until=until,
                          stream=block is None)
        done = job.step(FIRST_SLICE if block is None else BUDGET)
        if block is None or not positions or (done and job.result is not None):
            return Pending.of(job.result if done else job)
    if blocked is None:
        return Pending.of(ErrorReply("ERR XREAD BLOCK is not available on this connection"))
    # Nothing yet (or a long read still going): the blocked readers' task finishes it,
    # then reads again from where it stopped after each applied batch that could matter.

    def retry() -> FeedRead | None:
        nonlocal reader
        if not reader.news(positions):
            return None
        # The user as it is now (attack7: a reader blocked before ACL LOAD removed or
        # narrowed its user went on receiving changes to any key).
        patterns = _patterns(conn)
        if isinstance(patterns, ErrorReply):
            return FeedRead.answered(patterns)
        if patterns != reader.patterns:
            reader = FeedReader(reader.feed, patterns, reader.key_exists, reader.cache)
            for i, (stream, after) in enumerate(positions):
                again = reader.stream(stream.name)
                if not isinstance(again, Stream):
                    return FeedRead.answered(again if again is not None else KEY_DENIED)
                positions[i] = (again, after)
        return reader.read(positions, count, proto, advance=True,
                           until=horizon() if horizon is not None else TOP_ID)

    # Changes past the horizon already: the next pass serves them (within the window).
    # (A reader of the whole feed has a full reply once COUNT changes are applied: the
    # readers' task need not wait its window for more.)
    full = count if all(stream.every for stream, _ in positions) else math.inf
    return blocked.block(node.start_background, block, retry, conn.on_end,
                         None if done else job, wake=done and reader.news(positions),
                         full=full)


def _settled(reply: Any) -> Pending:
    return Pending.of(reply.settled() if isinstance(reply, FeedRead) else reply)


def _settled_small(reply: Any) -> Pending:
    """``_settled`` with a first slice of ``FIRST_SLICE``: a range read that is longer goes
    on in the connection's writer, which waits its turn among the node's sliced reads
    (raftkv.server.client_port ``SLICED_AT_ONCE``); 300 connections asking at once
    stepped 300 full slices in one pass of the loop, in their command handlers."""
    if isinstance(reply, FeedRead):
        return Pending.of(reply.result if reply.step(FIRST_SLICE) else reply)
    return Pending.of(reply)


def cmd_xrange(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if node.removed:
        return Pending.of(REMOVED)
    return _settled_small(_reader(node, conn).xrange(args, reverse=False))


def cmd_xrevrange(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if node.removed:
        return Pending.of(REMOVED)
    return _settled_small(_reader(node, conn).xrange(args, reverse=True))


def cmd_xinfo(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return Pending.of(REMOVED) if node.removed else _settled(_reader(node, conn).xinfo(args))


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
