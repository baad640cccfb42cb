"""The client library retries blind writes after an unknown outcome (attack2 branch,
round 2). Fails today.

``client.safety.classify`` calls ``SET k v`` (and ``DEL``, ``MSET``, ``FLUSHALL``)
idempotent, so after ``-UNKNOWN`` or a connection lost after sending, the client sends it
again. "The state is the same" holds only without other writers. With one, this history
happens: A's ``SET k v`` is applied but A sees ``-UNKNOWN`` (the leader changed before it
answered); C reads ``v``; B's ``SET k w`` is applied and acknowledged; C reads ``w``; A's
retry applies ``SET k v`` again; C reads ``v``. C saw v, w, v with one SET of v: no
linearization exists (A's SET would have to take effect both before and after B's), and
B's acknowledged write is overwritten by an operation that had already taken effect.
etcd's client retries a Put only when the request provably never reached a server
(``isSafeRetryMutableRPC``); a retry after an unknown outcome needs the request to carry
an identity the server deduplicates (a client id and sequence number, as in Raft's
thesis §6.3), or must be left to the caller.
"""

from __future__ import annotations

import pytest

from client.safety import Safety, classify


@pytest.mark.parametrize("args", [
    [b"SET", b"k", b"v"],
    [b"DEL", b"k"],
    [b"MSET", b"k", b"v"],
])
def test_blind_writes_are_not_retried_after_an_unknown_outcome(args: list[bytes]) -> None:
    assert classify(args) is not Safety.IDEMPOTENT
