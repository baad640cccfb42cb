"""Durable storage: WAL segments, hard state, snapshots, metadata and crash recovery.

Synchronous (no trio): the runtime calls it from a worker thread. See disk_storage for the
crash reasoning, wal/records for the on-disk log format, snapshot_file for snapshots.
"""

from raftkv.storage.disk_storage import (
    DEFAULT_SEGMENT_SIZE,
    STORAGE_FDS,
    DiskStorage,
    SnapshotWriter,
    open_storage,
)
from raftkv.storage.errors import (
    CorruptionError,
    DataDirLocked,
    DataDirMismatch,
    DataDirNotWritable,
    DiskStorageError,
    NotADataDir,
    SnapshotNotWritten,
    StorageFailure,
    UnsupportedFormat,
)
from raftkv.storage.fsync import FsyncPolicy, fsync_policy_warning
from raftkv.storage.snapshot_file import SnapshotReader

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "STORAGE_FDS",
    "CorruptionError",
    "DataDirLocked",
    "DataDirMismatch",
    "DataDirNotWritable",
    "DiskStorage",
    "DiskStorageError",
    "FsyncPolicy",
    "NotADataDir",
    "SnapshotNotWritten",
    "SnapshotReader",
    "SnapshotWriter",
    "StorageFailure",
    "UnsupportedFormat",
    "fsync_policy_warning",
    "open_storage",
]
