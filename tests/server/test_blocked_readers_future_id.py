"""attack13: a blocked XREAD of the whole feed at an id past every change (Redis accepts one)
with COUNT 1 is counted as "full" after one applied change (streams.py: ``full = count`` for
a whole-feed reader), so every applied batch starts a pass at once (watch5's early pass),
though its read finds nothing and it stays blocked: the window (10 ms a reader waiting, up
to 1 s) is defeated by readers that are never served. Live, 200 such readers on a follower
with a paced writer (5 pipelined SETs every 5 ms to the leader) raised the follower's CPU
per SET 1.32x (1.28-1.43, 3 paired rounds) against the same readers with COUNT 1000, and
1.43x (1.38-1.52) against a16fd17's tree with COUNT 1 (a16fd17: COUNT 1 / COUNT 1000 0.98);
900 readers (the limit is 1,000): 2.22x (2.06-2.39, 2 rounds) against both, 532 against 240
us a SET. Failed before the fix: 10 passes in 0.1 s, not 1-2. Fixed: a pass starts early
only once EARLY_PASS_CHANGES changes were applied, whatever the readers' COUNT."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.feed import ChangeFeed
from raftkv.server.acl import AccessControl
from raftkv.server.blocked_readers import BlockedReaders
from raftkv.server.connection import Connection
from raftkv.server.streams import FEED, cmd_xread

T0 = 1_700_000_000_000


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class _Port:
    def __init__(self, blocked: BlockedReaders) -> None:
        self.acl = AccessControl.configure()
        self.blocked = blocked


class _Node:
    def __init__(self, kv: KVStateMachine, spawn) -> None:  # type: ignore[no-untyped-def]
        self.kv = kv
        self.start_background = spawn
        self.removed = False


async def test_readers_past_the_feeds_top_with_count_1_keep_the_window(
        mock_clock: trio.testing.MockClock) -> None:
    kv = KVStateMachine(feed=ChangeFeed())
    blocked = BlockedReaders(limit=10, window=0.05)  # 50 ms at least between passes
    conn = Connection(1, "127.0.0.1:1", user="default", server=_Port(blocked))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        node = _Node(kv, nursery.start_soon)
        waiting = [cmd_xread(node, conn, [b"XREAD", b"COUNT", b"1", b"BLOCK", b"0",
                                          b"STREAMS", FEED, b"999999999-0"])
                   for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        start = blocked.passes
        for index in range(1, 11):  # ten batches, 10 ms apart: 0.1 s, two windows
            kv.apply(encode_entry([b"SET", b"k%d" % index, b"v"], T0), index=index)
            blocked.changes_applied(kv.last_changes)
            await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked()
        assert not any(p.done for p in waiting)  # (nothing for them: still blocked)
        assert blocked.passes - start <= 3, f"{blocked.passes - start} passes in 0.1 s"
        nursery.cancel_scope.cancel()
