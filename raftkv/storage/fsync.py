"""The fsync policy, and the one place that calls fsync on files and directories.

``always`` (the default) fsyncs every WAL group, snapshot, segment and directory change:
what ``sync()`` returns from is on the disk. ``never`` skips every fsync; a power loss
can then lose acknowledged writes and break Raft's safety, so it exists for benchmarks only
and the runtime must log ``fsync_policy_warning()`` loudly when it is chosen.
"""

from __future__ import annotations

import enum
import os


class FsyncPolicy(enum.Enum):
    ALWAYS = "always"
    NEVER = "never"

    @classmethod
    def parse(cls, value: FsyncPolicy | str) -> FsyncPolicy:
        if isinstance(value, FsyncPolicy):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown fsync policy {value!r} (choose one of {choices})") from None


def fsync_policy_warning(policy: FsyncPolicy | str) -> str | None:
    """Text the runtime must log at WARNING level for a weak policy (None for ``always``)."""
    if FsyncPolicy.parse(policy) is FsyncPolicy.ALWAYS:
        return None
    return (
        "fsync=never: the write-ahead log is NOT fsynced. A power loss or kernel crash can "
        "lose acknowledged writes and votes, which breaks Raft's safety guarantees. Use it "
        "for benchmarks only, never for data you care about."
    )


def fsync_fd(fd: int, policy: FsyncPolicy) -> None:
    if policy is FsyncPolicy.ALWAYS:
        os.fsync(fd)


def fdatasync_fd(fd: int, policy: FsyncPolicy) -> None:
    """Only for a write that left the file's size as it was (a WAL group written into
    space allocated ahead): the data and what is needed to read it back, not timestamps."""
    if policy is FsyncPolicy.ALWAYS:
        os.fdatasync(fd)


# Directories an open storage holds a descriptor on (path -> fd), so that fsyncing them
# needs no new descriptor: with every descriptor taken (clients can use them all up), an
# ``open`` would fail with EMFILE and turn a routine fsync into a StorageFailure.
_held_dirs: dict[str, int] = {}


def hold_dir(path: str) -> int:
    """Open ``path`` for fsyncs from now on (``release_dir`` closes it); returns the fd."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    old = _held_dirs.pop(path, None)
    _held_dirs[path] = fd
    if old is not None:
        os.close(old)
    return fd


def release_dir(path: str, fd: int) -> None:
    if _held_dirs.get(path) == fd:
        del _held_dirs[path]
    os.close(fd)


def fsync_dir(path: str, policy: FsyncPolicy) -> None:
    """Make a directory's entries (creates, renames, unlinks) durable."""
    if policy is not FsyncPolicy.ALWAYS:
        return
    held = _held_dirs.get(path)
    if held is not None:
        os.fsync(held)
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str, policy: FsyncPolicy) -> None:
    """fsync a file by name (what an earlier process wrote may still be only in the cache)."""
    if policy is not FsyncPolicy.ALWAYS:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
