"""attack18: a failing script's undone writes were still in the change feed.

A script that fails (an error it does not catch, the budget, the memory cap) leaves no
write behind: ``_Journal`` puts every key back. But the change recorder had already noted
each write, so the feed (``__raftkv:changes``, what ``XREAD`` and ``kv.watch`` serve, and
what keyspace notifications are made from) told every watcher ``set k v`` at that entry's
revision while ``k`` still held its old value on every replica: a consumer that mirrors
the store from the feed diverges, and a watcher waiting for ``k`` to change wakes on a
write that never happened. Over the wire (one-node leader, redis-py): after ``SET k old``,
``EVAL "redis.call('SET', KEYS[1], 'never'); redis.call('FLUSHALL'); error('undone')" 1 k``
answered its error, ``GET k`` was ``old`` and ``DBSIZE`` 1, but ``XRANGE __raftkv:changes``
ended with ``3-0 set k never`` and ``3-1 flushall``: a mirror built from the feed is empty.
"""

from __future__ import annotations

import pytest

from raftkv.kv import KVStateMachine, encode_entry

T0 = 1_700_000_000_000

FAILING = [
    b"redis.call('SET', KEYS[1], 'v'); error('boom')",
    b"redis.call('SET', KEYS[1], 'v'); redis.call('EXPIRE', KEYS[1], 100); "
    b"return redis.call('INCR', KEYS[1])",  # INCR of 'v' fails: an uncaught error
    b"redis.call('DEL', KEYS[1]); while true do end",  # over the budget
]


@pytest.mark.parametrize("body", FAILING)
def test_failed_script_leaves_nothing_in_the_change_feed(body: bytes) -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"k", b"old"], T0))
    before = kv.feed.last
    reply = kv.apply(encode_entry([b"EVAL", body, b"1", b"k"], T0))
    assert type(reply).__name__ == "ErrorReply"
    assert kv.read([b"GET", b"k"]) == b"old"  # the journal undid the writes
    assert kv.last_changes == []  # ... so the entry changed nothing
    assert kv.feed.last == before
