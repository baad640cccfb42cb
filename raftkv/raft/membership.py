"""Cluster configuration as the core sees it: who votes, who only learns, what a quorum is.

Configurations live in the log (CONFIG entries whose data is an encoded ClusterConfig) and
take effect as soon as they are appended, committed or not (dissertation 4.1); a truncated
CONFIG entry therefore rolls the configuration back, which ``ConfigHistory`` supports.
"""

from __future__ import annotations

import attrs

from wire import record as wire_record
from wire.raft import ClusterConfig


def decode_config(data: bytes) -> ClusterConfig:
    """Decode a CONFIG entry's data (a ClusterConfig record)."""
    config = wire_record.decode(data)
    if not isinstance(config, ClusterConfig):
        raise ValueError(f"CONFIG entry holds a {type(config).__name__}, not a ClusterConfig")
    return config


def encode_config(config: ClusterConfig) -> bytes:
    return wire_record.encode(config)


def voters(config: ClusterConfig) -> frozenset[int]:
    return frozenset(m.id for m in config.members if not m.learner)


def learners(config: ClusterConfig) -> frozenset[int]:
    return frozenset(m.id for m in config.members if m.learner)


def quorum(n_voters: int) -> int:
    """Smallest majority of ``n_voters``."""
    return n_voters // 2 + 1


def committed_index(voter_ids: frozenset[int], match: dict[int, int]) -> int:
    """Largest index held by a majority of ``voter_ids`` (0 without voters)."""
    if not voter_ids:
        return 0
    acked = sorted((match.get(v, 0) for v in voter_ids), reverse=True)
    return acked[quorum(len(voter_ids)) - 1]


@attrs.define
class ConfigHistory:
    """Configurations by the log index that introduced them; the last one is in force.

    The first element is the base: the configuration at or before the commit index (it can
    never be truncated away)."""

    items: list[tuple[int, ClusterConfig]]
    # Of the configuration in force; kept up to date because quorum math runs per message.
    voters: frozenset[int] = attrs.field(init=False)
    learners: frozenset[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._changed()

    def _changed(self) -> None:
        self.voters = voters(self.current)
        self.learners = learners(self.current)

    @property
    def current(self) -> ClusterConfig:
        return self.items[-1][1]

    @property
    def index(self) -> int:
        """Log index of the configuration in force (the base's index for the base)."""
        return self.items[-1][0]

    def push(self, index: int, config: ClusterConfig) -> None:
        self.items.append((index, config))
        self._changed()

    def truncate_from(self, index: int) -> bool:
        """Forget configurations from entries at ``index`` or later; True if any were."""
        before = len(self.items)
        while len(self.items) > 1 and self.items[-1][0] >= index:
            self.items.pop()
        if len(self.items) == before:
            return False
        self._changed()
        return True

    def compact_to(self, commit: int) -> None:
        """Drop configurations superseded by a committed one (keeps the list short)."""
        while len(self.items) > 1 and self.items[1][0] <= commit:
            self.items.pop(0)
