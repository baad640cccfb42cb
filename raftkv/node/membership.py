"""Membership in the runtime: changes, transport links, auto-promotion, --join.

- ``add``/``promote``/``remove`` propose a configuration change on the leader; the reply
  comes once the CONFIG entry is applied (committed), or as an error: ``-ERR`` for a change
  that is not allowed, ``-TRYAGAIN`` for one that may work later (another change in
  flight, no leader, a learner still catching up), ``-UNKNOWN`` if the outcome is unknown
  (timeout, leader lost). The RAFT ADDNODE/PROMOTE/REMOVENODE text, and the forwarding of
  a change a follower receives, are raftkv.server.admin's.
- ``add`` always adds a *learner*. Unless kept a learner it is marked ``promote`` and the
  leader turns it into a voter once its log is within ``promote_lag`` entries of the
  leader's. Adding the same id and address again is a no-op (OK), so a joining node can
  simply retry.
- The transport's links follow the members the core knows (the configuration in force
  plus members removed by a change not yet committed); each change is logged at INFO.
  A removed peer's link lingers while a command we forwarded to it is unanswered: a
  leader that removes itself answers the forward once the removal is applied, which is
  just when the followers learn the removal committed. Dropping the link then lost that
  reply and the user read -UNKNOWN for a removal that was made (1 run in 6-12 here).
  The forward's deadline bounds the linger.
- ``--join``: an empty node starts with no configuration, learns the members' peer
  addresses from a member's ``INFO raft``, links to them (so it accepts the leader's
  connection), and sends ADDNODE until it is accepted. The log, snapshot and its own
  membership then come from the leader like for any follower.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import trio

from raftkv.backoff import Backoff
from raftkv.log import event
from raftkv.node.pending import Pending
from raftkv.node.requests import RequestTracker
from raftkv.node.settings import NodeSettings
from raftkv.node.transport import PeerTransport
from raftkv.probe import call, describe_members, info_raft, parse_members
from raftkv.raft import ConfigChangePending, MembershipError, NotLeader, RaftCore, Role
from wire.raft import ClusterConfig, Member
from wire.reply import OK, ErrorReply

log = logging.getLogger("raftkv.node")

NO_LEADER = ErrorReply("TRYAGAIN no leader known; the membership change was not made, retry")


class Membership:
    """The node's membership bookkeeping; all of it runs in the trio thread."""

    def __init__(self, node_id: int, settings: NodeSettings, core: RaftCore,
                 transport: PeerTransport, requests: RequestTracker, rng: random.Random,
                 wake: Callable[[], None]) -> None:
        self.id = node_id
        self.settings = settings
        self.core = core
        self.transport = transport
        self.requests = requests
        self.rng = rng
        self.wake = wake
        self.known: dict[int, Member] = {}
        self.lingering: dict[int, str] = {}  # removed peers awaited by a forward: id -> addr
        self.seed_peers: dict[int, str] = {}  # --join: members learned from INFO raft
        self.removed_logged = False
        self._removed_for: tuple[ClusterConfig | None, bool] = (None, False)
        # Only a node that has been a member can be removed. A --join node starts with no
        # configuration and may first install a snapshot taken before it was added: until
        # it sees itself it is joining, not removed (it told its clients "this node was
        # removed" and logged the WARNING to delete its data). A node that starts with a
        # configuration was a member (or its data is another cluster's, refused earlier).
        self.was_member = bool(core.cluster_config.members)

    # -- links ------------------------------------------------------------------------
    def observe(self) -> None:
        """Bring the transport in line with the members the core knows (called before each
        Ready, so messages to a new member find its link); then auto-promote."""
        core = self.core
        known = core.known_members
        if known != self.known:
            before, self.known = self.known, known
            gone = {i: m.peer_addr for i, m in before.items()
                    if i not in known and i != self.id}
            self.lingering.update(gone)
            self._link_peers(changed=True)
            event(log, logging.INFO, "membership changed",
                  members=describe_members(core.cluster_config) or "-",
                  added=",".join(str(i) for i in sorted(known.keys() - before.keys())) or "-",
                  removed=",".join(str(i) for i in sorted(before.keys() - known.keys())) or "-")
            if self.id in known:
                self.was_member = True
            elif known and self.was_member:
                if not self.removed_logged:
                    event(log, logging.WARNING, "this node was removed from the cluster; "
                          "stop it (its data directory can be deleted)", id=self.id)
                self.removed_logged = True
        elif self.lingering:
            self._link_peers(changed=False)
        if core.role is Role.LEADER and not core.config_pending:
            self._auto_promote()

    def _link_peers(self, changed: bool) -> None:
        """Give the transport the known members, plus the removed ones that still owe us
        the reply to a forward (only while they do); ``changed``: the members did."""
        known = self.known
        awaited = self.requests.forward_leaders() if self.lingering else set()
        lingering = {i: a for i, a in self.lingering.items() if i in awaited and i not in known}
        if not changed and lingering == self.lingering:
            return
        self.lingering = lingering
        peers = {i: m.peer_addr for i, m in known.items() if i != self.id}
        if not known:
            peers = dict(self.seed_peers)  # joining: no configuration yet
        for i, addr in lingering.items():
            peers.setdefault(i, addr)
        self.transport.update_peers(peers)

    def _auto_promote(self) -> None:
        core = self.core
        lag = self.settings.promote_lag
        for learner in core.learners_to_promote(lag):
            try:
                index, _ = core.promote_learner(learner, lag)
            except (ConfigChangePending, NotLeader):
                return
            event(log, logging.INFO, "promoting learner", id=learner, index=index)
            self.wake()
            return

    def removed(self) -> bool:
        """This node was a member and is not in its configuration (a joining node is not
        removed). Asked on every client command: the answer is kept per configuration
        (frozen, replaced on each change), not recomputed by a scan of the members."""
        config = self.core.cluster_config
        cached, removed = self._removed_for
        if config is not cached:
            members = config.members
            if any(m.id == self.id for m in members):
                self.was_member = True
            removed = self.was_member and bool(members) and all(m.id != self.id
                                                                 for m in members)
            self._removed_for = (config, removed)
        return removed

    def role(self) -> str:
        """This node's role for INFO: follower/leader/candidate, or learner, joining
        (no configuration yet), removed."""
        core = self.core
        if not core.cluster_config.members:
            return "joining"
        if self.removed():
            return "removed"
        if all(m.id != self.id for m in core.cluster_config.members):
            return "joining"  # a snapshot from before it was added
        if core.is_learner:
            return "learner"
        role = core.role.name.lower()
        return "candidate" if role == "pre_candidate" else role

    # -- changes (on the leader) ------------------------------------------------------
    def add(self, node_id: int, peer_addr: str, learner: bool) -> Pending:
        """Add ``node_id`` as a learner (promoted automatically unless ``learner``)."""
        existing = next((m for m in self.core.cluster_config.members if m.id == node_id), None)
        if existing is not None and existing.peer_addr == peer_addr:
            return Pending.of(OK)  # a retried ADDNODE (a joining node retries)
        return self._propose("addnode", node_id,
                             lambda: self.core.add_learner(node_id, peer_addr,
                                                           promote=not learner))

    def promote(self, node_id: int) -> Pending:
        return self._propose("promote", node_id, lambda: self.core.promote_learner(
            node_id, self.settings.promote_lag))

    def remove(self, node_id: int) -> Pending:
        """Remove ``node_id``, unless the voters left would have no quorum this leader hears
        from (``RaftCore.remove_member``'s ``strict``): -TRYAGAIN, nothing proposed."""
        return self._propose("removenode", node_id,
                             lambda: self.core.remove_member(node_id, strict=True))

    def _propose(self, change: str, node_id: int,
                 propose: Callable[[], tuple[int, int]]) -> Pending:
        try:
            index, term = propose()
        except NotLeader:
            return Pending.of(NO_LEADER)
        except ConfigChangePending as exc:
            return Pending.of(ErrorReply(f"TRYAGAIN {exc}"))
        except MembershipError as exc:
            return Pending.of(ErrorReply(f"ERR {exc}"))
        event(log, logging.INFO, "membership change proposed", change=change, id=node_id,
              index=index)
        # OK once the entry is applied, LOST if another term's entry is, UNKNOWN at the
        # request timeout.
        pending = Pending()
        self.requests.track_write(index, term, pending,
                                  trio.current_time() + self.settings.request_timeout)
        self.wake()
        return pending

    # -- joining ----------------------------------------------------------------------
    async def join(self, endpoints: list[str]) -> None:
        """Ask the cluster (through any of ``endpoints``, client addresses) to add this node
        until it is accepted or the node learns its configuration some other way."""
        s = self.settings
        words = ["RAFT", "ADDNODE", str(self.id), s.peer_advertised]
        if s.learner:
            words.append("LEARNER")
        backoff = Backoff(0.2, 2.0, self.rng)
        while not self.core.cluster_config.members:
            for addr in endpoints:
                try:
                    info = await trio.to_thread.run_sync(info_raft, addr, 2.0)
                    seeds = {i: a for i, (a, _) in parse_members(info.get("members", "")).items()
                             if i != self.id}
                    if seeds and not self.core.cluster_config.members:
                        self.seed_peers = seeds
                        self.transport.update_peers(seeds)
                    reply = await trio.to_thread.run_sync(
                        lambda a=addr: call(a, *words, timeout=s.request_timeout + 2)
                    )
                except (OSError, ConnectionError) as exc:
                    event(log, logging.INFO, "join: member unreachable", endpoint=addr,
                          error=exc)
                    continue
                if reply == OK:
                    event(log, logging.INFO, "joined the cluster", via=addr,
                          learner=s.learner)
                    return
                event(log, logging.INFO, "join: not yet", endpoint=addr, reply=reply)
            backoff.failed()
            await trio.sleep(backoff.delay())
