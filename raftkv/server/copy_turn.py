"""One large copy at a time from this node's clients: APPEND and SETRANGE of a big value.

Why (attack10): values are immutable bytes, so applying ``APPEND big y`` copies the whole
value on every replica (18-190 ms for 8 MiB on the shared 2-core machine), and a committed
batch of entries is applied in one go on the event loop. 300 pipelined 1-byte APPENDs to
an 8 MiB value (9.6 KB sent) held every node's loop 21-23 s: a leader change, and a probe
``SET`` on a follower took 24 s (``tests/bench/attack_append_pipeline.py``).

So such a command (also inside ``RAFT ONCE``, or an ``EXEC`` queuing one) is submitted
only once the previous one from any client of this node is answered: a batch holds at
most one per node (the leader's own clients' and one forwarded by each follower), and
other commands apply between them. Which values are large is judged on this node's state,
which may lag: it orders submissions only, and every replica still applies the same
entries. Scripts are bounded by their budget instead (README, Scripts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raftkv.kv import KVStateMachine

BIG_COPY = 1024 * 1024  # a value at least this long is a large copy (~1 ms or more)
_COPIES = frozenset({b"append", b"setrange"})
CANDIDATES = _COPIES | {b"exec", b"raft"}  # the names ``copies_big`` may answer True for


def copies_big(kv: KVStateMachine, name: bytes, args: list[bytes],
               queued: Iterable[Any] = ()) -> bool:
    """Whether ``args`` (``name`` its lowered command name) copies a value of at least
    ``BIG_COPY`` bytes by this node's state; ``queued``: the connection's MULTI queue,
    which an EXEC sends."""
    if name == b"raft":  # (every RAFT ONCE asks: its name first, before any copy)
        if len(args) < 5 or args[1].lower() != b"once":
            return False
        name = args[4].lower()
        if name not in _COPIES and name != b"exec":
            return False
        args = args[4:]
    if name in _COPIES:
        return len(args) >= 3 and kv.stored_len(args[1]) >= BIG_COPY
    if name == b"exec":
        return any(type(item) is list and item and copies_big(kv, item[0].lower(), item)
                   for item in queued)
    return False
