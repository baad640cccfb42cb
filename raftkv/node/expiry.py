"""Active expiry: the leader proposes the deletion of keys whose deadline has passed.

Reads already hide such keys (by the reading node's clock) and writes delete those they
meet, so this task only bounds memory and makes the removal visible in every replica's
state (and in snapshots) even on a node whose clock is behind. Every ``PERIOD`` seconds,
while this node leads, it proposes ``EXPIRED key...`` entries of at most ``BATCH`` keys due
by its clock, one at a time (the next once the previous is answered), until a batch comes
out short. Applying one deletes only the keys whose deadline is at or before the entry's
own stamp, so nothing goes before its deadline. One batch in flight bounds what expiry
adds to the log: at most one entry per commit round trip.

A batch is also bounded in bytes: like any command it must fit --max-request-bytes, or the
node refuses it before proposing (attack10: two keys with 4.5 MiB names and one deadline
made every batch a 9 MB ``EXPIRED``, refused each time, and no key with a TTL was ever
deleted again, live). A key too long to go alone (a script may write an 8 MiB key name,
a few bytes over the bound once framed) is left to the reads that hide it and the writes
that meet it: it leaves the leader's candidates for good (attack11: kept there, 500 of them
due first, which a few scripts write, filled every batch, and expiry stopped again).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from raftkv.kv import KVStateMachine
from raftkv.node.clock import LeaderClock
from raftkv.node.pending import Pending
from raftkv.node.sizes import request_size
from raftkv.raft import RaftCore, Role

PERIOD = 0.1
BATCH = 500
COMMAND = b"EXPIRED"


def fitting(keys: list[bytes], limit: int) -> tuple[list[bytes], bool]:
    """The ``EXPIRED`` arguments for ``keys`` (earliest first) within ``limit`` bytes (as
    ``request_size`` counts): a prefix of them, without any key too long to go even alone;
    and whether a key that fits alone was left for the next batch."""
    batch = [COMMAND]
    framed = request_size(batch) - 4  # the arguments' bytes, without the "*N\r\n" header
    for key in keys:
        grown = framed + request_size([key]) - 4
        if grown + len(b"*%d\r\n" % (len(batch) + 1)) <= limit:
            batch.append(key)
            framed = grown
        elif request_size([COMMAND, key]) <= limit:
            return batch, True  # the rest next time
    return batch, False


async def active_expiry(core: RaftCore, kv: KVStateMachine, clock: LeaderClock,
                        submit: Callable[[list[bytes]], Pending],
                        limit: int) -> None:
    """Run for the node's lifetime (started in its nursery); ``submit`` runs a command;
    ``limit`` is --max-request-bytes."""
    def alone(key: bytes) -> bool:  # one EXPIRED can carry it (else reads hide it)
        return len(key) + 64 <= limit or request_size([COMMAND, key]) <= limit

    while True:
        await trio.sleep(PERIOD)
        while core.role is Role.LEADER:
            keys = kv.expired_keys(clock.now(), BATCH, alone)
            batch, cut = fitting(keys, limit)
            if len(batch) == 1:
                break
            # Answered by apply, or failed by the sweeper at the request timeout.
            reply = await submit(batch).wait()
            if (len(keys) < BATCH and not cut) or not isinstance(reply, int):
                break
