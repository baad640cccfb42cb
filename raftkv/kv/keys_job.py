"""KEYS over a large map, done in slices so the event loop never waits for all of it.

``KVStateMachine.read_deferred`` answers ``KEYS pattern`` with a ``KeysJob`` over a copy of
the key list taken at the confirmed read point (one C-level copy: a consistent point-in-time
answer whatever is applied while the job runs). The runtime calls ``step()`` until it
returns True, yielding to the loop in between, then sends ``result``. Each step does about
``budget`` units of work: matching a key, or moving it through a sort or a merge.

The answer is the same as ``KEYS`` from ``read``: the matching keys in byte order. Sorting
is by runs: small runs sorted by ``sorted`` (C), merged pairwise by ``sorted`` of the two
runs concatenated (timsort merges two runs in linear time) until they are long, then
merged lazily by ``heapq.merge`` a slice at a time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from .glob import stringmatch

_RUN = 4096  # keys sorted by one `sorted` call
_LONG_RUN = 16384  # runs at least this long are merged lazily
_MATCH = 256  # keys matched per slice; a glob match costs ~30 sort steps


class KeysJob:
    __slots__ = ("_keys", "_pattern", "_work", "result")

    def __init__(self, keys: list[bytes], pattern: bytes) -> None:
        self._keys = keys
        self._pattern = pattern
        self.result: list[bytes] | None = None
        self._work = self._run()

    def step(self, budget: int = 8192) -> bool:
        """Do about ``budget`` units of work; True once ``result`` is set."""
        if self.result is not None:
            return True
        spent = 0
        for cost in self._work:
            spent += cost
            if spent >= budget:
                return self.result is not None
        return True

    def _run(self) -> Iterator[int]:
        keys, pattern = self._keys, self._pattern
        self._keys = []
        if pattern != b"*":
            matched: list[bytes] = []
            for start in range(0, len(keys), _MATCH):
                chunk = keys[start : start + _MATCH]
                matched.extend(k for k in chunk if stringmatch(pattern, k))
                yield 32 * len(chunk)
            keys = matched
        runs: list[list[bytes]] = []
        for start in range(0, len(keys), _RUN):
            runs.append(sorted(keys[start : start + _RUN]))
            yield _RUN
        del keys
        while len(runs) > 1 and len(runs[0]) < _LONG_RUN:
            merged: list[list[bytes]] = []
            for i in range(0, len(runs) - 1, 2):
                merged.append(sorted(runs[i] + runs[i + 1]))
                runs[i] = runs[i + 1] = []
                yield len(merged[-1])
            if len(runs) % 2:
                merged.append(runs[-1])
            runs = merged
        if len(runs) <= 1:
            self.result = runs[0] if runs else []
            yield 0
            return
        out: list[bytes] = []
        stream = heapq.merge(*runs)
        while piece := list(itertools.islice(stream, _RUN)):
            out.extend(piece)
            yield 2 * len(piece)  # a Python-level merge step costs more than a C one
        self.result = out
        yield 0
