"""Active expiry: the leader proposes the deletion of keys whose deadline has passed.

Reads already hide such keys (by the reading node's clock) and writes delete those they
meet, so this task only bounds memory and makes the removal visible in every replica's
state (and in snapshots) even on a node whose clock is behind. Every ``PERIOD`` seconds,
if this node leads and its previous batch was answered, it proposes one ``EXPIRED key...``
entry with at most ``BATCH`` keys due by its clock; applying it deletes only the keys whose
deadline is at or before the entry's own stamp, so nothing goes before its deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from raftkv.node.pending import Pending
from raftkv.raft import Role

if TYPE_CHECKING:
    from raftkv.node.node import Node

PERIOD = 0.1
BATCH = 500


async def active_expiry(node: Node) -> None:
    """Run for the node's lifetime (started in its nursery)."""
    in_flight: Pending | None = None
    while True:
        await trio.sleep(PERIOD)
        if in_flight is not None and not in_flight.done:
            continue
        in_flight = None
        if node.core.role is not Role.LEADER:
            continue
        keys = node.kv.expired_keys(node.clock.now(), BATCH)
        if keys:
            in_flight = node.submit([b"EXPIRED", *keys])
