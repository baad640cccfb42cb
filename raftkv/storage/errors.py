"""Errors of the durable storage layer.

They do not derive from ``raftkv.raft.log_storage.StorageError`` on purpose: the core may
catch that family (Compacted, Unavailable) as part of normal operation, and none of these
must ever be swallowed that way. Each one means the node has to stop.
"""

from __future__ import annotations


class DiskStorageError(Exception):
    """Base of every error raised by raftkv.storage."""


class StorageFailure(DiskStorageError):
    """A write, fsync, rename or unlink failed (disk full, I/O error).

    After one, the storage refuses every further write: a failed fsync may have dropped
    dirty pages, so the on-disk state is unknown and the node must stop and recover from
    disk ("fsyncgate") rather than carry on.
    """


class CorruptionError(DiskStorageError):
    """On-disk data fails its checks somewhere other than a torn final record."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class UnsupportedFormat(DiskStorageError):
    """A file was written by a format version this build does not read."""


class DataDirMismatch(DiskStorageError):
    """The data directory belongs to another cluster id or node id."""


class DataDirLocked(DiskStorageError):
    """Another process (or another open storage in this one) holds the data directory."""


class NotADataDir(DiskStorageError):
    """The directory holds files that are not RaftKV's and has no meta file."""


class DataDirNotWritable(DiskStorageError):
    """The data directory cannot be written (read-only mount, permissions, immutable, or
    a file where the directory should be). Found at start by a probe write, not at the
    first snapshot or segment roll."""


class SnapshotNotWritten(DiskStorageError):
    """A snapshot file could not be written (no space, no descriptor): nothing visible
    changed, the temp file is gone, the log and the current snapshot are intact, and the
    storage keeps working. Unlike ``StorageFailure`` the node need not stop: it may try
    again later. ``errno`` is the failing call's (ENOSPC, EMFILE, ...)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
