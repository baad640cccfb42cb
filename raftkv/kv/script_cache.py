"""The replicated script cache: bodies by sha1, bounded.

Two kinds of entry, as in Redis 7.4:

* **EVAL-cached** bodies (an ``EVAL`` whose body compiles caches it, so that a later
  ``EVALSHA`` finds it): at most ``EVAL_CACHE_SCRIPTS`` (Redis's 500) and
  ``EVAL_CACHE_BYTES`` of bodies; past either, the least recently used one goes (an
  ``EVAL``/``EVALSHA`` that runs it makes it the newest, as Redis's LRU list does).
  Without a bound, every distinct body a client sends stays in every replica's memory and
  every snapshot for good.
* **Loaded** bodies (``SCRIPT LOAD``) are never evicted; their total is bounded by
  ``LOADED_BYTES`` instead, and a ``SCRIPT LOAD`` past it answers ``LOAD_OVER`` (Redis has
  no such bound: it is RaftKV's). ``SCRIPT LOAD`` of an EVAL-cached body makes it loaded.

Each body is charged its length plus ``ENTRY_OVERHEAD`` (its sha and the maps' slots), so
that many tiny bodies are bounded too. The cache is part of the state machine: it changes
only on apply, the same way on every replica, and a snapshot carries it whole, EVAL-cached
shas in their LRU order (state.py). ``SCRIPT FLUSH`` empties both kinds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from wire.reply import ErrorReply

EVAL_CACHE_SCRIPTS = 500
EVAL_CACHE_BYTES = 8 * 1024 * 1024
LOADED_BYTES = 8 * 1024 * 1024
ENTRY_OVERHEAD = 128
LOAD_OVER = ErrorReply(
    f"ERR SCRIPT LOAD refused: loaded scripts would take more than {LOADED_BYTES} bytes "
    f"(each body plus {ENTRY_OVERHEAD}); SCRIPT FLUSH frees them")


def script_sha(body: bytes) -> bytes:
    """The SHA1 hex digest SCRIPT LOAD answers and EVALSHA takes (lower case)."""
    return hashlib.sha1(body).hexdigest().encode()


def _cost(body: bytes) -> int:
    return len(body) + ENTRY_OVERHEAD


class ScriptCache:
    """sha1 hex -> body, with the bounds and eviction order above."""

    def __init__(self, bodies: dict[bytes, bytes] | None = None,
                 eval_order: Iterable[bytes] = ()) -> None:
        """From a snapshot's ``bodies`` and EVAL-cached shas (oldest first; state.py checks
        they are distinct keys of ``bodies``). Bodies not in ``eval_order`` are loaded: a
        snapshot of an earlier release, which did not tell them apart, keeps them all."""
        self._bodies = dict(bodies) if bodies else {}
        self._evals: dict[bytes, None] = dict.fromkeys(eval_order)  # insertion order = LRU
        self._eval_bytes = sum(_cost(self._bodies[sha]) for sha in self._evals)
        self._loaded_bytes = sum(_cost(body) for sha, body in self._bodies.items()
                                 if sha not in self._evals)

    def __contains__(self, sha: bytes) -> bool:
        return sha in self._bodies

    def body(self, sha: bytes) -> bytes | None:
        return self._bodies.get(sha)

    def bodies(self) -> dict[bytes, bytes]:
        """A copy of every body by sha (the snapshot's ``scripts``)."""
        return dict(self._bodies)

    def eval_order(self) -> list[bytes]:
        """The EVAL-cached shas, least recently used first (the snapshot keeps the order)."""
        return list(self._evals)

    def used_by_eval(self, body: bytes) -> None:
        """An EVAL/EVALSHA ran ``body`` (it compiles): cache it, or make it the newest."""
        sha = script_sha(body)
        if sha in self._evals:
            del self._evals[sha]
            self._evals[sha] = None
            return
        if sha in self._bodies:  # loaded: never evicted, nothing to move
            return
        self._bodies[sha] = body
        self._evals[sha] = None
        self._eval_bytes += _cost(body)
        while len(self._evals) > EVAL_CACHE_SCRIPTS or self._eval_bytes > EVAL_CACHE_BYTES:
            oldest = next(iter(self._evals))
            del self._evals[oldest]
            self._eval_bytes -= _cost(self._bodies.pop(oldest))

    def load(self, body: bytes) -> bytes | ErrorReply:
        """SCRIPT LOAD of a body that compiles: its sha, or ``LOAD_OVER``."""
        sha = script_sha(body)
        if sha in self._bodies and sha not in self._evals:
            return sha
        if self._loaded_bytes + _cost(body) > LOADED_BYTES:
            return LOAD_OVER
        if sha in self._evals:
            del self._evals[sha]
            self._eval_bytes -= _cost(body)
        self._bodies[sha] = body
        self._loaded_bytes += _cost(body)
        return sha

    def flush(self) -> None:
        self._bodies = {}
        self._evals = {}
        self._eval_bytes = self._loaded_bytes = 0
