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

import hashlib
import os
import struct
from typing import Any, BinaryIO

import attrs
import msgpack

from raftkv.kv import decode_snapshot

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


class BackupWriter:
    """Writes ``path`` through a temp file: header, payload chunks, digest; ``finish``
    checks the payload against the header's SHA-256, fsyncs and renames into place."""

    def __init__(self, path: str, header: BackupHeader) -> None:
        self.path = path
        self.tmp = f"{path}.partial"
        self.header = header
        self.written = 0
        self._payload_hash = hashlib.sha256()
        self._file_hash = hashlib.sha256()
        self._f: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/abort
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

    def abort(self) -> None:
        self._f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def read_backup(path: str) -> tuple[BackupHeader, bytes]:
    """Header and payload of a verified backup file; BackupError if anything is off."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw.startswith(MAGIC):
        raise BackupError(f"{path} is not a RaftKV backup (no magic)")
    if len(raw) < len(MAGIC) + 4 + DIGEST_LEN:
        raise BackupError(f"{path} is truncated")
    body, digest = raw[:-DIGEST_LEN], raw[-DIGEST_LEN:]
    if hashlib.sha256(body).digest() != digest:
        raise BackupError(f"{path}: checksum mismatch (truncated or corrupted)")
    (hlen,) = struct.unpack_from(">I", raw, len(MAGIC))
    start = len(MAGIC) + 4
    if hlen > MAX_HEADER or start + hlen > len(body):
        raise BackupError(f"{path}: bad header length {hlen}")
    header = _header(raw[start:start + hlen])
    payload = body[start + hlen:]
    if len(payload) != header.bytes:
        raise BackupError(f"{path}: payload is {len(payload)} bytes, header says {header.bytes}")
    if hashlib.sha256(payload).hexdigest() != header.sha256:
        raise BackupError(f"{path}: payload checksum mismatch")
    return header, payload


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
    return BackupHeader(**{name: doc[name] for name in _FIELDS})


def verify_backup(path: str) -> BackupHeader:
    """Everything ``read_backup`` checks, plus: the payload decodes to ``keys`` keys."""
    header, payload = read_backup(path)
    try:
        state = decode_snapshot(payload)
    except Exception as exc:  # a decode error of any kind means the file is unusable
        raise BackupError(f"{path}: the state does not decode ({exc})") from None
    if len(state) != header.keys:
        raise BackupError(f"{path}: {len(state)} keys, header says {header.keys}")
    return header
