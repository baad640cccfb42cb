"""WAL segment files: naming, header, creation, appending, and the recovery scan.

A segment is ``wal-<sequence, 16 digits>.log``: a 20-byte header (magic, format version,
sequence number) followed by records (see ``records``). Sequence numbers are consecutive;
only a prefix of old segments is ever deleted, so a gap means a lost file.

A segment is created complete with its header and a preamble (the durable hard state, so
the newest segment always holds a hard state even after older ones are deleted) in a temp
file renamed into place: a segment file never exists without a valid header.

Records are written with ``pwrite`` at the segment's logical end into file space allocated
ahead (``posix_fallocate``, in steps of ``PREALLOC_MIN`` .. ``PREALLOC_MAX``), and a group
is made durable with ``fdatasync``: the file's size does not change, so there is no inode
size update to commit, only the data (and, on ext4, the conversion of the preallocated
extents, which fdatasync covers as metadata needed to read the data back). Measured on the
dev machine: 130 against 210 us of wall and 45 against 77 us of CPU per 100-byte group
(/work/fsbench/fs.py; issue 15). A group that extends the allocation (or the file) is
made durable with a full ``fsync``. The worst case of space a node holds ahead of its log
is ``PREALLOC_MAX`` (and never past ``segment_size`` in a segment below it); the spare
segment file holds none.

So the last segment ends in zeros past its last record: the scan takes an all-zero tail
of the *last* segment as its end. A segment is cut to its logical size durably before the
next one is created (``Segment.seal``), so any other segment still ends exactly at its
last record, and zeros there are corruption as before.
"""

from __future__ import annotations

import os
import re
import struct
import zlib

import attrs

from raftkv.storage import records
from raftkv.storage.data_files import read_bounded
from raftkv.storage.errors import CorruptionError, UnsupportedFormat
from raftkv.storage.files import TMP_SUFFIX, Spare, pwrite_all, truncate_durably
from raftkv.storage.fsync import FsyncPolicy, fdatasync_fd, fsync_dir, fsync_fd

MAGIC = b"RAFTKVWL"
VERSION = 1
HEADER = struct.Struct("<8sIQ")  # magic, format version, sequence number
# Unit of a torn write: a sector is written whole or not at all (etcd's minSectorSize).
SECTOR = 512

# The most bytes one segment file may hold to be read at all. Segments roll at 64 MiB
# (``segment_size``); one group of entries, or a roll postponed for want of descriptors,
# can take one past that, but not by gigabytes: a bigger file is not one this node wrote,
# and reading it whole (as recovery does) would take the memory first (attack2).
MAX_SEGMENT_FILE = 1024 * 1024 * 1024

# File space allocated ahead of a segment's logical end, as much as the segment already
# holds, within these bounds: a few extensions (each one a full fsync) per segment, and at
# most 4 MiB per node idle on the disk (the suite keeps ~1,500 data dirs until it ends).
PREALLOC_MIN = 64 * 1024
PREALLOC_MAX = 4 * 1024 * 1024

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
    """An open segment: its file, its logical size (the end of its last record), the size
    of the file (``alloc``: the logical size plus zeros allocated ahead) and the highest
    entry index written into it."""

    seq: int
    path: str
    max_index: int  # 0 when it holds no entries
    size: int
    fd: int = -1  # open for writing only while it is the active segment
    alloc: int = -1  # the file's size; -1: the same as ``size``

    def __attrs_post_init__(self) -> None:
        if self.alloc < self.size:
            self.alloc = self.size

    def append(self, data: bytes | bytearray, policy: FsyncPolicy, limit: int) -> None:
        """One group: one ``pwrite`` at the logical end, then one ``fdatasync`` (group
        commit), or an ``fsync`` if the group extends the file (``limit``: the segment
        size; space is allocated ahead only up to it)."""
        if self.write(data, limit):
            fdatasync_fd(self.fd, policy)
        else:
            fsync_fd(self.fd, policy)

    def write(self, data: bytes | bytearray, limit: int) -> bool:
        """``append`` without its sync: write the group; True if an ``fdatasync`` makes it
        durable, False if it needs an ``fsync`` (it changed the file's size). The caller
        syncs ``fd`` before anything relies on the group."""
        end = self.size + len(data)
        extends = end > self.alloc
        if extends:
            self._allocate(end, limit)
        pwrite_all(self.fd, data, self.size)
        self.size = end
        if extends:
            # The file's size changed: fsync commits it with the data. (fdatasync would
            # too, as metadata needed to read the data, but this keeps the rule plain.)
            self.alloc = max(self.alloc, end)
            return False
        return True

    def _allocate(self, end: int, limit: int) -> None:
        """Extend the file to hold ``end`` bytes plus room ahead (see PREALLOC_MIN). Best
        effort: where the file system cannot (or the disk has no room for the extra), the
        group's ``pwrite`` extends the file itself, so preallocation never makes a disk
        full sooner."""
        ahead = min(max(end, PREALLOC_MIN), PREALLOC_MAX)
        target = max(end, min(end + ahead, limit))
        try:
            os.posix_fallocate(self.fd, self.alloc, target - self.alloc)
        except OSError:
            self.alloc = os.fstat(self.fd).st_size  # it may have extended part of the way
            return
        self.alloc = target

    def seal(self, policy: FsyncPolicy) -> None:
        """Cut the file to its logical size, durably: called before the next segment is
        created, so only the last segment ever has a zero tail (and the space goes back)."""
        if self.alloc > self.size:
            if self.fd >= 0:
                os.ftruncate(self.fd, self.size)
                fsync_fd(self.fd, policy)
            else:  # recovery finishing an install: the last segment was never opened
                truncate_durably(self.path, self.size, policy)
            self.alloc = self.size

    def open_for_append(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def create_segment(directory: str, seq: int, preamble: bytes, policy: FsyncPolicy,
                   spare: Spare | None = None) -> Segment:
    """Atomically create a segment holding its header and ``preamble``, open for appending
    on the descriptor it was written with (temp file, write, fsync, rename, directory
    fsync: as ``files.atomic_write``). ``spare``: a held-open temp file to use instead
    of opening a new one. No space is allocated ahead yet: the first group does that."""
    data = segment_header(seq) + preamble
    path = os.path.join(directory, segment_name(seq))
    if spare is not None:
        tmp, fd = spare.path, spare.fd
        spare.fd = -1  # ours now
    else:
        tmp = path + TMP_SUFFIX
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, 0)
        pwrite_all(fd, data, 0)
        fsync_fd(fd, policy)
        os.replace(tmp, path)
        fsync_dir(directory, policy)
    except BaseException:
        os.close(fd)
        raise
    return Segment(seq=seq, path=path, max_index=0, size=len(data), fd=fd)


@attrs.frozen
class ScanResult:
    records: list[tuple[int, records.Record]]  # (byte offset, record)
    good_end: int  # offset just past the last good record
    size: int  # file size as found
    # Why the bytes from good_end on were judged a torn tail; None if there are none, or
    # if they are all zeros (space allocated ahead: a segment's normal end, kept as is).
    tail_problem: str | None
    # With a tail_problem: the offset just past the tail's last non-zero byte, so that what
    # a repair drops is told apart from the zeros allocated after it (attack17).
    written_end: int = 0


def scan_segment(path: str, seq: int, is_last: bool) -> ScanResult:
    """Read and check every record of a segment.

    The last segment may end in zeros after its last record (space allocated ahead, see
    the module docstring; etcd's "preallocated space"): that is its end, not a problem, and
    ``good_end`` < ``size`` with no ``tail_problem``. Unlike etcd, which stops at the first
    zero length whatever follows, nothing but zeros may follow: a non-zero byte anywhere in
    that space is damage, reported as below, never skipped.

    A bad record counts as a torn tail (a crash mid-write) only if it is the final record of
    the last segment, nothing but zero bytes follow it, and it is *torn* as etcd decides
    (``is_torn``): the file ends inside it, or part of it was never written and reads back
    as zeros. A complete record whose bytes are merely wrong (a bit flip: it may be an
    acknowledged entry or a vote) raises ``CorruptionError`` naming the file and offset, as
    does any bad record that is not the final one; nothing is ever skipped. (A crash that
    persisted a group's pages out of order, leaving a hole before good data, is therefore
    reported as corruption rather than guessed at.)
    """
    return scan_data(read_bounded(path, MAX_SEGMENT_FILE), path, seq, is_last)


def scan_data(data: bytes, path: str, seq: int, is_last: bool) -> ScanResult:
    """``scan_segment`` of a segment's bytes, already read (pure: the fuzz campaign feeds
    it directly). Raises ``CorruptionError`` or ``UnsupportedFormat``, nothing else."""
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
        if is_last and data.count(0, pos) == n - pos:
            return ScanResult(out, pos, n, None)  # space allocated ahead, never written
        final = end >= n or data.count(0, end) == n - end
        if is_last and final:
            verdict = is_torn(view, pos, end)
            if verdict is None:
                written = len(data[pos:].rstrip(b"\0"))  # (a torn record: one group's size)
                return ScanResult(out, pos, n, problem, pos + written)
            problem = f"{problem} in a complete final record ({verdict}): not a torn write"
        raise CorruptionError(path, pos, problem)
    return ScanResult(out, pos, n, None)


def is_torn(data: memoryview, pos: int, end: int) -> str | None:
    """Whether the bad final record at ``pos`` (claiming to end at ``end``) is a torn write.

    None if it is: a write cut short leaves the file ending inside the record (short header
    or payload), and a write whose size reached the disk but not all its data leaves whole
    sectors of zeros (as etcd's ``isTornEntry``: the record is split at ``SECTOR`` boundaries
    of the file and any all-zero piece means torn; a record wholly of zeros is the file
    extended by a write none of whose data arrived). Otherwise a reason why it is not: the
    record is complete, so its bad checksum is damage to written data, possibly a bit flip
    in an acknowledged entry or a vote, and must not be silently dropped.

    A record that looks longer than it is because a bit flip *raised* its length field is
    recognised too: if the length with any one bit flipped makes a record that fits in the
    file and matches its checksum, the record was complete. That check runs whether the
    claimed end is past the file's end or inside it: in the last segment, space allocated
    ahead follows the last record, and a raised length would otherwise reach into those
    zeros and read as torn.
    """
    n = len(data)
    frame_size = records.FRAME.size
    if n - pos < frame_size:
        return None  # the file ends inside the frame header: short
    length, crc = records.FRAME.unpack_from(data, pos)
    for bit in range(32):
        alt = length ^ (1 << bit)
        stop = pos + frame_size + alt
        if 0 < alt < length and stop <= n and zlib.crc32(data[pos + frame_size : stop]) == crc:
            return f"its length field has a flipped bit: {alt} fits and checks"
    if end > n:
        return None  # the file ends inside the payload: short
    start = pos
    while start < end:
        stop = min(end, (start // SECTOR + 1) * SECTOR)
        if data[start:stop].tobytes().count(0) == stop - start:
            return None  # a sector of it was never written
        start = stop
    return "no part of it reads as unwritten zeros"
