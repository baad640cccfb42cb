"""attack13 (fixed: ``unbuilt_error``): ``Node.check``, the leader's only check of a follower's
forwarded entry, takes a ``once`` entry wrapping an internal command (``expired``,
``publish_member``, ``exec`` of ``once``s) that the client port never builds, and
``entry_cost`` does not look inside a ``once`` within an EXEC: forty ``once id n APPEND k
x`` in one EXEC pass the copy bound that forty plain APPENDs fail. Only a peer can send
these (the client port refuses internal commands inside RAFT ONCE and MULTI), so this is
defence in depth: every input is hostile, the forwarded one too. Both failed before the fix."""

from __future__ import annotations

import pytest

from raftkv.kv import encode_entry, encode_exec
from raftkv.node.node import Node
from raftkv.testing import idle_node

SID = b"4611686018427387905"
LIMIT = 4096


def node() -> Node:
    return idle_node(max_request_bytes=LIMIT, max_keys_per_command=64)


@pytest.mark.parametrize("inner", [[b"expired", b"k"], [b"publish_member", b"1"]])
def test_once_of_an_internal_command_is_refused(inner: list[bytes]) -> None:
    assert node().check([b"once", SID, b"7", *inner]) is not None


def test_appends_wrapped_in_once_inside_exec_count_toward_the_copy_bound() -> None:
    n = node()
    n.kv.apply(encode_entry([b"SET", b"k", b"v" * 4000], 1_700_000_000_000))
    plain = [[b"APPEND", b"k", b"x"] for _ in range(40)]
    wrapped = [[b"once", SID, b"%d" % (i + 1), b"APPEND", b"k", b"x"] for i in range(40)]
    assert n.check([b"EXEC", encode_exec([], plain)]) is not None  # (holds)
    assert n.check([b"EXEC", encode_exec([], wrapped)]) is not None
