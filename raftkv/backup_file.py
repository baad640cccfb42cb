"""The backup file: what ``raftkv backup`` writes and ``restore``/``backup verify`` read.

Layout::

    b"RAFTKV-BACKUP\\n"                       magic
    u32 big-endian                            header length
    header (msgpack map)                      format, cluster_id, index, term, keys, bytes,
                                              sha256 (of the payload), created, source
    payload (``bytes`` long)                  the state, exactly a snapshot's bytes
                                              (raftkv.kv.encode_snapshot)
    32 bytes                                  SHA-256 of everything above

The payload's SHA-256 was computed by the node that served the backup, so a match proves
the bytes arrived intact end to end; the trailing digest covers the header too. ``verify``
also decodes the payload and counts its keys, so a file that verifies restores.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
from typing import Any, BinaryIO

import attrs
import msgpack

from raftkv.kv import decode_snapshot
from wire.raft import MAX_INDEX, MAX_TERM

MAGIC = b"RAFTKV-BACKUP\n"
FORMAT = 1
MAX_HEADER = 64 * 1024
DIGEST_LEN = 32


class BackupError(Exception):
    """The file is not a complete, intact RaftKV backup (the message says why)."""


@attrs.frozen
class BackupHeader:
    cluster_id: str
    index: int
    term: int
    keys: int
    bytes: int
    sha256: str
    created: str
    source: str
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


_FIELDS = {"cluster_id": str, "index": int, "term": int, "keys": int, "bytes": int,
           "sha256": str, "created": str, "source": str, "format": int}


def _create_private(path: str) -> BinaryIO:
    """A new file at ``path``, mode 0600, never through a symlink or into an existing file.

    A backup holds every key (and the sessions' recorded replies): open(path, "wb") under
    the usual umask made it world-readable, and followed a symlink planted at the temp
    name, so in a shared directory anyone could have ``raftkv backup`` overwrite a file of
    the operator's with the backup (attack8). A leftover temp file (or link) is removed
    first; if another appears before the create, O_EXCL refuses it instead of using it."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)  # (a symlink itself, not what it points to)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    return open(fd, "wb")


class BackupWriter:
    """Writes ``path`` through a temp file: header, payload chunks, digest; ``finish``
    checks the payload against the header's SHA-256, fsyncs and renames into place (the
    file is private to its owner: see ``_create_private``)."""

    def __init__(self, path: str, header: BackupHeader) -> None:
        self.path = path
        self.tmp = f"{path}.partial"
        self.header = header
        self.written = 0
        self._payload_hash = hashlib.sha256()
        self._file_hash = hashlib.sha256()
        try:
            self._f: BinaryIO = _create_private(self.tmp)
        except OSError as exc:
            raise BackupError(f"cannot write {self.tmp}: {exc.strerror or exc}") from None
        packed = msgpack.packb(header.to_dict(), use_bin_type=True)
        self._put(MAGIC + struct.pack(">I", len(packed)) + packed)

    def _put(self, data: bytes) -> None:
        self._f.write(data)
        self._file_hash.update(data)

    def write(self, chunk: bytes) -> None:
        if self.written + len(chunk) > self.header.bytes:
            raise BackupError("the node sent more bytes than it announced")
        self._payload_hash.update(chunk)
        self.written += len(chunk)
        self._put(chunk)

    def finish(self) -> None:
        if self.written != self.header.bytes:
            raise BackupError(f"got {self.written} of {self.header.bytes} bytes")
        if self._payload_hash.hexdigest() != self.header.sha256:
            raise BackupError("the payload's SHA-256 does not match the node's")
        self._f.write(self._file_hash.digest())
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))  # the rename, on disk

    def abort(self) -> None:
        self._f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


CHUNK = 1024 * 1024


def read_backup(path: str) -> tuple[BackupHeader, bytes]:
    """Header and payload of a verified backup file; BackupError if anything is off.

    The file's digest is checked by streaming it first (a huge or endless file costs no
    memory), then the payload is read once: memory holds the payload, never the file twice.
    """
    try:
        # Without blocking: a FIFO with no writer would hold ``open`` for good (attack5).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BackupError(f"{path} is not a regular file")
            size = st.st_size
            _check_digest(f, path, size)
            f.seek(0)
            head = f.read(len(MAGIC) + 4)
            if not head.startswith(MAGIC):
                raise BackupError(f"{path} is not a RaftKV backup (no magic)")
            (hlen,) = struct.unpack_from(">I", head, len(MAGIC))
            start = len(MAGIC) + 4
            if hlen > MAX_HEADER or start + hlen > size - DIGEST_LEN:
                raise BackupError(f"{path}: bad header length {hlen}")
            header = _header(f.read(hlen))
            payload_len = size - DIGEST_LEN - start - hlen
            if payload_len != header.bytes:
                raise BackupError(f"{path}: payload is {payload_len} bytes, header says "
                                  f"{header.bytes}")
            payload = f.read(payload_len)
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    if hashlib.sha256(payload).hexdigest() != header.sha256:
        raise BackupError(f"{path}: payload checksum mismatch")
    return header, payload


def _check_digest(f: BinaryIO, path: str, size: int) -> None:
    if size < len(MAGIC) + 4 + DIGEST_LEN:
        raise BackupError(f"{path} is truncated (or not a RaftKV backup)")
    digest = hashlib.sha256()
    left = size - DIGEST_LEN
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise BackupError(f"{path} changed while being read")
        digest.update(chunk)
        left -= len(chunk)
    if digest.digest() != f.read(DIGEST_LEN):
        raise BackupError(f"{path}: checksum mismatch (truncated or corrupted)")


def _header(raw: bytes) -> BackupHeader:
    try:
        doc = msgpack.unpackb(raw, raw=False)
    except Exception as exc:  # msgpack raises several types for bad input
        raise BackupError(f"unreadable header ({exc})") from None
    if not isinstance(doc, dict):
        raise BackupError("header is not a map")
    for name, kind in _FIELDS.items():
        if type(doc.get(name)) is not kind:
            raise BackupError(f"header field {name!r} missing or not {kind.__name__}")
    if doc["format"] != FORMAT:
        raise BackupError(f"backup format {doc['format']}; this build reads {FORMAT}")
    if min(doc["index"], doc["term"], doc["keys"], doc["bytes"]) < 0:
        raise BackupError("negative field in the header")
    # A digest proves the file intact, not its header sane: anyone can write matching
    # digests. Refuse what no node could run (the peers refuse terms and indexes past these).
    if doc["index"] > MAX_INDEX or doc["term"] > MAX_TERM:
        raise BackupError(f"header index {doc['index']} or term {doc['term']} is out of range")
    if doc["index"] == 0 and doc["keys"]:
        raise BackupError("header index 0 with keys: a state needs the index it was taken at")
    return BackupHeader(**{name: doc[name] for name in _FIELDS})


def verify_backup(path: str) -> BackupHeader:
    """Everything ``read_backup`` checks, plus: the payload decodes to ``keys`` keys."""
    return check_payload(path, *read_backup(path))


def check_payload(path: str, header: BackupHeader, payload: bytes) -> BackupHeader:
    """``header`` if ``payload`` decodes to a state of ``header.keys`` keys; else BackupError."""
    try:
        state = decode_snapshot(payload)
    except Exception as exc:  # a decode error of any kind means the file is unusable
        raise BackupError(f"{path}: the state does not decode ({exc})") from None
    if len(state.data) != header.keys:
        raise BackupError(f"{path}: {len(state.data)} keys, header says {header.keys}")
    # The state must be one a node could hold at the header's index (attack5): restore
    # writes no snapshot at index 0, so anything in such a state would silently vanish;
    # and the feed holds only changes of entries up to the index (the restored cluster's
    # first entry is index + 1, and its changes must sort after every retained one).
    feed = state.feed
    if header.index == 0 and (state.data or state.scripts or state.sessions or state.tombs
                              or (feed is not None and feed.changes)):
        raise BackupError(f"{path}: a state at index 0 must be empty; this one is not")
    if feed is not None and ((feed.floor is not None and feed.floor[0] > header.index)
                             or (feed.changes and feed.changes[-1].index > header.index)):
        raise BackupError(f"{path}: the change feed holds changes after index {header.index}")
    return header
