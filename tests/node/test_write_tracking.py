"""The runtime's table of proposals waiting for their entry to apply."""

from __future__ import annotations

import types

from raftkv.node.node import LOST, Node
from raftkv.node.pending import Pending


def test_a_reused_index_answers_the_older_write_lost() -> None:
    # A node proposed at index 5 in term 2, lost leadership and that entry, and leads
    # again in term 4, proposing at index 5 once more: the first client must not hang.
    node = types.SimpleNamespace(_writes={}, stats={"proposals_failed": 0})
    node._fail_write = types.MethodType(Node._fail_write, node)
    old, new = Pending(), Pending()
    Node._track_write(node, 5, 2, old, 10.0)  # type: ignore[arg-type]
    Node._track_write(node, 5, 4, new, 11.0)  # type: ignore[arg-type]
    assert old.done and old.value is LOST
    assert not new.done and node._writes == {5: (4, new, 11.0)}
    assert node.stats["proposals_failed"] == 1  # raftkv_proposals_failed_total
