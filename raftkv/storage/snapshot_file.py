"""Snapshot files: ``snapshot-<index>-<term>.snap``, written atomically, checked on read.

Layout: a 24-byte header (magic, format version, meta length, data length), the meta
(msgpack ``[index, term, [[id, peer_addr, learner, promote], ...]]``; members of
three fields, written before ``promote`` existed, still read), the state-machine data, then
a u32 ``zlib.crc32`` of everything before it. The data is streamed in chunks both ways, so
neither writing a received snapshot nor checking one needs it all in memory.

A snapshot becomes visible only by ``os.replace`` of a fully written and fsynced temp file,
followed by a directory fsync: a crash leaves either the old set of snapshots or the new.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import msgpack

from raftkv.storage.errors import CorruptionError, SnapshotNotWritten, UnsupportedFormat
from raftkv.storage.files import TMP_SUFFIX, Spare, pwrite_all
from raftkv.storage.fsync import FsyncPolicy, fsync_dir, fsync_fd
from wire.raft import MAX_INDEX, MAX_NODE_ID, MAX_TERM, ClusterConfig, Member, SnapshotMeta

MAGIC = b"RAFTKVSN"
VERSION = 1
HEADER = struct.Struct("<8sIIQ")  # magic, version, meta length, data length
CRC = struct.Struct("<I")
CHUNK = 1 << 20
# The most meta bytes a snapshot may claim. ``encode_meta`` writes a few dozen bytes a
# member; a header claiming more was not written by a node, and the meta is read whole
# before its checksum can be checked (a 4 GiB claim over a sparse file was a MemoryError).
MAX_META_BYTES = 1 << 20

_NAME = re.compile(r"^snapshot-(\d{20})-(\d{20})\.snap$")


def snapshot_name(index: int, term: int) -> str:
    return f"snapshot-{index:020d}-{term:020d}.snap"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    m = _NAME.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def encode_meta(meta: SnapshotMeta) -> bytes:
    members = [[m.id, m.peer_addr, m.learner, m.promote] for m in meta.config.members]
    return msgpack.packb([meta.index, meta.term, members], use_bin_type=True)


def decode_meta(raw: bytes) -> SnapshotMeta:
    """The meta ``encode_meta`` wrote; ``ValueError`` (or another decode error) if it is not
    one a node could run with: index and term at most MAX_INDEX / MAX_TERM (so term + 1
    still encodes; the peers refuse anything above as malformed), member ids distinct and
    in 1..MAX_NODE_ID, as ``raftkv.raft.validation`` requires of a leader's snapshot."""
    obj = msgpack.unpackb(raw, raw=False)
    index, term, members = obj
    config = ClusterConfig(tuple(
        Member(int(i), str(a), bool(ln), bool(rest[0]) if rest else False)
        for i, a, ln, *rest in members
    ))
    if type(index) is not int or type(term) is not int:
        raise ValueError("index and term must be integers")
    if not (0 <= index <= MAX_INDEX and 0 <= term <= MAX_TERM):
        raise ValueError(f"index {index} or term {term} out of range")
    ids = [m.id for m in config.members]
    if len(set(ids)) != len(ids) or not all(1 <= i <= MAX_NODE_ID for i in ids):
        raise ValueError(f"bad member ids {ids}")
    return SnapshotMeta(index=index, term=term, config=config)


class SnapshotFileWriter:
    """Streams one snapshot into a temp file; ``finish`` makes it visible atomically.

    Any failure before the rename (no space, no descriptor, an I/O error on the temp file)
    raises ``SnapshotNotWritten`` after removing the temp file: nothing visible changed, so
    the storage need not stop. ``spare``: a held-open temp file to write into instead of
    opening a new one (see ``files.Spare``)."""

    def __init__(self, directory: str, meta: SnapshotMeta, policy: FsyncPolicy,
                 spare: Spare | None = None) -> None:
        self.directory = directory
        self.meta = meta
        self.policy = policy
        self.path = os.path.join(directory, snapshot_name(meta.index, meta.term))
        self._meta_raw = encode_meta(meta)
        self._data_start = HEADER.size + len(self._meta_raw)
        self._received = 0
        self._fd = -1
        # ``abort`` may run in one worker thread while ``read_at`` streams the received
        # data to a decoder in another: closing under the lock means a read never reaches
        # a descriptor number that was closed and given to another file meanwhile.
        self._lock = threading.Lock()
        with self._unwritten("creating"):
            if spare is not None:
                self.tmp, self._fd = spare.path, spare.fd
                spare.fd = -1  # ours now
                os.ftruncate(self._fd, 0)
            else:
                self.tmp = self.path + TMP_SUFFIX
                self._fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            pwrite_all(self._fd, self._header(0) + self._meta_raw, 0)

    @contextlib.contextmanager
    def _unwritten(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            with contextlib.suppress(OSError):
                self.abort()
            raise SnapshotNotWritten(
                f"{what} snapshot {self.meta.index} in {self.directory} failed: {e}", e.errno
            ) from e

    def _header(self, data_len: int) -> bytes:
        return HEADER.pack(MAGIC, VERSION, len(self._meta_raw), data_len)

    @property
    def received(self) -> int:
        """Bytes of data received so far (the next offset a sender should use)."""
        return self._received

    def write(self, offset: int, chunk: bytes) -> None:
        """Write ``chunk`` at data ``offset``; a resent chunk may overlap, a hole may not."""
        if self._fd < 0:
            raise ValueError("snapshot writer is closed")
        if offset < 0 or offset > self._received:
            raise ValueError(f"chunk at offset {offset} leaves a hole (have {self._received})")
        with self._unwritten("writing"):
            pwrite_all(self._fd, chunk, self._data_start + offset)
        self._received = max(self._received, offset + len(chunk))

    def read(self, end: int) -> bytes:
        """The data received so far up to ``end`` (<= received), read back from the file:
        lets a receiver decode the whole snapshot before anything is replaced by it."""
        if self._fd < 0:
            raise ValueError("snapshot writer is closed")
        if end < 0 or end > self._received:
            raise ValueError(f"cannot read {end} bytes of a snapshot holding {self._received}")
        parts: list[bytes] = []
        pos = 0
        while pos < end:  # (an OSError leaves the receive as it is: the caller decides)
            block = os.pread(self._fd, min(CHUNK, end - pos), self._data_start + pos)
            if not block:
                raise OSError(f"{self.tmp}: short read of a received snapshot")
            parts.append(block)
            pos += len(block)
        return b"".join(parts)

    def read_at(self, pos: int, n: int) -> bytes:
        """Up to ``n`` received data bytes from ``pos`` (b"" at the end of what was received);
        ``OSError`` if the writer was aborted or finished meanwhile."""
        n = max(0, min(n, self._received - pos))
        with self._lock:
            if self._fd < 0:
                raise OSError(errno.EBADF, f"{self.tmp}: the received snapshot was dropped")
            return os.pread(self._fd, n, self._data_start + pos) if n else b""

    def finish(self) -> SnapshotFile:
        """Seal (data length, checksum), fsync, rename into place, fsync the directory.

        Returns the new snapshot read back and checked through the descriptor written
        with, which it keeps (no new descriptor is needed to read it later)."""
        if self._fd < 0:
            raise ValueError("snapshot writer is closed")
        fd = self._fd
        with self._unwritten("sealing"):
            pwrite_all(fd, self._header(self._received), 0)
            end = self._data_start + self._received
            os.ftruncate(fd, end)  # an overlapping resend can never have made it longer
            crc = 0
            pos = 0
            while pos < end:
                block = os.pread(fd, min(CHUNK, end - pos), pos)
                if not block:
                    raise OSError(f"{self.tmp}: short read while sealing the snapshot")
                crc = zlib.crc32(block, crc)
                pos += len(block)
            pwrite_all(fd, CRC.pack(crc), end)
            fsync_fd(fd, self.policy)
        with self._lock:
            self._fd = -1
        try:
            os.replace(self.tmp, self.path)  # the snapshot exists from here on ...
            fsync_dir(self.directory, self.policy)  # ... and its name is durable from here on
        except BaseException:
            os.close(fd)
            raise
        return SnapshotFile(self.path, fd)  # (it closes fd itself if the check fails)

    def abort(self) -> None:
        """Drop the temp file (idempotent; a no-op after ``finish``)."""
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


def write_snapshot(directory: str, meta: SnapshotMeta, data: bytes | Iterable[bytes],
                   policy: FsyncPolicy, spare: Spare | None = None) -> SnapshotFile:
    """``data``: the bytes, or their pieces in order (not joined: no copy of it all; an
    error raised by the iterator drops the temp file, nothing becomes visible)."""
    writer = SnapshotFileWriter(directory, meta, policy, spare)
    try:
        for piece in (data,) if isinstance(data, bytes) else data:
            writer.write(writer.received, piece)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


class _PreadFile:
    """File-like reads through a shared descriptor by ``pread`` (no seek position shared
    with other readers, no new descriptor)."""

    def __init__(self, fd: int, name: str, pos: int = 0) -> None:
        self.fd, self.name, self.pos = fd, name, pos

    def read(self, n: int) -> bytes:
        block = os.pread(self.fd, n, self.pos)
        self.pos += len(block)
        return block

    def tell(self) -> int:
        return self.pos


class SnapshotFile:
    """An existing snapshot file: meta and data location, checksum verified on open.

    It holds one descriptor on the file for its whole life, shared by every reader
    (``read_data``, ``SnapshotReader``) and counted: the last ``release`` closes it. So
    reading the snapshot never needs a new descriptor, and a reader keeps a replaced
    (unlinked) snapshot readable until it is done."""

    def __init__(self, path: str, fd: int | None = None) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY) if fd is None else fd
        self._refs = 1
        self._lock = threading.Lock()
        try:
            self._check()
        except BaseException:
            self.release()
            raise

    def _check(self) -> None:
        path = self.path
        f = _PreadFile(self.fd, path)
        head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise CorruptionError(path, 0, "short snapshot header")
        magic, version, meta_len, data_len = HEADER.unpack(head)
        if magic != MAGIC:
            raise CorruptionError(path, 0, f"bad snapshot magic {magic!r}")
        if version != VERSION:
            raise UnsupportedFormat(
                f"{path}: snapshot format version {version}; this build reads {VERSION}"
            )
        if meta_len > MAX_META_BYTES:
            raise CorruptionError(path, 12, f"meta of {meta_len} bytes claimed, more than "
                                            f"the {MAX_META_BYTES} a snapshot's meta may hold")
        size = os.fstat(self.fd).st_size
        expected = HEADER.size + meta_len + data_len + CRC.size
        if size != expected:
            raise CorruptionError(path, 0, f"file is {size} bytes, header implies {expected}")
        raw_meta = f.read(meta_len)
        self.data_offset = HEADER.size + meta_len
        self.data_len = data_len
        crc = zlib.crc32(raw_meta, zlib.crc32(head))
        crc = self._stream(f, data_len, crc, None)
        (stored,) = CRC.unpack(f.read(CRC.size))
        if crc != stored:
            raise CorruptionError(path, expected - CRC.size, "snapshot checksum mismatch")
        try:
            self.meta = decode_meta(raw_meta)
        except Exception as e:
            raise CorruptionError(path, HEADER.size, f"bad snapshot meta ({e})") from None

    def acquire(self) -> None:
        with self._lock:
            if self._refs <= 0:
                raise ValueError(f"{self.path}: snapshot file already closed")
            self._refs += 1

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            if self._refs == 0:
                os.close(self.fd)

    @staticmethod
    def _stream(f: _PreadFile, n: int, crc: int, sink: list[bytes] | None) -> int:
        while n > 0:
            block = f.read(min(CHUNK, n))
            if not block:
                raise CorruptionError(f.name, f.tell(), "snapshot file ended early")
            crc = zlib.crc32(block, crc)
            if sink is not None:
                sink.append(block)
            n -= len(block)
        return crc

    def read_data(self) -> bytes:
        """The data, re-checked against the checksum (the file may have rotted since open)."""
        parts: list[bytes] = []
        f = _PreadFile(self.fd, self.path)
        prefix = f.read(self.data_offset)
        crc = self._stream(f, self.data_len, zlib.crc32(prefix), parts)
        (stored,) = CRC.unpack(f.read(CRC.size))
        if crc != stored:
            raise CorruptionError(self.path, self.data_offset + self.data_len, "checksum mismatch")
        return b"".join(parts)


T = TypeVar("T")


class CheckedData:
    """A snapshot's data as a read-only stream, summed as it is read (``verify`` checks the
    sum): a decoder reads it piece by piece, so the file's bytes and the decoded state are
    never in memory together. It holds a counted reference on the snapshot's descriptor."""

    def __init__(self, snap: SnapshotFile) -> None:
        snap.acquire()
        self._snap: SnapshotFile | None = snap
        self.length = snap.data_len
        self._pos = 0
        try:
            prefix = os.pread(snap.fd, snap.data_offset, 0)  # header and meta: <= 1 MiB
        except BaseException:
            self.close()
            raise
        self._crc = zlib.crc32(prefix)

    def read(self, n: int = -1, /) -> bytes:
        snap = self._snap
        if snap is None:
            raise ValueError("snapshot data stream is closed")
        left = self.length - self._pos
        n = left if n < 0 else min(n, left)
        if n <= 0:
            return b""
        block = os.pread(snap.fd, min(n, CHUNK), snap.data_offset + self._pos)
        if not block:
            raise CorruptionError(snap.path, snap.data_offset + self._pos,
                                  "snapshot file ended early")
        self._crc = zlib.crc32(block, self._crc)
        self._pos += len(block)
        return block

    def verify(self) -> None:
        """Read what is left, then ``CorruptionError`` unless the stored checksum matches
        everything read (the file may have rotted since it was opened and checked)."""
        while self.read(CHUNK):
            pass
        snap = self._snap
        assert snap is not None
        end = snap.data_offset + self.length
        (stored,) = CRC.unpack(os.pread(snap.fd, CRC.size, end).ljust(CRC.size, b"\0"))
        if self._crc != stored:
            raise CorruptionError(snap.path, end, "checksum mismatch")

    def close(self) -> None:
        if self._snap is not None:
            self._snap.release()
            self._snap = None


def decode_checked(snap: SnapshotFile, decode: Callable[[CheckedData], T]) -> T:
    """``decode`` of the snapshot's data, streamed from the file; the checksum is checked
    before the result is returned, so a corrupt file yields nothing to apply
    (``CorruptionError``). A decode that fails on a corrupt file is that CorruptionError
    too; on an intact one its own error."""
    data = CheckedData(snap)
    try:
        try:
            result = decode(data)
        except Exception:
            data.verify()
            raise
        data.verify()
        return result
    finally:
        data.close()


class SnapshotReader:
    """An open snapshot, for sending it in chunks. It shares the snapshot's descriptor (a
    counted reference), so it stays readable even after a newer snapshot replaces
    (unlinks) it mid-transfer, and opening it needs no new descriptor."""

    def __init__(self, snap: SnapshotFile) -> None:
        snap.acquire()
        self._snap: SnapshotFile | None = snap
        self.meta = snap.meta
        self.size = snap.data_len
        self._offset = snap.data_offset

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` data bytes from ``offset`` (b"" at or past the end)."""
        if offset < 0 or size < 0:
            raise ValueError("offset and size must be >= 0")
        if self._snap is None:
            raise ValueError("snapshot reader is closed")
        size = max(0, min(size, self.size - offset))
        return os.pread(self._snap.fd, size, self._offset + offset) if size else b""

    def close(self) -> None:
        if self._snap is not None:
            self._snap.release()
            self._snap = None

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
