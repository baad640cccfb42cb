"""Every wait in the runtime has a deadline: the sweeper answers what is overdue.

Issue 12: a read confirmed by a quorum but waiting for this node to apply up to its read
index (``_read_wait``) was skipped by the sweeper, so it could wait forever (a node whose
apply is stuck behind, say)."""

from __future__ import annotations

from raftkv.kv import encode_command
from raftkv.node.node import APPLY_TIMEOUT, Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from wire.raft import NORMAL, Entry


def node() -> Node:
    return Node(NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                             cluster={1: "127.0.0.1:2"}, data_dir="/nonexistent"))


def test_a_read_waiting_for_apply_is_answered_at_its_deadline() -> None:
    n = node()
    late, early = Pending(), Pending()
    n._reads[b"a"] = (late, [b"GET", b"k"], 10.0)
    n._reads[b"b"] = (early, [b"GET", b"k"], 20.0)
    n._on_read_state(b"a", 5)  # confirmed at index 5; nothing applied yet
    n._on_read_state(b"b", 5)
    assert not late.done and not early.done
    n._sweep(9.9)
    assert not late.done
    n._sweep(10.0)
    assert late.done and late.value is APPLY_TIMEOUT
    assert not early.done  # the other read keeps waiting, and is served once applied
    n._apply([Entry(1, i, NORMAL, encode_command([b"SET", b"k", b"%d" % i]))
              for i in range(1, 6)])
    assert early.done and early.value == b"5"
    assert n._read_wait == []
