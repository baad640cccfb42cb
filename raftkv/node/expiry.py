"""Active expiry: the leader proposes the deletion of keys whose deadline has passed.

Reads already hide such keys (by the reading node's clock) and writes delete those they
meet, so this task only bounds memory and makes the removal visible in every replica's
state (and in snapshots) even on a node whose clock is behind. Every ``PERIOD`` seconds,
while this node leads, it proposes ``EXPIRED key...`` entries of at most ``BATCH`` keys due
by its clock, one at a time (the next once the previous is answered), until a batch comes
out short. Applying one deletes only the keys whose deadline is at or before the entry's
own stamp, so nothing goes before its deadline. One batch in flight bounds what expiry
adds to the log: at most one entry per commit round trip.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from raftkv.kv import KVStateMachine
from raftkv.node.clock import LeaderClock
from raftkv.node.pending import Pending
from raftkv.raft import RaftCore, Role

PERIOD = 0.1
BATCH = 500


async def active_expiry(core: RaftCore, kv: KVStateMachine, clock: LeaderClock,
                        submit: Callable[[list[bytes]], Pending]) -> None:
    """Run for the node's lifetime (started in its nursery); ``submit`` runs a command."""
    while True:
        await trio.sleep(PERIOD)
        while core.role is Role.LEADER:
            keys = kv.expired_keys(clock.now(), BATCH)
            if not keys:
                break
            # Answered by apply, or failed by the sweeper at the request timeout.
            reply = await submit([b"EXPIRED", *keys]).wait()
            if len(keys) < BATCH or not isinstance(reply, int):
                break
