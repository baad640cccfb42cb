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
from wire.record import bin_header

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


# Entries whose data is at least this large are copied into a group once, by reference,
# not through msgpack (``append_entries_record``).
BIG_DATA = 64 * 1024
_NO_FRAME = bytes(FRAME.size)
_record_packer = msgpack.Packer(use_bin_type=True)  # used only from the sync thread
_pack = _record_packer.pack
_pack_array_header = _record_packer.pack_array_header


def append_entries_record(out: bytearray, entries: list[Entry]) -> None:
    """Append to ``out`` the very bytes of ``entries_record(entries)``, copying each large
    entry's data once (into ``out``) where ``entries_record`` copies it four times
    (msgpack's buffer, its bytes, the frame, the group's join), all holding the GIL.

    Why (issue 12, big values under CPU starvation): the node's sync thread encodes a
    group while the event loop waits for the GIL; an 8 MiB entry's four copies, on a
    2-core machine shared with busy processes, held the loop long enough to delay
    heartbeats. The CRC is computed by zlib over the finished payload, without the GIL."""
    start = len(out)
    out += _NO_FRAME
    out += _pack_array_header(3)
    out += _pack(ENTRIES)
    out += _pack(entries[0].index)
    out += _pack_array_header(len(entries))
    run: list[list] = []
    for e in entries:
        if len(e.data) < BIG_DATA:
            run.append([e.term, e.kind, e.data])
            continue
        if run:
            _append_run(out, run)
            run = []
        out += _pack_array_header(3)
        out += _pack(e.term)
        out += _pack(e.kind)
        out += bin_header(len(e.data))
        out += e.data
    if run:
        _append_run(out, run)
    with memoryview(out) as view:
        crc = zlib.crc32(view[start + FRAME.size :])
    FRAME.pack_into(out, start, len(out) - start - FRAME.size, crc)


def _append_run(out: bytearray, run: list[list]) -> None:
    """Small entries packed as one list, appended without the list's own header."""
    packed = _pack(run)
    with memoryview(packed) as view:
        out += view[len(_pack_array_header(len(run))) :]


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


# The fewest bytes one entry ``[term, kind, data]`` takes: a fixarray header, a fixint term,
# a fixint kind and an empty bin8. An entries record claiming more entries than its bytes
# could hold is refused from its header, before anything is built.
MIN_ENTRY_BYTES = 5


def decode(payload: bytes | memoryview) -> Record:
    """Decode a checksummed payload; ``ValueError`` says what is wrong with it.

    Decoded in a stream against the record's schema, never as one generic msgpack value: a
    checksum proves a record intact, not sane, and a generic decode of a 32 MiB record of
    32M empty arrays builds 32M lists (~64 bytes of memory per input byte, attack round 5)
    before any check can refuse it. Here every container header is checked against the
    schema (and against the bytes left) before the next element is read, and the scalar
    fields may not be containers at all (``max_array_len=0``), so a malformed record is
    refused at its first wrong element; what is built is only the entries that are valid,
    at most one ``[term, kind, data]`` per ``MIN_ENTRY_BYTES`` of input: the memory the
    in-memory log needs for them anyway.
    """
    n = len(payload)
    u = msgpack.Unpacker(
        raw=False, use_list=True, strict_map_key=True, max_buffer_size=max(n, 1),
        max_array_len=0, max_map_len=0, max_str_len=0, max_ext_len=0, max_bin_len=n,
    )
    u.feed(payload)
    try:
        rec = _decode_stream(u, n)
        if u.tell() != n:
            raise ValueError(f"{n - u.tell()} trailing bytes after the record")
    except msgpack.OutOfData:
        raise ValueError("payload ends inside the record") from None
    except ValueError:
        raise
    except Exception as e:  # msgpack raises several unrelated types
        raise ValueError(f"undecodable payload ({e})") from None
    return rec


def _array(u: msgpack.Unpacker, what: str) -> int:
    try:
        return u.read_array_header()
    except msgpack.OutOfData:
        raise
    except Exception:
        raise ValueError(f"{what} is not an array") from None


def _scalar(u: msgpack.Unpacker, what: str) -> object:
    try:
        return u.unpack()
    except msgpack.OutOfData:
        raise
    except Exception as e:
        raise ValueError(f"{what}: {e}") from None


def _decode_stream(u: msgpack.Unpacker, n: int) -> Record:
    size = _array(u, "payload")
    if size == 0:
        raise ValueError("payload is not a [kind, ...] array")
    kind = _scalar(u, "record kind")
    if type(kind) is not int:
        raise ValueError("payload is not a [kind, ...] array")
    if kind == ENTRIES:
        return _decode_entries(u, n, size - 1)
    if size - 1 > 3:
        raise ValueError(f"unknown record kind {kind} with {size - 1} fields")
    args = [_scalar(u, f"record kind {kind}") for _ in range(size - 1)]
    if not all(_uint(a) for a in args):
        raise ValueError(f"record kind {kind}: fields must be unsigned integers")
    if not _in_range(kind, args):
        raise ValueError(f"record kind {kind}: a field is out of range")
    if kind == HARD_STATE and len(args) == 3:
        return HardStateRec(HardState(*args))
    if kind == TRUNCATE and len(args) == 1:
        return TruncateRec(args[0])
    if kind == RESET and len(args) == 2:
        return ResetRec(*args)
    raise ValueError(f"unknown record kind {kind} with {len(args)} fields")


def _decode_entries(u: msgpack.Unpacker, n: int, fields: int) -> EntriesRec:
    if fields != 2:
        raise ValueError("malformed entries record")
    first = _scalar(u, "entries record")
    if not _uint(first) or first < 1:
        raise ValueError("malformed entries record")
    count = _array(u, "entries record")
    if count == 0:
        raise ValueError("empty entries record")
    if count > (n - u.tell()) // MIN_ENTRY_BYTES:
        raise ValueError(f"entries record claims {count} entries in {n - u.tell()} bytes")
    if first + count - 1 > MAX_INDEX:
        raise ValueError("entries record past MAX_INDEX")
    items = []
    append = items.append
    unpack = u.unpack
    for _ in range(count):
        try:
            if u.read_array_header() != 3:
                raise ValueError
            term, kind, data = unpack(), unpack(), unpack()
        except msgpack.OutOfData:
            raise
        except Exception:
            raise ValueError("malformed entry in entries record") from None
        if type(term) is not int or type(kind) is not int or type(data) is not bytes:
            raise ValueError("malformed entry in entries record")
        if not 0 <= term <= MAX_TERM or kind not in _KINDS:
            raise ValueError("malformed entry in entries record")
        append([term, kind, data])
    return EntriesRec(first, items)
