"""Liveness and readiness of a node, as ``/livez`` and ``/readyz`` report them.

Liveness: the event loop turns and the ticker ticks (a check that waits for the next tick,
not a constant): a wedged loop or a dead ticker fails it, a partitioned node does not.

Readiness (may a load balancer send clients here?): 200 only when

- this node is the leader: with CheckQuorum a leader that heard from no quorum within an
  election timeout steps down, so still leading means a quorum answered in the last
  window; or it is a follower/learner that heard from its leader within the last election
  timeout (the same lease the core uses to ignore disruptive candidates);
- and it has applied within ``ready_max_lag`` entries of its commit index.

Anything else (no leader known, candidate, stopping, joining, removed, applying a
backlog) is not ready, with a short reason. A node cut off from both peers of a 3-node
cluster is not ready within about two election timeouts: one without a heartbeat, then
PreVote forgets the leader.
"""

from __future__ import annotations

import trio

from raftkv.node.node import Node
from raftkv.raft import Role


def readiness(node: Node) -> tuple[bool, str]:
    """(ready, reason): the reason is one short line either way."""
    if not hasattr(node, "core"):
        return False, "starting"
    if node.stopping:
        return False, "shutting down"
    role = node.membership.role()
    if role in ("joining", "removed"):
        return False, f"node is {role}"
    core = node.core
    s = node.settings
    if core.role is Role.LEADER:
        why = "leader with a quorum in its CheckQuorum window"
    elif core.role is not Role.FOLLOWER:
        return False, f"{role}: no leader"
    elif not core.leader_id:
        return False, "no leader known"
    elif core.election_elapsed >= s.election_ticks:
        ms = round(core.election_elapsed * s.tick_ms)
        return False, f"no word from leader {core.leader_id} for {ms} ms"
    else:
        why = f"following leader {core.leader_id}"
    behind = core.commit_index - node.applied
    if behind > s.ready_max_lag:
        return False, f"applying: {behind} entries behind commit (limit {s.ready_max_lag})"
    return True, why


# A tick this recent proves the ticker alive, and the loop turns (it runs the caller): the
# probe is answered at once, not after the next tick (raftkv.server.http answers it at accept).
TICKED_RECENTLY = 0.5


def liveness_now(node: Node) -> tuple[bool, str] | None:
    """``liveness`` without waiting, if the ticker ticked within TICKED_RECENTLY; else None
    (the caller waits for the next tick)."""
    tick = node.ticked_within(TICKED_RECENTLY)
    return None if tick is None else (True, f"ok (tick {tick})")


async def liveness(node: Node, limit: float = 2.0) -> tuple[bool, str]:
    """Wait (through the event loop) for the ticker's next tick, up to ``limit`` seconds."""
    with trio.move_on_after(limit):
        tick = await node.next_tick()
        return True, f"ok (tick {tick})"
    return False, f"the ticker did not tick within {limit} s"
