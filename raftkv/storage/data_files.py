"""Reading the files found in a data directory, which are hostile until checked.

Anything can sit under a segment's or ``meta.json``'s name: a FIFO (``open`` blocks for
good, and the node never starts or stops), a device or a symlink to one (``read`` never
ends), or a huge sparse file (``read`` takes all memory before any check runs). So a data
file is opened without following links and without blocking, must be a regular file, and
is read only if its size is within the caller's bound; anything else is a
``CorruptionError`` naming the file, which ``raftkv serve`` prints as one line.
"""

from __future__ import annotations

import os
import stat

from raftkv.storage.errors import CorruptionError


def check_regular(path: str) -> None:
    """Refuse ``path`` unless it is a regular file itself (not a link, FIFO or device)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as e:
        raise CorruptionError(path, 0, f"cannot stat: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise CorruptionError(path, 0, f"not a regular file ({_kind(mode)})")


def read_bounded(path: str, limit: int) -> bytes:
    """The whole content of the regular file ``path``, refused if over ``limit`` bytes.

    Raises ``FileNotFoundError`` if it does not exist (callers decide what that means).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP: a symlink, as O_NOFOLLOW reports it
        raise CorruptionError(path, 0, f"cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)  # of what was opened: no window for a swap after a check
        if not stat.S_ISREG(st.st_mode):
            raise CorruptionError(path, 0, f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise CorruptionError(
                path, 0, f"{st.st_size} bytes, more than the {limit} this file may hold")
        with os.fdopen(os.dup(fd), "rb") as f:
            # Sized by fstat: read(limit + 1) would allocate the whole limit up front.
            data = f.read(st.st_size + 1)
    finally:
        os.close(fd)
    if len(data) > st.st_size:  # grew after the fstat
        raise CorruptionError(path, 0, "grew while it was read (another writer?)")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"
