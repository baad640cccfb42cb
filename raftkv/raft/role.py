"""The four roles a node can be in."""

from __future__ import annotations

import enum


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"  # asking for pre-votes; term not bumped yet
    CANDIDATE = "candidate"
    LEADER = "leader"
