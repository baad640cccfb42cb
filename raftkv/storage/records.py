"""WAL records: framing ``[u32 length][u32 crc32][msgpack payload]`` and the payload kinds.

The checksum is ``zlib.crc32`` of the payload (no crc32c package is a dependency; zlib's is
in the standard library and fast). Integers are little-endian. Payloads are plain msgpack
arrays whose first element is the kind: compact, and decoding needs no wire registry.

Kinds:
- ENTRIES ``[1, first_index, [[term, kind, data], ...]]``: a batch of consecutive entries.
- HARD_STATE ``[2, term, vote, commit]``: the latest one wins.
- TRUNCATE ``[3, after]``: "log truncated after index ``after``": entries past it written
  before this record are void.
- RESET ``[4, index, term]``: "log reset to the snapshot at ``index``": every entry written
  before this record is void; the log continues at ``index + 1``.
"""

from __future__ import annotations

import struct
import zlib

import attrs
import msgpack

from wire.raft import (
    CONFIG,
    MAX_INDEX,
    MAX_NODE_ID,
    MAX_TERM,
    NOOP,
    NORMAL,
    Entry,
    HardState,
)

FRAME = struct.Struct("<II")  # payload length, crc32 of the payload

ENTRIES = 1
HARD_STATE = 2
TRUNCATE = 3
RESET = 4

_packb = msgpack.Packer(use_bin_type=True).pack


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def entries_record(entries: list[Entry]) -> bytes:
    return frame(_packb([ENTRIES, entries[0].index, [[e.term, e.kind, e.data] for e in entries]]))


def hard_state_record(hs: HardState) -> bytes:
    return frame(_packb([HARD_STATE, hs.term, hs.vote, hs.commit]))


def truncate_record(after: int) -> bytes:
    return frame(_packb([TRUNCATE, after]))


def reset_record(index: int, term: int) -> bytes:
    return frame(_packb([RESET, index, term]))


@attrs.frozen
class EntriesRec:
    first: int
    items: list  # [[term, kind, data], ...] as decoded; Entry objects are built lazily


@attrs.frozen
class HardStateRec:
    hs: HardState


@attrs.frozen
class TruncateRec:
    after: int


@attrs.frozen
class ResetRec:
    index: int
    term: int


Record = EntriesRec | HardStateRec | TruncateRec | ResetRec


def _uint(x: object) -> bool:
    return type(x) is int and x >= 0


# A record's checksum proves it intact, not sane (attack5): terms and indexes past
# MAX_TERM/MAX_INDEX (2**62 - 1, as the peer port requires) leave a node whose next term
# does not encode, or one every peer refuses; a vote is a node id; kinds are the known ones.
_KINDS = (NORMAL, NOOP, CONFIG)
_HARD_STATE_MAX = (MAX_TERM, MAX_NODE_ID, MAX_INDEX)  # term, vote, commit


def _in_range(kind: int, args: list) -> bool:
    if kind == HARD_STATE and len(args) == 3:
        return all(a <= top for a, top in zip(args, _HARD_STATE_MAX, strict=True))
    return all(a <= MAX_INDEX for a in args)  # == MAX_TERM: one bound for both


def decode(payload: bytes | memoryview) -> Record:
    """Decode a checksummed payload; ``ValueError`` says what is wrong with it."""
    try:
        obj = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types
        raise ValueError(f"undecodable payload ({e})") from None
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int:
        raise ValueError("payload is not a [kind, ...] array")
    kind, args = obj[0], obj[1:]
    if kind != ENTRIES:
        if not all(_uint(a) for a in args):
            raise ValueError(f"record kind {kind}: fields must be unsigned integers")
        if not _in_range(kind, args):
            raise ValueError(f"record kind {kind}: a field is out of range")
    if kind == ENTRIES:
        if len(args) != 2 or not _uint(args[0]) or args[0] < 1 or not isinstance(args[1], list):
            raise ValueError("malformed entries record")
        try:
            for term, kind, data in args[1]:
                if type(term) is not int or type(kind) is not int or type(data) is not bytes:
                    raise ValueError
                if not 0 <= term <= MAX_TERM or kind not in _KINDS:
                    raise ValueError
        except (ValueError, TypeError):
            raise ValueError("malformed entry in entries record") from None
        if not args[1]:
            raise ValueError("empty entries record")
        if args[0] + len(args[1]) - 1 > MAX_INDEX:
            raise ValueError("entries record past MAX_INDEX")
        return EntriesRec(args[0], args[1])
    if kind == HARD_STATE and len(args) == 3:
        return HardStateRec(HardState(*args))
    if kind == TRUNCATE and len(args) == 1:
        return TruncateRec(args[0])
    if kind == RESET and len(args) == 2:
        return ResetRec(*args)
    raise ValueError(f"unknown record kind {kind} with {len(args)} fields")
