"""SCAN's key order: keys sorted by a fixed 64-bit hash, so a cursor is a point in hash space.

Why not Redis's reverse-binary bucket cursor: there are no buckets here. Why not the key
itself: clients (redis-cli among them) hold the cursor in an unsigned 64-bit integer, and
keys are arbitrary bytes. So keys are ordered by ``(hash64(key), key)``, and the cursor
returned after a batch is ``1 + `` the hash of the batch's last key (0 when the end is
reached). A batch never splits a group of keys that share a hash, hence every cursor range
``[c, next)`` is covered in full and every key that exists for the whole scan is returned
exactly once, whatever is written meanwhile; keys added or removed during the scan may or
may not appear. The hash is BLAKE2b, not Python's salted ``hash``, so the order is the same
on every node and a scan can continue on another node.

The sorted list is a cache built on the first SCAN and kept up to date incrementally: new
keys are inserted lazily at the next SCAN, deleted ones are skipped and compacted away.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping

# Above this many pending new keys a merge pass beats one list insertion per key.
_INSERT_LIMIT = 256


def key_hash(key: bytes) -> int:
    """The key's place in SCAN order: a 64-bit hash, identical on every node and run."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class ScanOrder:
    """A sorted ``[(key_hash(key), key)]`` over a live dict; the owner reports new keys."""

    def __init__(self, keys: Iterable[bytes], hash_key: Callable[[bytes], int] = key_hash) -> None:
        # hash_key is replaceable so tests can force hash ties; nodes must all use key_hash.
        self._hash = hash_key
        self._entries = sorted((hash_key(k), k) for k in keys)
        self._pending: list[bytes] = []
        self._removed = 0

    def fill(self, entries: list[tuple[int, bytes]]) -> None:
        """Take ``entries`` (sorted ``(hash, key)`` of the keys at some point, built
        elsewhere in slices) as the order; keys reported ``added`` since stay pending."""
        self._entries = entries

    def release(self) -> list[tuple[int, bytes]]:
        """Hand the entries over (to be freed elsewhere, in slices); the order is empty."""
        entries, self._entries = self._entries, []
        self._pending = []
        return entries

    def added(self, key: bytes) -> None:
        """``key`` was just inserted into the dict (it was absent before)."""
        self._pending.append(key)

    @property
    def pending(self) -> int:
        """How many key insertions the next SCAN has to merge (a key may count twice)."""
        return len(self._pending)

    def take_pending(
        self, data: Mapping[bytes, bytes]
    ) -> tuple[list[bytes], list[tuple[int, bytes]]]:
        """The pending keys still in ``data`` and the current entries, for a merge done
        elsewhere in slices (``fill`` takes its result); the order has none pending then."""
        pending, self._pending = self._pending, []
        return list(filter(data.__contains__, pending)), self._entries

    def added_many(self, keys: list[bytes]) -> None:
        """Each of ``keys`` was just inserted into the dict (a key may repeat)."""
        self._pending += keys

    def removed(self) -> None:
        """A key was removed from the dict; its entry becomes stale."""
        self._removed += 1

    def _refresh(self, data: Mapping[bytes, bytes]) -> None:
        entries = self._entries
        if self._pending:
            fresh = sorted({(self._hash(k), k) for k in self._pending if k in data})
            self._pending = []
            if len(fresh) <= _INSERT_LIMIT:
                for item in fresh:
                    at = bisect.bisect_left(entries, item)
                    if at == len(entries) or entries[at] != item:
                        entries.insert(at, item)
            else:
                merged: list[tuple[int, bytes]] = []
                for item in heapq.merge(entries, fresh):
                    if not merged or merged[-1] != item:
                        merged.append(item)
                self._entries = entries = merged
        if self._removed * 2 > len(entries):
            self._entries = [item for item in entries if item[1] in data]
            self._removed = 0

    def entries(self, data: Mapping[bytes, bytes]) -> list[tuple[int, bytes]]:
        """The sorted ``(hash, key)`` list, brought up to date (may hold removed keys)."""
        self._refresh(data)
        return self._entries

    def batch(
        self, data: Mapping[bytes, bytes], cursor: int, count: int
    ) -> tuple[int, list[bytes]]:
        """Up to ``count`` live keys from ``cursor`` on (more on a hash tie) and the next cursor."""
        self._refresh(data)
        entries = self._entries
        at = bisect.bisect_left(entries, (cursor, b""))
        end = len(entries)
        keys: list[bytes] = []
        last = -1
        while at < end:
            h, key = entries[at]
            if len(keys) >= count and h != last:
                break
            if key in data:
                keys.append(key)
                last = h
            at += 1
        if at >= end:
            return 0, keys
        # Stale entries skipped at the end of the batch stay below the next cursor: harmless.
        return entries[at][0], keys
