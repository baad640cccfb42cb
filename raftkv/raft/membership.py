"""Cluster configuration as the core sees it: who votes, who only learns, what a quorum is.

Configurations live in the log (CONFIG entries whose data is an encoded ClusterConfig) and
take effect as soon as they are appended, committed or not (dissertation 4.1); a truncated
CONFIG entry therefore rolls the configuration back, which ``ConfigHistory`` supports.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from wire import record as wire_record
from wire.raft import ClusterConfig, Member


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
    # Of the configuration in force; kept up to date because quorum math runs per message,
    # and ``current`` is asked on every client command (whether this node was removed):
    # an attribute, not a property's call (~60 ns).
    current: ClusterConfig = attrs.field(init=False)
    voters: frozenset[int] = attrs.field(init=False)
    learners: frozenset[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._changed()

    def _changed(self) -> None:
        self.current = current = self.items[-1][1]
        self.voters = voters(current)
        self.learners = learners(current)

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

    def compact_to(self, commit: int) -> bool:
        """Drop configurations superseded by a committed one (keeps the list short); True
        if any were."""
        before = len(self.items)
        while len(self.items) > 1 and self.items[1][0] <= commit:
            self.items.pop(0)
        return len(self.items) != before

    def known_members(self) -> dict[int, Member]:
        """Members of the configuration in force plus those of the earlier ones not yet
        superseded by a committed change: a removed server keeps receiving the log until
        its removal commits, so it normally learns that it was removed."""
        out: dict[int, Member] = {}
        for _, config in self.items:
            out.update((m.id, m) for m in config.members)
        return out


# -- membership changes: one server at a time (dissertation 4.1, 4.2.1) -----------------------


class MembershipError(ValueError):
    """A membership change that is not allowed; the message says why."""


class ConfigChangePending(MembershipError):
    """Not now: another change is still uncommitted, the leader is new, or the learner
    is still catching up. Retrying later can succeed."""


def find_member(config: ClusterConfig, node_id: int) -> Member | None:
    for m in config.members:
        if m.id == node_id:
            return m
    return None


def check_peer_addr_free(members: Iterable[tuple[int, str]], peer_addr: str) -> None:
    """MembershipError if one of ``members`` (id, peer address) already has ``peer_addr``:
    two members at one address are one process, so one of them is a voter nobody reaches.
    The one check for ``RAFT ADDNODE`` and the ``--cluster`` list (attack21)."""
    for node_id, addr in members:
        if addr == peer_addr:
            raise MembershipError(f"peer address {peer_addr} is already node {node_id}'s")


def _sorted(members: list[Member]) -> ClusterConfig:
    return ClusterConfig(tuple(sorted(members, key=lambda m: m.id)))


def with_learner(
    config: ClusterConfig, node_id: int, peer_addr: str, promote: bool
) -> ClusterConfig:
    """``config`` plus a new learner. New servers always start as learners (4.2.1): an
    empty voter would count toward the quorum while it catches up."""
    if node_id < 1:
        raise MembershipError("node ids are integers >= 1")
    if find_member(config, node_id) is not None:
        raise MembershipError(f"node {node_id} is already a member")
    check_peer_addr_free(((m.id, m.peer_addr) for m in config.members), peer_addr)
    return _sorted([*config.members, Member(node_id, peer_addr, True, promote)])


def with_promoted(config: ClusterConfig, node_id: int) -> ClusterConfig:
    """``config`` with learner ``node_id`` made a voter."""
    m = find_member(config, node_id)
    if m is None:
        raise MembershipError(f"node {node_id} is not a member")
    if not m.learner:
        raise MembershipError(f"node {node_id} is already a voter")
    rest = [x for x in config.members if x.id != node_id]
    return _sorted([*rest, Member(node_id, m.peer_addr, False, False)])


def without_member(config: ClusterConfig, node_id: int) -> ClusterConfig:
    """``config`` without ``node_id``; the last voter cannot go (nobody could commit)."""
    m = find_member(config, node_id)
    if m is None:
        raise MembershipError(f"node {node_id} is not a member")
    if not m.learner and voters(config) == {node_id}:
        raise MembershipError(f"node {node_id} is the last voter; it cannot be removed")
    return _sorted([x for x in config.members if x.id != node_id])


def check_single_change(old: ClusterConfig, new: ClusterConfig) -> None:
    """At most one voter added or removed: any two majorities of ``old`` and ``new`` then
    overlap, so no joint consensus is needed (4.2)."""
    changed = voters(old) ^ voters(new)
    if len(changed) > 1:
        raise MembershipError(
            f"voters {sorted(changed)} would change at once; change one voter at a time"
        )
    if not voters(new):
        raise MembershipError("a configuration needs at least one voter")


def check_removal_keeps_quorum(node_id: int, new: ClusterConfig, heard: frozenset[int]) -> None:
    """Refuse (ConfigChangePending: it can work once they are back) a removal that leaves
    fewer voters the leader hears from (``heard``) than a quorum of the voters left: the
    new configuration is in force at once, so the change itself could not commit, the
    leader would step down, and a cluster that tolerated a failure would stop (attack21;
    etcd: "re-configuration failed due to not enough started members"). Removing the dead
    member instead is what removal is for, and passes."""
    rest = voters(new)
    live = rest & heard
    need = quorum(len(rest))
    if len(live) >= need:
        return
    silent = ",".join(str(v) for v in sorted(rest - heard))
    raise ConfigChangePending(
        f"removing node {node_id} would leave voters {_ids(rest)}, of which the leader "
        f"hears from {len(live)} (not from {silent}), and {need} are needed to commit: the "
        f"cluster would stop. Bring {silent} back first, or remove an unreachable member "
        "(not enough started members)"
    )


def _ids(ids: frozenset[int]) -> str:
    return ",".join(str(i) for i in sorted(ids))
