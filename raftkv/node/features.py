"""The leader learns each member's feature level and records it in the log; any node
answers what its own level is (raftkv.kv.features holds the rule and the gate).

- **Asking** (``LevelLearner``, the leader): ``RAFT FEATURES`` sent as a ``ForwardRequest``
  over the authenticated peer port, to every member of the configuration (voters and
  learners) when its term starts and whenever that member's link connects again (a
  restart: an upgrade or a downgrade) or is a new link (the id was removed and added
  again: maybe another node), and again while a member has not answered. A member that
  leaves the latest configuration is forgotten at once. A
  node of an earlier release answers its usage error (``OLD_RELEASE``, as for
  raftkv.node.publish's probe): level 0. Why a ``ForwardRequest``: the peer codec is
  strict (fixed arity, known tags), nothing new can ride in Hello or Raft messages.
- **Recording**: when a learned level differs from the applied one (unknown counts 0), the
  leader proposes ``member_level id level``, one at a time, the lowest levels first (a
  member new to a configuration is recorded at 0 by the configuration itself, in
  ``KVStateMachine.keep_members``); members whose configuration
  has not applied yet wait (an applied configuration forgets the ids it does not list).
  Levels are recorded only once every member is known at level 1 or more, or to lower
  one: a state holding levels is a snapshot of version 7, which the previous release
  cannot read.
- **The gate** (``Node.entry_data``): a form of level L is written only while every
  member of the applied configuration and of the leader's latest one (a member being
  added receives entries before its configuration applies) is recorded at L or more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from raftkv.kv import KVStateMachine
from raftkv.kv.commands import MAX_LEVEL
from raftkv.kv.features import MEMBER_LEVEL
from raftkv.log import event
from raftkv.node.pending import Pending
from raftkv.node.publish import OLD_RELEASE
from raftkv.node.requests import RequestTracker
from raftkv.node.transport import PeerTransport
from raftkv.raft import RaftCore, Role
from wire.raft import ForwardRequest
from wire.reply import ErrorReply

log = logging.getLogger("raftkv.node")

PROBE = (b"RAFT", b"FEATURES")
PERIOD = 0.2  # seconds between the leader's looks at its members' links and levels
ASK_TIMEOUT = 2.0  # seconds one round of questions waits for answers


def answer_features(args: Sequence[bytes], level: int) -> int | None:
    """This node's level if ``args`` is ``RAFT FEATURES`` (any node answers), else None."""
    if (len(args) != 2 or len(args[0]) != 4 or args[0].upper() != PROBE[0]
            or args[1].upper() != PROBE[1]):
        return None
    return level


def classify_level(reply: Any) -> int | None:
    """The level a member's reply says, or None (no answer, or one not understood)."""
    if type(reply) is int and 0 <= reply < MAX_LEVEL:
        return reply
    if isinstance(reply, ErrorReply) and reply.text.startswith(OLD_RELEASE):
        return 0  # a release before the gate: it reads level-0 forms only
    return None


def gate_level(levels: dict[int, int], *configs: Iterable[int]) -> int:
    """The lowest recorded level over the members of every one of ``configs``."""
    ids = {i for config in configs for i in config}
    return min((levels.get(i, 0) for i in ids), default=0)


class LevelLearner:
    """The leader's side: ask members their level, record what changed (module docstring)."""

    def __init__(self, node_id: int, level: int, core: RaftCore, kv: KVStateMachine,
                 transport: PeerTransport, requests: RequestTracker,
                 submit: Callable[[list[bytes]], Pending],
                 applied_members: Callable[[], Iterable[int]]) -> None:
        self.id, self.level = node_id, level
        self.core, self.kv, self.transport, self.requests = core, kv, transport, requests
        self.submit = submit
        self.applied_members = applied_members
        self.learned: dict[int, int] = {}  # this term's answers
        self._term = 0
        # (generation, reconnects, connected) per peer: a change is a new connection, and
        # a new generation a new link (the peer was removed and added again)
        self._links: dict[int, tuple[int, int, bool]] = {}

    async def run(self) -> None:
        """For the node's lifetime: while it leads, keep ``learned`` current and record it."""
        while True:
            await trio.sleep(PERIOD)
            if self.core.role is not Role.LEADER:
                self._term = 0
                continue
            await self.step()

    async def step(self) -> None:
        """One look: forget what a new term, a member's removal or a reconnected (or new)
        link makes stale, ask the members not known, then record one difference."""
        core = self.core
        if core.term != self._term:
            self._term = core.term
            self.learned = {}
        members = [m.id for m in core.cluster_config.members]
        for gone in set(self.learned).difference(members, (self.id,)):
            del self.learned[gone]  # removed: if added again, it may be another node
        for peer, stats in self.transport.stats().items():
            link = (stats.generation, stats.reconnects, stats.connected)
            if self._links.get(peer) != link:  # a new connection: maybe a new release
                self._links[peer] = link
                self.learned.pop(peer, None)
        self.learned[self.id] = self.level
        unknown = [m for m in members if m not in self.learned]
        if unknown:
            for peer, reply in (await self._ask(unknown)).items():
                level = classify_level(reply)
                if level is not None:
                    self.learned[peer] = level
                    if level == 0:
                        event(log, logging.WARNING, "a member of an earlier release: entry "
                              "forms of a higher feature level stay off", peer=peer)
        await self._record()

    async def _record(self) -> None:
        """Record what changed, one entry at a time: every level once every member of the
        latest configuration is known at 1 or more (before that nothing is recorded, so
        snapshots stay readable by a member of the previous release), and a level lower
        than the one recorded (a member went back) at once, which closes the gate."""
        applied = set(self.applied_members())
        recorded = self.kv.member_levels
        members = [m.id for m in self.core.cluster_config.members]
        risen = all(self.learned.get(m, 0) >= 1 for m in members)
        # The lowest levels first: the record never rises above the members' lowest,
        # which a deletion reads without the configuration (REAP_LEVEL, raftkv.kv).
        for member, level in sorted(self.learned.items(), key=lambda item: item[::-1]):
            if member in applied and recorded.get(member, 0) != level and (
                    risen or level < recorded.get(member, 0)):
                if self.core.role is not Role.LEADER:
                    return
                reply = await self.submit(
                    [MEMBER_LEVEL, b"%d" % member, b"%d" % level]).wait()
                if isinstance(reply, int):
                    event(log, logging.INFO, "member feature level recorded", id=member,
                          feature_level=level, cluster_level=self.kv.cluster_level)
                return  # one at a time

    async def _ask(self, peers: Sequence[int]) -> dict[int, Any]:
        """``RAFT FEATURES`` to each of ``peers``; their replies (None where none came)."""
        sent: dict[int, tuple[int, Pending]] = {}
        deadline = trio.current_time() + ASK_TIMEOUT
        for peer in peers:
            req_id = self.requests.next_id()
            pending = Pending()
            if self.transport.send(ForwardRequest(term=self.core.term, src=self.id, dst=peer,
                                                  req_id=req_id, args=PROBE)):
                self.requests.track_forward(req_id, pending, deadline, peer)
                sent[peer] = (req_id, pending)
        replies: dict[int, Any] = dict.fromkeys(peers)
        with trio.move_on_at(deadline):
            for peer, (_, pending) in sent.items():
                replies[peer] = await pending.wait()
        for peer, (req_id, pending) in sent.items():
            if pending.done:
                replies[peer] = pending.value  # (answered while we waited for another)
            else:
                self.requests.forward_answered(req_id)  # unanswered: forget it
        return replies
