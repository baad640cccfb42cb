"""``--maxmemory`` with Redis's ``noeviction`` policy.

Used memory is the process's resident set size (RSS: ``/proc/self/statm``), read at most
every ``interval`` seconds. Why RSS and not a count of key and value bytes: it is what the
operating system kills a node for, and it includes what a count would miss (the in-memory
Raft log until the next snapshot, replies owed to clients, Python's per-object overhead).
Its catch: memory freed by a delete comes back to the OS only when the allocator returns
it (large values at once; small objects when their whole arena empties), and log entries
stay until the next snapshot compacts them, so writes may stay refused for a while after
deletes.

Writes that may grow memory answer Redis's ``-OOM`` text while used memory is over the
limit; reads, deletes and FLUSHALL keep working, so an operator can make room.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from raftkv.kv import lookup
from wire.reply import ErrorReply

OOM = ErrorReply("OOM command not allowed when used memory > 'maxmemory'.")

# Writes that never grow the map (Redis: the write commands without the denyoom flag).
# EXPIRED is the active expiry's own deletion (node/expiry.py): refusing it would stop
# the leader reclaiming the memory of expired keys exactly when memory is short.
# publish_member is the leader's record that a voter served (node/publish.py; one id in a
# set of at most 4,096): refused, no voter was published on a node over --maxmemory, and
# a wiped founder was let back to vote (attack9: a cluster started with --maxmemory under
# its RSS published nobody).
SHRINKING = frozenset({b"del", b"unlink", b"flushall", b"flushdb", b"persist", b"expire",
                       b"pexpire", b"expireat", b"pexpireat", b"getdel", b"discard",
                       b"expired", b"publish_member"})

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The resident set size of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def grows_memory(args: list[bytes]) -> bool:
    """True for a write command that may add keys or bytes (Redis's denyoom)."""
    name = args[0].lower()
    if name == b"once" and len(args) > 3:  # a session's write: judged as that write
        return grows_memory(args[3:])
    if name in SHRINKING:
        return False
    spec = lookup(name)
    return spec is not None and spec.is_write


class MemoryGuard:
    def __init__(self, limit: int, interval: float = 0.1,
                 measure: Callable[[], int] = rss_bytes,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.interval = interval
        self.measure = measure
        self.clock = clock
        self._used = 0
        self._read_at = -float("inf")
        self.refused = 0

    def used(self) -> int:
        now = self.clock()
        if now - self._read_at >= self.interval:
            self._used = self.measure()
            self._read_at = now
        return self._used

    def refuse(self, args: list[bytes]) -> ErrorReply | None:
        """``OOM`` if ``args`` may grow memory and used memory is over the limit."""
        if not self.limit or not grows_memory(args) or self.used() <= self.limit:
            return None
        self.refused += 1
        return OOM
