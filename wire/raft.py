"""Raft's records and peer messages (pure data; the codec is wire.record).

Node ids are positive integers; 0 means "none" (no vote, no leader). Every peer message
carries ``term``, ``src`` and ``dst``.
"""

from __future__ import annotations

import attrs

from wire.record import record

# Entry kinds.
NORMAL = 0  # a state-machine command
NOOP = 1  # appended by a new leader at the start of its term
CONFIG = 2  # data is an encoded ClusterConfig


@record(tag=10)
@attrs.frozen
class Entry:
    term: int
    index: int
    kind: int
    data: bytes


@record(tag=11)
@attrs.frozen
class HardState:
    term: int = 0
    vote: int = 0
    commit: int = 0


@record(tag=12)
@attrs.frozen
class Member:
    id: int
    peer_addr: str
    learner: bool = False


@record(tag=13)
@attrs.frozen
class ClusterConfig:
    members: tuple[Member, ...] = ()


@record(tag=14)
@attrs.frozen
class SnapshotMeta:
    index: int
    term: int
    config: ClusterConfig
