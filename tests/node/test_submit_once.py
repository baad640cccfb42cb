"""``Node.submit_once``: a session's write checked with its wrapped command's spec (looked
up once by the client port) answers exactly what ``Node.check`` of the same ``once`` entry
answers, for every refusal, before anything is proposed (issue 19: the leader validated
the entry a second time, looking the command up again)."""

from __future__ import annotations

import pytest

from raftkv.kv import encode_exec, lookup
from raftkv.node.memory import MemoryGuard
from raftkv.node.node import Node
from raftkv.testing import idle_node

SID = b"4611686018427387905"
LIMIT = 4096  # --max-request-bytes here


def node() -> Node:
    return idle_node(max_request_bytes=LIMIT, max_keys_per_command=8)


def once(*inner: bytes, sid: bytes = SID, seq: bytes = b"7") -> list[bytes]:
    return [b"once", sid, seq, *inner]


REFUSED = [
    once(b"INCR", b"k", sid=b"x"),  # not a session id
    once(b"INCR", b"k", sid=b"0"),
    once(b"INCR", b"k", seq=b"0"),  # not a sequence number
    once(b"INCR", b"k", seq=b"007"),
    once(b"INCR", b"k", seq=b"-1"),
    once(b"NOSUCH", b"k"),  # unknown
    once(b"once", SID, b"1", b"INCR", b"k"),  # a session command
    once(b"session_close", SID),
    once(b"GET", b"k"),  # a read
    once(b"INCR"),  # arity
    once(b"INCR", b"k", b"j"),
    once(b"SET", b"k", b"v", b"EX", b"soon"),  # syntax
    once(b"INCRBY", b"k", b"one"),
    once(b"DEL", *[b"k%d" % i for i in range(9)]),  # --max-keys-per-command
    once(b"EXEC", encode_exec([], [[b"SET", b"k%d" % i, b"v"] for i in range(9)])),
    once(b"SET", b"k", b"v" * LIMIT),  # --max-request-bytes
    once(b"SETRANGE", b"k", b"%d" % LIMIT, b"v"),  # grows past it
]


@pytest.mark.parametrize("entry", REFUSED, ids=lambda e: b" ".join(e[1:5])[:60].decode("latin-1"))
def test_every_refusal_of_check_is_submit_once_s(entry: list[bytes]) -> None:
    n = node()
    expected = n.check(entry)
    assert expected is not None
    got = n.submit_once(entry, lookup(entry[3]))
    assert got.done and got.value == expected


def test_over_maxmemory_a_growing_write_is_refused_and_a_shrinking_one_is_not() -> None:
    n = node()
    n.memory = MemoryGuard(1, measure=lambda: 2)
    grow = once(b"INCR", b"k")
    assert n.check(grow) is not None
    assert n.submit_once(grow, lookup(b"INCR")).value == n.check(grow)
    shrink = once(b"DEL", b"k")
    assert n.check(shrink) is None
    n.stopping = True  # (no core to propose to: this answer comes after every check)
    assert n.submit_once(shrink, lookup(b"DEL")).value == n.submit(shrink).value
