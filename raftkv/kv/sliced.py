"""Reads over a large map, done in slices so the event loop never waits for all of it.

``KVStateMachine.read_deferred`` answers the reads that walk the whole map with a
``SlicedRead`` instead of a reply: the runtime calls ``step()`` until it returns True,
yielding to its loop in between, then sends ``result``. Each step does about ``budget``
units of work (matching, hashing or moving one key through a sort or a merge), a few
milliseconds. Pure: no clock, no I/O; the answers are those ``read`` gives.

* ``KeysJob``: ``KEYS pattern`` over a copy of the key list taken at the confirmed read
  point (one C-level copy: a consistent point-in-time answer whatever is applied while the
  job runs), matched and sorted in slices. Keys whose deadline (from a copy of the
  deadlines taken at the same point) is at or before the read's time are left out, as
  ``read`` leaves them out: expired keys stay in the map until an ``EXPIRED`` entry
  deletes them.
* ``ScanBuild``: the first SCAN of a large map needs SCAN's hash order of every key
  (scan.py), seconds of work for a million keys. It is built in slices over a copy of the
  key list into an order the machine already uses to record keys added meanwhile;
  ``ScanRead`` waits for it, then answers the SCAN from the state current at that moment
  (still within the read's invocation and response, so linearizable).

Sorting is by runs: small runs sorted by ``sorted`` (C), merged pairwise by ``sorted`` of two
runs concatenated (timsort merges two runs in linear time) until they are long, then merged
lazily by ``heapq.merge`` a slice at a time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from .glob import Glob
from .scan import ScanOrder, key_hash

_RUN = 4096  # items sorted by one `sorted` call
_LONG_RUN = 16384  # runs at least this long are merged lazily
_MATCH = 256  # keys matched or hashed per slice; either costs ~30 sort steps
BUDGET = 8192


class SlicedRead:
    """A read finished by repeated ``step()`` calls; ``result`` once one returns True."""

    __slots__ = ("_work", "result")

    def __init__(self) -> None:
        self.result: Any = None
        self._work: Iterator[int] = self._run()

    def step(self, budget: int = BUDGET) -> bool:
        spent = 0
        for cost in self._work:
            spent += cost
            if spent >= budget:
                return False
        return True

    def finish(self) -> Any:
        """Run to the end at once (for a caller with no loop to yield to)."""
        while not self.step(1 << 62):
            pass
        return self.result

    def _run(self) -> Iterator[int]:
        raise NotImplementedError


def sort_in_slices(items: list[Any], out: list[Any]) -> Iterator[int]:
    """Sort ``items`` into ``out`` (which must be empty), yielding work done as it goes."""
    runs: list[list[Any]] = []
    for start in range(0, len(items), _RUN):
        runs.append(sorted(items[start : start + _RUN]))
        yield _RUN
    items.clear()
    while len(runs) > 1 and len(runs[0]) < _LONG_RUN:
        merged: list[list[Any]] = []
        for i in range(0, len(runs) - 1, 2):
            merged.append(sorted(runs[i] + runs[i + 1]))
            runs[i] = runs[i + 1] = []
            yield len(merged[-1])
        if len(runs) % 2:
            merged.append(runs[-1])
        runs = merged
    if len(runs) == 1:
        out.extend(runs[0])
        return
    stream = heapq.merge(*runs)
    while piece := list(itertools.islice(stream, _RUN)):
        out.extend(piece)
        yield 2 * len(piece)  # a Python-level merge step costs more than a C one


def match_in_slices(glob: Glob, keys: list[bytes], out: list[bytes]) -> Iterator[int]:
    """Append the keys that match ``glob`` to ``out``, yielding work done as it goes: a
    fixed cost a key plus the matcher's own (which it yields inside one large key too)."""
    for key in keys:
        if (yield from glob.steps(key)):
            out.append(key)
        yield 16


class ScanMatch(SlicedRead):
    """``SCAN ... MATCH pattern``: the batch and its cursor from ``answer()`` (the SCAN
    without its MATCH, once ``build``, if any, is done), then the batch's keys matched in
    slices. The answer is that of the moment ``answer()`` ran: matching reads no state."""

    __slots__ = ("_answer", "_build", "_glob")

    def __init__(self, build: SlicedRead | None, answer: Callable[[], Any],
                 pattern: bytes) -> None:
        self._build = build
        self._answer = answer
        self._glob = Glob(pattern)
        super().__init__()

    def _run(self) -> Iterator[int]:
        if self._build is not None:
            while not self._build.step():
                yield BUDGET
        reply = self._answer()
        if not isinstance(reply, list):  # an error: answered as it is
            self.result = reply
            return
        cursor, keys = reply
        matched: list[bytes] = []
        yield from match_in_slices(self._glob, keys, matched)
        self.result = [cursor, matched]


class KeysJob(SlicedRead):
    """``KEYS pattern`` over ``keys``, without those whose deadline in ``deadlines`` (key ->
    ms, taken with ``keys``) is at or before ``now``."""

    __slots__ = ("_deadlines", "_keys", "_now", "_pattern")

    def __init__(self, keys: list[bytes], pattern: bytes,
                 deadlines: dict[bytes, int] | None = None, now: int = 0) -> None:
        self._keys = keys
        self._pattern = pattern
        self._deadlines = deadlines
        self._now = now
        super().__init__()

    def _run(self) -> Iterator[int]:
        keys, pattern, deadlines, now = self._keys, self._pattern, self._deadlines, self._now
        self._keys, self._deadlines = [], None
        dead: set[bytes] = set()  # the keys expired at the read's time
        if deadlines:
            items = iter(deadlines.items())
            while chunk := list(itertools.islice(items, _MATCH)):
                dead.update(k for k, deadline in chunk if deadline <= now)
                yield 4 * len(chunk)
        if pattern != b"*" or dead:  # (KEYS * is every key, the empty one too, as in Redis)
            live = keys
            if dead:
                live = []
                for start in range(0, len(keys), _MATCH):
                    live.extend(k for k in keys[start : start + _MATCH] if k not in dead)
                    yield 4 * _MATCH
            keys = live
            if pattern != b"*":
                matched: list[bytes] = []
                yield from match_in_slices(Glob(pattern), keys, matched)
                keys = matched
        out: list[bytes] = []
        yield from sort_in_slices(keys, out)
        self.result = out


class ScanBuild(SlicedRead):
    """Fills ``order`` (already recording keys added meanwhile) with the hash order of
    ``keys`` merged into ``base`` (the order's sorted entries, if any: many keys added
    since the last SCAN, as one 100,000-key MSET adds, cost the next one a second in one
    go); ``result`` is True once done."""

    __slots__ = ("_base", "_keys", "order")

    def __init__(self, keys: list[bytes], order: ScanOrder,
                 base: list[tuple[int, bytes]] | None = None) -> None:
        self._keys = keys
        self._base = base or []
        self.order = order
        super().__init__()

    def _run(self) -> Iterator[int]:
        keys, self._keys = self._keys, []
        hashed: list[tuple[int, bytes]] = []
        for start in range(0, len(keys), _MATCH):
            chunk = keys[start : start + _MATCH]
            hashed.extend((key_hash(k), k) for k in chunk)
            yield 32 * len(chunk)
        keys.clear()
        entries: list[tuple[int, bytes]] = []
        yield from sort_in_slices(hashed, entries)
        base, self._base = self._base, []
        if base:  # merged without repeats (a key re-added after its removal, or twice)
            fresh, entries = entries, []
            last = None
            stream = heapq.merge(base, fresh)
            while piece := list(itertools.islice(stream, _RUN)):
                entries += [item for item in piece if item != last and (last := item)]
                yield 3 * len(piece)
        self.order.fill(entries)
        self.result = True


class ScanRead(SlicedRead):
    """A SCAN waiting for ``build``; then ``answer()`` from the state of that moment."""

    __slots__ = ("_answer", "_build")

    def __init__(self, build: ScanBuild, answer: Callable[[], Any]) -> None:
        self._build = build
        self._answer = answer
        super().__init__()

    def _run(self) -> Iterator[int]:
        while not self._build.step():
            yield BUDGET
        self.result = self._answer()
