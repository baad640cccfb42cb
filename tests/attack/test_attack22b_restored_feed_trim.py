"""Loading a snapshot never trims the change feed: every replica at one applied index
holds, serves and snapshots the same tail. A replica loads snapshots whose index is past
its feed's last NORMAL entry (a new leader's NOOP or a CONFIG entry: neither reaches the
state machine, so the snapshotting replica's feed never saw that index), and
``restored_at`` raises ``last_index`` to it. A trim deferred to the readers (perffollow
6d59d04, attack22b; not merged) then settled against that index and dropped changes the
peer that took the snapshot still served: the two replicas answered XRANGE/XREAD
differently and encoded different snapshots at the same index. Right (main, and Redis's
replicas alike): the feed is exactly the one the snapshot carried until the next NORMAL
entry appends, which trims every replica alike."""

from __future__ import annotations

from raftkv.kv import KVStateMachine
from raftkv.kv.codec import encode_entry
from raftkv.kv.feed import ChangeFeed, Compacted

RETAIN = 3  # --watch-retention-entries


def _peer() -> KVStateMachine:
    return KVStateMachine(feed=ChangeFeed(RETAIN, 64 * 1024 * 1024))


def _answer(kv: KVStateMachine) -> object:
    """What XREAD from id 1-0 and XRANGE - + would answer."""
    try:
        read: object = [tuple(c) for c in kv.feed.after((1, 0), 100)]
    except Compacted as exc:
        read = ("compacted", exc.oldest, exc.floor)
    return read, [tuple(c) for c in kv.feed.between((0, 0), (2**63, 0), 100)]


def test_a_replica_restored_at_a_noop_index_holds_the_same_feed_as_its_peer() -> None:
    leader = _peer()
    for n in range(1, 5):  # NORMAL entries 1..4 (SETs); 5 and 6: NOOP/CONFIG entries
        leader.apply(encode_entry([b"SET", b"k%d" % n, b"v"], n), index=n)
    snapshot_index = 6  # the leader snapshots at its applied index, 6
    blob = leader.snapshot()

    follower = _peer()  # installs that snapshot (or restarts from it)
    follower.restore(blob)
    follower.feed.restored_at(snapshot_index)

    assert _answer(follower) == _answer(leader)
    assert len(follower.feed) == len(leader.feed) == RETAIN
    # The next snapshot at the same index is byte for byte the peer's.
    assert follower.snapshot() == leader.snapshot()
