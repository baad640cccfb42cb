"""Published members in the state machine (raftkv.node.publish): the leader's
``publish_member id`` entries, the set they build, its place in snapshots, and the
configuration that forgets a removed id. Applying is total: hostile entries answer an
error, never raise, and change nothing.
"""

from __future__ import annotations

import msgpack
import pytest

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.errors import KVDecodeError
from raftkv.kv.machine import MAX_PUBLISHED
from raftkv.kv.state import KVState, decode_snapshot, encode_snapshot
from wire.reply import ErrorReply

T0 = 1_700_000_000_000


def publish(kv: KVStateMachine, *args: bytes) -> object:
    return kv.apply(encode_entry([b"publish_member", *args], T0))


def test_a_published_voter_is_kept_and_publishing_again_changes_nothing() -> None:
    kv = KVStateMachine()
    assert not kv.is_published(2)
    assert publish(kv, b"2") == 1
    assert publish(kv, b"2") == 0
    assert kv.is_published(2) and not kv.is_published(3)
    assert kv.published_members == {2}


@pytest.mark.parametrize("arg", [b"0", b"-1", b"02", b"+2", b" 2", b"2 ", b"x", b"",
                                 b"9223372036854775808", b"1" * 40, b"\xff"])
def test_a_hostile_id_is_an_error_and_changes_nothing(arg: bytes) -> None:
    kv = KVStateMachine()
    reply = publish(kv, arg)
    assert isinstance(reply, ErrorReply) and "member id" in reply.text
    assert kv.published_members == frozenset()


def test_wrong_arity_is_an_error() -> None:
    kv = KVStateMachine()
    assert isinstance(publish(kv), ErrorReply)
    assert isinstance(publish(kv, b"1", b"2"), ErrorReply)
    assert kv.published_members == frozenset()


def test_the_set_is_bounded() -> None:
    kv = KVStateMachine()
    for i in range(1, MAX_PUBLISHED + 1):
        assert publish(kv, b"%d" % i) == 1
    assert isinstance(publish(kv, b"%d" % (MAX_PUBLISHED + 1)), ErrorReply)
    assert publish(kv, b"1") == 0  # one already there is still answered


def test_a_removed_id_is_forgotten_and_starts_unpublished_when_added_again() -> None:
    kv = KVStateMachine()
    for i in (1, 2, 3):
        publish(kv, b"%d" % i)
    kv.keep_members([1, 2])  # RAFT REMOVENODE 3 applied
    assert kv.published_members == {1, 2}
    kv.keep_members([1, 2, 3])  # added back: not published until it serves again
    assert not kv.is_published(3)
    assert publish(kv, b"3") == 1


def test_the_set_is_in_snapshots_and_equal_states_agree() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"k", b"v"], T0))
    publish(kv, b"7")
    publish(kv, b"3")
    blob = kv.snapshot()
    restored = KVStateMachine()
    restored.restore(blob)
    assert restored.published_members == {3, 7}
    assert restored == kv and restored.digest() == kv.digest()
    other = KVStateMachine()
    other.restore(blob)
    other.keep_members([3])
    assert other != kv


def test_old_snapshots_decode_with_no_published_members() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"k", b"v"], T0))
    old = kv.snapshot()  # nothing published: an earlier release's format
    assert msgpack.unpackb(old)[0] < 6
    assert decode_snapshot(old).published == set()
    assert decode_snapshot(msgpack.packb([1, {b"k": b"v"}])).published == set()


@pytest.mark.parametrize("published", [[2, 1], [1, 1], [0], [-1], [2**63], ["1"], {1: 1},
                                       None, list(range(1, MAX_PUBLISHED + 2))])
def test_a_hostile_snapshot_set_is_refused(published: object) -> None:
    blob = encode_snapshot(KVState(data={b"k": b"v"}, published={1}))
    items = msgpack.unpackb(blob, strict_map_key=False)
    assert items[0] == 6 and items[-1] == [1]
    items[-1] = published
    with pytest.raises(KVDecodeError):
        decode_snapshot(msgpack.packb(items, use_bin_type=True))


def test_next_to_publish_is_the_leader_and_the_voters_that_acknowledged() -> None:
    kv = KVStateMachine()
    match = {2: 0, 3: 5}.get
    assert kv.next_to_publish(1, [1, 2, 3], lambda i: match(i, 0)) == 1
    publish(kv, b"1")
    assert kv.next_to_publish(1, [1, 2, 3], lambda i: match(i, 0)) == 3  # 2 never acked
    publish(kv, b"3")
    assert kv.next_to_publish(1, [1, 2, 3], lambda i: match(i, 0)) == 0
