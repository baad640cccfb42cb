"""Every wait in the runtime has a deadline: the sweeper answers what is overdue.

Issue 12: a read confirmed by a quorum but waiting for this node to apply up to its read
index (``_read_wait``) was skipped by the sweeper, so it could wait forever (a node whose
apply is stuck behind, say)."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.node.apply import Applier
from raftkv.node.clock import LeaderClock
from raftkv.node.pending import Pending
from raftkv.node.requests import APPLY_TIMEOUT, ReadBatch, RequestTracker
from wire.raft import NORMAL, Entry


def applier() -> Applier:
    stats = {"proposals_failed": 0, "applied": 0}
    return Applier(KVStateMachine(), LeaderClock(), RequestTracker(stats), stats,
                   lambda *args: None)


def test_a_read_waiting_for_apply_is_answered_at_its_deadline() -> None:
    a = applier()
    requests = a.requests
    late, early = Pending(), Pending()
    for ctx, pending, deadline in ((b"a", late, 10.0), (b"b", early, 20.0)):
        batch = ReadBatch(deadline)
        batch.reads.append(([b"GET", b"k"], pending, deadline))
        requests.track_read(ctx, batch)
    # confirmed at index 5; nothing applied yet
    assert requests.read_confirmed(b"a", 5, a.applied) is None
    assert requests.read_confirmed(b"b", 5, a.applied) is None
    assert not late.done and not early.done
    requests.sweep(9.9)
    assert not late.done
    requests.sweep(10.0)
    assert late.done and late.value is APPLY_TIMEOUT
    assert not early.done  # the other read keeps waiting, and is served once applied
    a.apply([Entry(1, i, NORMAL, encode_entry([b"SET", b"k", b"%d" % i]))
             for i in range(1, 6)])
    assert early.done and early.value == b"5"
    assert requests.read_wait == []
