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
from collections.abc import Iterator
from typing import Any, BinaryIO

import attrs
import msgpack

from raftkv.kv import KVState, decode_snapshot
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


def check_target(path: str) -> None:
    """BackupError unless ``path`` can name the new backup file: not a directory (nor a
    name ending in a slash), in a directory that exists. Checked before a node is asked,
    so a mistyped path costs nothing rather than the whole transfer (attack21)."""
    if not path or path.endswith(os.sep) or os.path.isdir(path):
        raise BackupError(f"{path or repr(path)} is a directory: name the backup FILE in it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BackupError(f"cannot write {path}: no directory {parent}")


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
        try:
            os.replace(self.tmp, self.path)  # (a directory made there since check_target)
        except OSError as exc:
            raise BackupError(f"cannot write {self.path}: {exc.strerror or exc}") from None
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


class PayloadStream:
    """A backup's payload read from its file piece by piece, hashed as it is read: a
    decoder or a snapshot writer streams it (never the whole payload in memory), and
    ``finish`` checks the SHA-256 of what was read against the header's (the file may
    have changed since its digest was checked)."""

    def __init__(self, f: BinaryIO, path: str, header: BackupHeader, start: int) -> None:
        self._f, self._path, self._header, self._start = f, path, header, start
        self.length = header.bytes
        self.rewind()

    def rewind(self) -> None:
        """Back to the payload's first byte, to read it again (and check it again)."""
        self._f.seek(self._start)
        self._pos = 0
        self._hash = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        left = self.length - self._pos
        n = left if n < 0 else min(n, left)
        if n <= 0:
            return b""
        try:
            block = self._f.read(min(n, CHUNK))
        except OSError as exc:
            raise BackupError(f"cannot read {self._path}: {exc.strerror or exc}") from None
        if not block:
            raise BackupError(f"{self._path} changed while being read")
        self._hash.update(block)
        self._pos += len(block)
        return block

    def pieces(self) -> Iterator[bytes]:
        """The payload from where the stream is, in pieces of at most CHUNK bytes; the
        last ``next`` raises ``BackupError`` instead of ending if the checksum differs."""
        while block := self.read(CHUNK):
            yield block
        self.finish()

    def finish(self) -> None:
        """Read what is left; ``BackupError`` unless the payload's SHA-256 matches."""
        while self.read(CHUNK):
            pass
        if self._hash.hexdigest() != self._header.sha256:
            raise BackupError(f"{self._path}: payload checksum mismatch")


@contextlib.contextmanager
def open_backup(path: str) -> Iterator[tuple[BackupHeader, PayloadStream]]:
    """Header and payload stream of a backup file whose digest and header were checked;
    BackupError if anything is off. The digest is checked by streaming the file first (a
    huge or endless file costs no memory); the payload is then read as it is used."""
    try:
        # Without blocking: a FIFO with no writer would hold ``open`` for good (attack5).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    # Checked before ``open(fd)``, which raises IsADirectoryError on a directory (attack21).
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BackupError(f"{path} is not a regular file")
    with open(fd, "rb") as f:
        try:
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
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
        yield header, PayloadStream(f, path, header, start + hlen)


def read_backup(path: str) -> tuple[BackupHeader, bytes]:
    """Header and payload of a verified backup file (the payload whole, in memory)."""
    with open_backup(path) as (header, stream):
        payload = b"".join(stream.pieces())
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
    """Everything ``open_backup`` checks, plus: the payload decodes to ``keys`` keys of a
    state a node could hold. Decoded as it is read from the file: memory holds the
    decoded state, never the payload's bytes beside it."""
    with open_backup(path) as (header, stream):
        check_state(path, header, decode_payload(path, stream))
    return header


def decode_payload(path: str, stream: PayloadStream) -> KVState:
    """The state in ``stream``'s payload, its checksum checked: BackupError if the file
    changed (checksum) or the state does not decode."""
    try:
        state = decode_snapshot(stream, stream.length)
    except Exception as exc:  # a decode error of any kind means the file is unusable
        stream.finish()  # a payload that changed since its digest: say so first
        raise BackupError(f"{path}: the state does not decode ({exc})") from None
    stream.finish()
    return state


def check_payload(path: str, header: BackupHeader, payload: bytes) -> BackupHeader:
    """``header`` if ``payload`` decodes to a state of ``header.keys`` keys; else BackupError."""
    try:
        state = decode_snapshot(payload)
    except Exception as exc:  # a decode error of any kind means the file is unusable
        raise BackupError(f"{path}: the state does not decode ({exc})") from None
    return check_state(path, header, state)


def check_state(path: str, header: BackupHeader, state: KVState) -> BackupHeader:
    """``header`` if ``state`` is one of ``header.keys`` keys a node could hold at the
    header's index; else BackupError."""
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
