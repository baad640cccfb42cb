"""attack18: FLUSHALL in a script copied the whole state, the change feed included, each
time, charged only for the keys.

The script journal saves ``snapshot_state()`` before every FLUSHALL/FLUSHDB a script
calls, so that a failing script can be undone; the budget charges that copy
``ORDER_COST`` per key. But the copy also holds the change feed's retained records (up to
``--watch-retention-entries``, 100,000 by default), the session table (every recorded reply
packed again), the tombs and the script bodies, none of which is charged, and after the
first FLUSHALL the keyspace is empty, so each further one costs a ``redis.call``. Measured
here: a feed of 100,000 entries, keyspace emptied, then one
``EVAL "for i=1,900 do redis.call('FLUSHALL') end error('x')" 0`` in the default budget
form (1,000,000 units): 12-16 s of apply on every replica and +657 MB RSS, and the data is
put back, so it can be sent again at once. Live (3 nodes, fsync never, 60,000 SETs then
FLUSHALL, /tmp/a18/live_flush.py): the EVAL answered UNKNOWN after 15.7 s, the term went
from 1 to 4, a probe SET through a follower failed twice (UNKNOWN, leader changed), and
one node still did not answer INFO 3 s later.
"""

from __future__ import annotations

import tracemalloc

from raftkv.kv import KVStateMachine, encode_entry

T0 = 1_700_000_000_000
FEED = 20_000
FLUSHES = 400


def test_flushall_loop_in_a_script_does_not_copy_the_feed_each_time() -> None:
    kv = KVStateMachine()
    for i in range(FEED):  # a busy cluster's feed: one record per entry
        kv.apply(encode_entry([b"SET", b"k%d" % i, b"v"], T0))
    kv.apply(encode_entry([b"FLUSHALL"], T0))  # an empty keyspace: FLUSHALL charged ~0
    assert len(kv.feed) == FEED + 1
    body = b"for i=1,%d do redis.call('FLUSHALL') end return 1" % FLUSHES
    tracemalloc.start()
    try:
        kv.apply(encode_entry([b"budget", b"1000000", b"EVAL", body, b"0"], T0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One copy of the feed's records is 8 bytes each (160 KB here); 400 copies, 64 MB.
    # What the entry may hold should not grow with FLUSHALLs times the feed's length.
    assert peak < 16 * 1024 * 1024
