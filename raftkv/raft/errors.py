"""Errors the consensus core raises to its caller."""

from __future__ import annotations


class NotLeader(Exception):
    """This node cannot take the request: it is not the leader, or a leadership transfer is
    in progress. ``leader_id`` is the leader to redirect to, 0 when none is known (retry
    later; during a transfer it is 0 too)."""

    def __init__(self, leader_id: int, why: str = "not the leader") -> None:
        super().__init__(f"{why} (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id
