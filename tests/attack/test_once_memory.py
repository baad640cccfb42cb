"""Over --maxmemory, reads, DEL, FLUSHALL, EXPIRE/PERSIST must still work (README,
Limits): they are how an operator frees memory. The trio client and raftkv-cli send every
write of a session as ``RAFT ONCE id seq CMD``, and the guard judged ``once`` as a write
that grows memory, so ``DEL`` and ``FLUSHALL`` from raftkv-cli answered ``-OOM`` (attack3)."""

from __future__ import annotations

import pytest

from raftkv.node.memory import MemoryGuard, grows_memory

ONCE = [b"once", b"77", b"3"]


@pytest.mark.parametrize("inner", [[b"DEL", b"k"], [b"FLUSHALL"], [b"unlink", b"a", b"b"],
                                   [b"PERSIST", b"k"], [b"EXPIRE", b"k", b"10"]])
def test_shrinking_writes_inside_once_pass_the_memory_guard(inner: list[bytes]) -> None:
    assert not grows_memory(inner)
    guard = MemoryGuard(100, measure=lambda: 1000)
    assert guard.refuse([*ONCE, *inner]) is None, inner


def test_growing_writes_inside_once_are_still_refused() -> None:
    guard = MemoryGuard(100, measure=lambda: 1000)
    assert guard.refuse([*ONCE, b"SET", b"k", b"v"]) is not None
    assert guard.refuse([b"session_open", b"1000"]) is not None
