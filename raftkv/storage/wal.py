"""WAL segment files: naming, header, creation, appending, and the recovery scan.

A segment is ``wal-<sequence, 16 digits>.log``: a 20-byte header (magic, format version,
sequence number) followed by records (see ``records``). Sequence numbers are consecutive;
only a prefix of old segments is ever deleted, so a gap means a lost file.

A segment is created complete with its header and a preamble (the durable hard state, so
the newest segment always holds a hard state even after older ones are deleted) by
``files.atomic_write``: a segment file never exists without a valid header. Records are
then only ever appended, one ``write`` + ``fsync`` per group.
"""

from __future__ import annotations

import os
import re
import struct
import zlib

import attrs

from raftkv.storage import records
from raftkv.storage.errors import CorruptionError, UnsupportedFormat
from raftkv.storage.files import atomic_write, write_all
from raftkv.storage.fsync import FsyncPolicy, fsync_fd

MAGIC = b"RAFTKVWL"
VERSION = 1
HEADER = struct.Struct("<8sIQ")  # magic, format version, sequence number

_NAME = re.compile(r"^wal-(\d{16})\.log$")


def segment_name(seq: int) -> str:
    return f"wal-{seq:016d}.log"


def parse_segment_name(name: str) -> int | None:
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


def segment_header(seq: int) -> bytes:
    return HEADER.pack(MAGIC, VERSION, seq)


@attrs.define
class Segment:
    """An open segment: its file, its size and the highest entry index written into it."""

    seq: int
    path: str
    max_index: int  # 0 when it holds no entries
    size: int
    fd: int = -1  # open for appending only while it is the active segment

    def append(self, data: bytes | bytearray, policy: FsyncPolicy) -> None:
        """One group: a single write then one fsync (group commit)."""
        write_all(self.fd, data)
        self.size += len(data)
        fsync_fd(self.fd, policy)

    def open_for_append(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def create_segment(directory: str, seq: int, preamble: bytes, policy: FsyncPolicy) -> Segment:
    """Atomically create a segment holding its header and ``preamble``, open for appending."""
    data = segment_header(seq) + preamble
    path = atomic_write(directory, segment_name(seq), data, policy)
    seg = Segment(seq=seq, path=path, max_index=0, size=len(data))
    seg.open_for_append()
    return seg


@attrs.frozen
class ScanResult:
    records: list[tuple[int, records.Record]]  # (byte offset, record)
    good_end: int  # offset just past the last good record
    size: int  # file size as found
    tail_problem: str | None  # why the bytes from good_end on were judged a torn tail


def scan_segment(path: str, seq: int, is_last: bool) -> ScanResult:
    """Read and check every record of a segment.

    A bad record (short, checksum mismatch, zeroed) counts as a torn tail (crash mid-write)
    only if it is the final record of the last segment: it claims to extend to or past the
    end of the file, or only zero bytes follow it (the file was extended but the data never
    reached the disk). Anything else raises ``CorruptionError`` with the record's offset;
    nothing is ever skipped. (A crash that persisted a group's pages out of order, leaving
    a hole before good data, is therefore reported as corruption rather than guessed at.)
    """
    with open(path, "rb") as f:
        data = f.read()
    view = memoryview(data)
    n = len(data)
    if n < HEADER.size:
        raise CorruptionError(path, 0, f"segment header is {n} bytes, expected {HEADER.size}")
    magic, version, hseq = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptionError(path, 0, f"bad segment magic {magic!r}")
    if version != VERSION:
        raise UnsupportedFormat(
            f"{path}: WAL format version {version}; this build reads version {VERSION}"
        )
    if hseq != seq:
        raise CorruptionError(path, 12, f"header names segment {hseq}, file name says {seq}")
    out: list[tuple[int, records.Record]] = []
    pos = HEADER.size
    frame_size = records.FRAME.size
    while pos < n:
        end = n
        if n - pos < frame_size:
            problem = "short record header"
        else:
            length, crc = records.FRAME.unpack_from(data, pos)
            end = pos + frame_size + length
            if end > n:
                problem = f"record of {length} bytes extends past the end of the file"
            elif zlib.crc32(view[pos + frame_size : end]) != crc:
                problem = "checksum mismatch"
            elif length == 0:
                problem = "empty record"
            else:
                try:
                    out.append((pos, records.decode(view[pos + frame_size : end])))
                except ValueError as e:
                    # The checksum matched: not a torn write but a bug or foreign data.
                    raise CorruptionError(path, pos, str(e)) from None
                pos = end
                continue
        if is_last and (end >= n or data.count(0, end) == n - end):
            return ScanResult(out, pos, n, problem)
        raise CorruptionError(path, pos, problem)
    return ScanResult(out, pos, n, None)
