"""Durable file operations: whole writes, atomic replacement, durable removal.

Every mutation of the data directory goes through ``os`` calls made here or in the WAL /
snapshot writers (looked up on ``os`` at call time, so tests can inject faults). Callers
turn an ``OSError`` into ``StorageFailure``.
"""

from __future__ import annotations

import contextlib
import itertools
import os

import attrs

from raftkv.storage.fsync import FsyncPolicy, fsync_dir, fsync_fd

TMP_SUFFIX = ".tmp"
SPARE_PREFIX = "spare-"
_spare_ids = itertools.count(1)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (a write may be short, e.g. near ENOSPC)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def atomic_write(directory: str, name: str, data: bytes, policy: FsyncPolicy) -> str:
    """Write ``name`` so that a crash leaves either no file or the whole file.

    temp file, write, fsync, rename over ``name``, fsync the directory: after the rename
    the contents are already durable, after the directory fsync the name is too.
    """
    path = os.path.join(directory, name)
    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        fsync_fd(fd, policy)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory, policy)
    return path


def remove_durably(directory: str, name: str, policy: FsyncPolicy) -> None:
    """Unlink and fsync the directory, so removals happen in the order they were made."""
    os.unlink(os.path.join(directory, name))
    fsync_dir(directory, policy)


def truncate_durably(path: str, size: int, policy: FsyncPolicy) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        fsync_fd(fd, policy)
    finally:
        os.close(fd)


@attrs.define
class Spare:
    """A temp file created ahead of need and held open: the next new file (a segment, a
    received snapshot) is written into it and renamed into place, so creating that file
    needs no new descriptor at the moment it is needed. Clients may have used every
    descriptor by then (EMFILE), and where the node cannot do without the new file that
    would stop it. It is replaced after use while descriptors are at hand (best effort)."""

    path: str
    fd: int

    @classmethod
    def create(cls, directory: str, name: str, flags: int) -> Spare | None:
        """A new spare, or None if none can be made now (the caller opens on demand)."""
        # A unique name: a spare taken by a writer keeps its name until renamed, and the
        # one made to replace it meanwhile must not truncate it.
        path = os.path.join(directory, f"{SPARE_PREFIX}{name}-{next(_spare_ids)}{TMP_SUFFIX}")
        try:
            return cls(path, os.open(path, flags | os.O_CREAT | os.O_TRUNC, 0o644))
        except OSError:
            return None

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
