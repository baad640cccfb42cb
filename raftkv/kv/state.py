"""The state machine's whole state as plain data, and its snapshot encoding.

A snapshot holds everything replicas must agree on: the values, each key's expiry deadline,
each key's modification index (what WATCH compares), the time ("now", the highest stamp
applied), the entry counter the modification indexes come from, the loaded scripts, and
the WATCH versions of missing keys: the entry that deleted each recently deleted key, and
``gone``, the entry that last forgot them all; and the client sessions (sessions.py).
It also carries the change feed's retained tail (feed.py): history, not state, but a node
restarted from the snapshot or a follower installing it must hold the same tail.

Version 7 is version 6 plus the members' feature levels: ``[..., [id, ...], [[id, level],
...]]``, ids ascending (raftkv.kv.features); written only when there are some, which the
leader records only once every member is at level 1 (and reads version 7).
Version 6 is version 5 plus the published members: ``[..., eval_order, [id, ...]]``, ids
ascending (voters that served, raftkv.node.publish); written only when there are some, so
other states stay readable by earlier releases; earlier versions decode with none.
Version 5 is version 4 plus the EVAL-cached scripts' shas, least recently used first
(script_cache.py; ``scripts`` holds every body, and those not listed are SCRIPT LOADed), and
its feed may be nil (a state copied without its feed); it is written only when EVAL has
cached a script, so other states stay readable by earlier releases (which read every
script as loaded). Version 4 is version 3 plus the feed: ``[..., [session, ...], [floor_index | nil,
floor_position | nil, [[index, position, op, key, value | nil, deadline | nil], ...]]]``
(ids strictly increasing, all above the floor); a state copied without its feed is
written as version 3 or 2, readable by earlier releases. Version 3 is
``[3, {key: value}, {key: deadline_ms}, {key: mod_index}, now, seq, gone,
{sha: body}, {deleted key: index}, [session, ...]]`` (sessions.py); version 2 is the same
without the sessions; version 1 (``[1, {key: value}]``, from earlier
releases) still restores, with no expiry and every index 0. Maps are written with keys
sorted, so equal states give identical bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Protocol

import attrs
import msgpack

from .changes import Change
from .errors import KVDecodeError
from .feed import FeedState
from .script_cache import script_sha
from .sessions import Session, sessions_from_wire, sessions_to_wire

SNAPSHOT_VERSION = 7
_PUBLISHED_VERSION = 6
MAX_LEVEL = 2**16  # feature levels are 0 .. MAX_LEVEL - 1 (commands.MAX_LEVEL)
_EVAL_VERSION = 5
MAX_PUBLISHED = 4096  # as the state machine's bound
_FEED_VERSION = 4
_SESSIONS_VERSION = 3
MAX_OP_LEN = 64  # an op is a command name
_INT64_MAX = 2**63 - 1


@attrs.define
class KVState:
    """Plain copies of the state machine's fields (see the module docstring)."""

    data: dict[bytes, bytes] = attrs.Factory(dict)
    expires: dict[bytes, int] = attrs.Factory(dict)
    mods: dict[bytes, int] = attrs.Factory(dict)
    now: int = 0
    seq: int = 0
    gone: int = 0
    scripts: dict[bytes, bytes] = attrs.Factory(dict)
    tombs: dict[bytes, int] = attrs.Factory(dict)
    sessions: dict[int, Session] = attrs.Factory(dict)
    feed: FeedState | None = None  # None: the snapshot carried no feed (feed.py)
    eval_order: list[bytes] = attrs.Factory(list)  # EVAL-cached shas, LRU first
    published: set[int] = attrs.Factory(set)  # voters that served (raftkv.node.publish)
    levels: dict[int, int] = attrs.Factory(dict)  # members' feature levels (features.py)


class _Pairs(list):
    """A msgpack map decoded as its list of (key, value) pairs, to validate it in order."""


def encode_snapshot(state: KVState | dict[bytes, bytes]) -> bytes:
    """The snapshot bytes of ``state`` (a bare dict is a state with values only).

    Packed one item at a time rather than in one ``packb`` call: the runtime runs this in a
    worker thread, and many short calls let the GIL go back to the event loop in between.
    The items go into the packer's own growing buffer (``autoreset=False``), not into a
    list of one small ``bytes`` per key and value joined at the end: that list held four
    small objects per key (59 MB at the peak for 100k keys, against 14 MB now), and the
    allocator keeps the arenas they fragmented, so every node's RSS stepped up by ~25 MB at
    the first snapshots of a long overwrite run (tests/bench/bench_memory.py).
    """
    return b"".join(snapshot_pieces(state, 0))  # (one piece: joined without a copy)


def snapshot_pieces(state: KVState | dict[bytes, bytes], piece_bytes: int) -> Iterator[bytes]:
    """``encode_snapshot``'s bytes in pieces of about ``piece_bytes`` (0: one piece), for a
    writer that must not hold the whole encoding beside the state (``raftkv restore``)."""
    if isinstance(state, dict):
        state = KVState(data=state)
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    pack = packer.pack

    def full() -> bool:
        return bool(piece_bytes) and len(packer.getbuffer()) >= piece_bytes

    # Without sessions, version 2; without a feed, version 3 at most: a state that does not
    # use them stays readable by nodes of the previous releases.
    feed = state.feed
    version = (SNAPSHOT_VERSION if state.levels else _PUBLISHED_VERSION if state.published
               else _EVAL_VERSION if state.eval_order
               else _FEED_VERSION if feed else _SESSIONS_VERSION if state.sessions else 2)
    packer.pack_array_header(_LENGTHS[version])
    pack(version)
    for mapping in (state.data, state.expires, state.mods):
        keys = sorted(mapping)
        packer.pack_map_header(len(keys))
        if not piece_bytes:  # (the runtime's snapshots: no look at the size per key)
            for key in keys:
                pack(key)
                pack(mapping[key])
            continue
        for key in keys:
            pack(key)
            pack(mapping[key])
            if full():
                yield packer.bytes()
                packer.reset()
    pack(state.now)
    pack(state.seq)
    pack(state.gone)
    pack(dict(sorted(state.scripts.items())))
    pack(dict(sorted(state.tombs.items())))
    if version >= _SESSIONS_VERSION:
        pack(sessions_to_wire(state.sessions))
    if version >= _FEED_VERSION and feed is None:
        pack(None)
    elif feed is not None:
        floor = feed.floor or (None, None)
        packer.pack_array_header(3)
        pack(floor[0])
        pack(floor[1])
        packer.pack_array_header(len(feed.changes))
        for c in feed.changes:
            pack((c.index, c.position, c.op, c.key, c.value, c.deadline_ms))
            if full():
                yield packer.bytes()
                packer.reset()
    if version >= _EVAL_VERSION:
        pack(state.eval_order)
    if version >= _PUBLISHED_VERSION:
        pack(sorted(state.published))
    if version >= SNAPSHOT_VERSION:
        pack([[node_id, state.levels[node_id]] for node_id in sorted(state.levels)])
    yield packer.bytes()


_LENGTHS = {2: 9, _SESSIONS_VERSION: 10, _FEED_VERSION: 11, _EVAL_VERSION: 12,
            _PUBLISHED_VERSION: 13, SNAPSHOT_VERSION: 14}


def _check_int(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _INT64_MAX:
        raise KVDecodeError(f"snapshot {what} is not a non-negative int64")
    return value


class Readable(Protocol):
    """What ``decode_snapshot`` reads a snapshot from: a file, or a checked stream of one."""

    def read(self, n: int = -1, /) -> bytes: ...


class SizedReadable(Readable, Protocol):
    length: int  # the bytes ``read`` delivers in all


def decode_snapshot_stream(stream: SizedReadable) -> KVState:
    """``decode_snapshot`` of a stream that knows its length (``storage.decode_snapshot``'s
    checked file data, a received snapshot read back)."""
    return decode_snapshot(stream, stream.length)


def decode_snapshot(blob: bytes | Readable, length: int | None = None) -> KVState:
    """The state in a snapshot (versions 1 to 7), checked; ``KVDecodeError`` if invalid.

    ``blob``: the snapshot's bytes, or a stream of its ``length`` bytes (a snapshot file's
    data, read as it is decoded: the file's bytes and the decoded state are never in
    memory together; issue 12). An ``OSError`` of the stream's ``read`` passes through
    as it is: a file that cannot be read is not a snapshot that does not decode.

    A pure function of the data, so the runtime can run it in a worker thread: the
    validation loop lets the GIL go back to the event loop, a large map does not stall it.

    Read in a stream: the maps (values, deadlines, indexes, scripts, deletions) go straight
    into their dicts, checked pair by pair, read in 64 KiB pieces. Decoded as one value they
    came as lists of (key, value) tuples first, beside the dicts built from them. The
    unpacker's buffer holds at most the largest single item (a value) plus one piece.
    """
    if isinstance(blob, (bytes, bytearray, memoryview)):
        length = len(blob)
        source: Readable = io.BytesIO(blob)
    elif length is None:
        raise TypeError("decode_snapshot of a stream needs its length")
    else:
        source = blob
    u = msgpack.Unpacker(source, read_size=_READ_SIZE, raw=False,
                         object_pairs_hook=_Pairs, max_buffer_size=max(length, _READ_SIZE))
    try:
        state = _read_state(u)
        if u.tell() != length:
            raise KVDecodeError(f"snapshot is not valid msgpack ({length - u.tell()} "
                                "trailing bytes)")
    except (KVDecodeError, OSError):
        raise
    except Exception as exc:  # msgpack raises several types for the many ways bytes are bad
        raise KVDecodeError(f"snapshot is not valid msgpack ({exc!r})") from None
    return state


_READ_SIZE = 64 * 1024


def _read_state(u: msgpack.Unpacker) -> KVState:
    try:
        length = u.read_array_header()
    except ValueError:
        raise KVDecodeError("snapshot is not a [version, ...] array") from None
    if length == 0:
        raise KVDecodeError("snapshot is not a [version, ...] array")
    version = u.unpack()
    if type(version) is int and version == 1 and length == 2:
        return KVState(data=_read_map(u, bytes, "values"))
    if not (type(version) is int and _LENGTHS.get(version) == length):
        raise KVDecodeError(f"unsupported snapshot version {version!r}")
    data = _read_map(u, bytes, "values")
    expires = _read_map(u, int, "deadlines")
    mods = _read_map(u, int, "modification indexes")
    if not expires.keys() <= data.keys() or not mods.keys() <= data.keys():
        raise KVDecodeError("snapshot has deadlines or indexes of missing keys")
    now, seq, gone = (_check_int(u.unpack(), what) for what in ("now", "seq", "gone"))
    scripts = _read_map(u, bytes, "scripts")
    if not all(script_sha(body) == sha for sha, body in scripts.items()):
        # EVALSHA would run another body than the one its sha names (attack5).
        raise KVDecodeError("snapshot holds a script under another body's sha")
    tombs = _read_map(u, int, "deletions")
    sessions = sessions_from_wire(u.unpack()) if version >= _SESSIONS_VERSION else {}
    feed = _read_feed(u, nil_ok=version >= _EVAL_VERSION) if version >= _FEED_VERSION else None
    eval_order = _check_eval_order(u.unpack(), scripts) if version >= _EVAL_VERSION else []
    published = _check_published(u.unpack()) if version >= _PUBLISHED_VERSION else set()
    levels = _check_levels(u.unpack()) if version >= SNAPSHOT_VERSION else {}
    return KVState(data, expires, mods, now, seq, gone, scripts, tombs, sessions, feed,
                   eval_order, published, levels)


def _read_map(u: msgpack.Unpacker, value_type: type, what: str) -> dict:
    """The next map of ``u``: keys bytes, strictly increasing; values ``value_type``."""
    try:
        count = u.read_map_header()
    except ValueError:
        raise KVDecodeError(f"snapshot {what} is not a map") from None
    out: dict = {}
    previous = None
    unpack = u.unpack
    for _ in range(count):
        key = unpack()
        value = unpack()
        if type(key) is not bytes or type(value) is not value_type:
            raise KVDecodeError(f"snapshot {what} has a bad key or value")
        if value_type is int and not 0 <= value <= _INT64_MAX:
            raise KVDecodeError(f"snapshot {what} holds {value}, out of range")
        if previous is not None and key <= previous:
            raise KVDecodeError(f"snapshot {what} keys are not strictly increasing")
        previous = key
        out[key] = value
    return out


def _check_published(raw: Any) -> set[int]:
    """The published members of a version 6 snapshot: node ids, strictly ascending."""
    if type(raw) is not list or len(raw) > MAX_PUBLISHED:
        raise KVDecodeError("snapshot published members are not a list of node ids")
    previous = 0
    for node_id in raw:
        if type(node_id) is not int or not previous < node_id <= _INT64_MAX:
            raise KVDecodeError("snapshot published members are not ascending node ids")
        previous = node_id
    return set(raw)


def _check_levels(raw: Any) -> dict[int, int]:
    """The members' levels of a version 7 snapshot: [id, level] pairs, ids ascending."""
    if type(raw) is not list or len(raw) > MAX_PUBLISHED:
        raise KVDecodeError("snapshot member levels are not a list of [id, level]")
    previous = 0
    levels: dict[int, int] = {}
    for pair in raw:
        if (type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int
                or type(pair[1]) is not int or not previous < pair[0] <= _INT64_MAX
                or not 0 <= pair[1] < MAX_LEVEL):
            raise KVDecodeError("snapshot member levels are not ascending [id, level] pairs")
        previous = pair[0]
        levels[pair[0]] = pair[1]
    return levels


def _check_eval_order(raw: Any, scripts: dict[bytes, bytes]) -> list[bytes]:
    """The EVAL-cached shas of a version 5 snapshot: distinct keys of ``scripts``."""
    if type(raw) is not list or not all(type(sha) is bytes and sha in scripts for sha in raw):
        raise KVDecodeError("snapshot EVAL-cached scripts are not a list of its scripts' shas")
    if len(set(raw)) != len(raw):
        raise KVDecodeError("snapshot EVAL-cached scripts repeat a sha")
    return raw


_BAD_FEED = "snapshot feed is not [floor index, floor position, changes]"


def _read_feed(u: msgpack.Unpacker, nil_ok: bool) -> FeedState | None:
    """The feed of a version 4 or 5 snapshot (nil in 5: none), checked as hostile input.

    Read change by change: as one msgpack value the tail came as a list of 6-item lists
    beside the ``Change`` tuples built from it (100,000 retained changes: twice the
    feed's memory at the peak)."""
    try:
        length = u.read_array_header()
    except ValueError:  # not an array (the header is not consumed): nil, or bad
        if u.unpack() is None and nil_ok:
            return None
        raise KVDecodeError(_BAD_FEED) from None
    if length != 3:
        raise KVDecodeError(_BAD_FEED)
    raw_floor = (u.unpack(), u.unpack())
    floor: tuple[int, int] | None = None
    if raw_floor != (None, None):
        floor = (_check_int(raw_floor[0], "feed floor"), _check_int(raw_floor[1], "feed floor"))
    try:
        count = u.read_array_header()
    except ValueError:
        raise KVDecodeError(_BAD_FEED) from None
    previous = floor or (-1, -1)
    changes: list[Change] = []
    unpack = u.unpack
    for _ in range(count):
        change = _check_change(unpack(), previous)
        previous = change[:2]
        changes.append(change)
    return FeedState(floor, changes)


def _check_change(item: Any, previous: tuple[int, int]) -> Change:
    """One retained change, its id strictly above ``previous``."""
    if type(item) is not list or len(item) != 6:
        raise KVDecodeError("snapshot feed holds a change that is not a 6-item array")
    index, position, op, key, value, deadline = item
    change_id = (_check_int(index, "change index"), _check_int(position, "change position"))
    if change_id <= previous:
        raise KVDecodeError("snapshot feed ids are not strictly increasing above the floor")
    if type(op) is not str or not 0 < len(op) <= MAX_OP_LEN or not op.isascii():
        raise KVDecodeError("snapshot feed holds a bad op")
    if type(key) is not bytes or (value is not None and type(value) is not bytes):
        raise KVDecodeError("snapshot feed holds a bad key or value")
    if deadline is not None:
        _check_int(deadline, "change deadline")
    return Change(change_id[0], change_id[1], op, key, value, deadline)
