"""Membership in the runtime: admin commands, transport links, auto-promotion, --join.

- ``RAFT ADDNODE id peer_addr [LEARNER]``, ``RAFT PROMOTE id``, ``RAFT REMOVENODE id``
  are accepted by any node: a follower forwards them to the leader like a write (a
  ForwardRequest whose args start with RAFT), and the reply comes once the CONFIG entry is
  applied (committed), or as an error: ``-ERR`` for a change that is not allowed,
  ``-TRYAGAIN`` for one that may work later (another change in flight, no leader, a
  learner still catching up), ``-UNKNOWN`` if the outcome is unknown (timeout, leader lost).
- ADDNODE always adds a *learner*. Without LEARNER it is marked ``promote`` and the leader
  turns it into a voter once its log is within ``promote_lag`` entries of the leader's;
  with LEARNER it stays a learner until RAFT PROMOTE. Adding the same id and address again
  is a no-op (OK), so a joining node can simply retry.
- The transport's links follow the members the core knows (the configuration in force
  plus members removed by a change not yet committed); each change is logged at INFO.
- ``--join``: an empty node starts with no configuration, learns the members' peer
  addresses from a member's ``INFO raft``, links to them (so it accepts the leader's
  connection), and sends ADDNODE until it is accepted. The log, snapshot and its own
  membership then come from the leader like for any follower.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import trio

from raftkv.backoff import Backoff
from raftkv.log import event
from raftkv.node.pending import Pending
from raftkv.probe import call, describe_members, info_raft, parse_members
from raftkv.raft import ConfigChangePending, MembershipError, NotLeader, Role
from wire.addr import parse_addr
from wire.raft import MAX_NODE_ID, Member
from wire.reply import OK, ErrorReply

if TYPE_CHECKING:
    from raftkv.node.node import Node

log = logging.getLogger("raftkv.node")

USAGE = ErrorReply(
    "ERR wrong arguments; try RAFT ADDNODE id peer_addr [LEARNER] | PROMOTE id | REMOVENODE id"
)
NO_LEADER = ErrorReply("TRYAGAIN no leader known; the membership change was not made, retry")
SUBCOMMANDS = (b"addnode", b"promote", b"removenode")
_DIGITS = re.compile(rb"[0-9]{1,19}")


class Membership:
    """The node's membership bookkeeping; all of it runs in the trio thread."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.known: dict[int, Member] = {}
        self.seed_peers: dict[int, str] = {}  # --join: members learned from INFO raft
        self.removed_logged = False

    # -- links ------------------------------------------------------------------------
    def observe(self) -> None:
        """Bring the transport in line with the members the core knows (called before each
        Ready, so messages to a new member find its link); then auto-promote."""
        node = self.node
        core = node.core
        known = core.known_members
        if known != self.known:
            before, self.known = self.known, known
            peers = {i: m.peer_addr for i, m in known.items() if i != node.id}
            if not known:
                peers = dict(self.seed_peers)  # joining: no configuration yet
            node.transport.update_peers(peers)
            event(log, logging.INFO, "membership changed",
                  members=describe_members(core.cluster_config) or "-",
                  added=",".join(str(i) for i in sorted(known.keys() - before.keys())) or "-",
                  removed=",".join(str(i) for i in sorted(before.keys() - known.keys())) or "-")
            if known and node.id not in known:
                if not self.removed_logged:
                    event(log, logging.WARNING, "this node was removed from the cluster; "
                          "stop it (its data directory can be deleted)", id=node.id)
                self.removed_logged = True
        if core.role is Role.LEADER and not core.config_pending:
            self._auto_promote()

    def _auto_promote(self) -> None:
        core = self.node.core
        lag = self.node.settings.promote_lag
        for learner in core.learners_to_promote(lag):
            try:
                index, _ = core.promote_learner(learner, lag)
            except (ConfigChangePending, NotLeader):
                return
            event(log, logging.INFO, "promoting learner", id=learner, index=index)
            self.node.wake()
            return

    def role(self) -> str:
        """This node's role for INFO: follower/leader/candidate, or learner, joining
        (no configuration yet), removed."""
        core = self.node.core
        members = core.cluster_config.members
        if not members:
            return "joining"
        if all(m.id != self.node.id for m in members):
            return "removed"
        if core.is_learner:
            return "learner"
        role = core.role.name.lower()
        return "candidate" if role == "pre_candidate" else role

    # -- admin commands ---------------------------------------------------------------
    def command(self, args: list[bytes], forwarded: bool = False) -> Pending:
        """RAFT ADDNODE/PROMOTE/REMOVENODE; ``forwarded``: from a follower (never
        re-forwarded)."""
        node = self.node
        core = node.core
        try:
            change = _parse(args)
        except _Usage:
            return Pending.of(USAGE)
        except ValueError as exc:
            return Pending.of(ErrorReply(f"ERR {exc}"))
        if core.role is not Role.LEADER:
            if forwarded or not core.leader_id:
                return Pending.of(NO_LEADER)
            pending = Pending()
            node.forward_command(args, pending)
            return pending
        sub, target, addr, learner = change
        try:
            if sub == b"addnode":
                existing = next((m for m in core.cluster_config.members if m.id == target), None)
                if existing is not None and existing.peer_addr == addr:
                    return Pending.of(OK)  # a retried ADDNODE (a joining node retries)
                index, term = core.add_learner(target, addr, promote=not learner)
            elif sub == b"promote":
                index, term = core.promote_learner(target, node.settings.promote_lag)
            else:
                index, term = core.remove_member(target)
        except NotLeader:
            return Pending.of(NO_LEADER)
        except ConfigChangePending as exc:
            return Pending.of(ErrorReply(f"TRYAGAIN {exc}"))
        except MembershipError as exc:
            return Pending.of(ErrorReply(f"ERR {exc}"))
        event(log, logging.INFO, "membership change proposed", change=sub.decode(),
              id=target, index=index)
        pending = Pending()
        node.await_commit(index, term, pending)
        return pending

    # -- joining ----------------------------------------------------------------------
    async def join(self, endpoints: list[str]) -> None:
        """Ask the cluster (through any of ``endpoints``, client addresses) to add this node
        until it is accepted or the node learns its configuration some other way."""
        node = self.node
        s = node.settings
        words = ["RAFT", "ADDNODE", str(node.id), s.peer_advertised]
        if s.learner:
            words.append("LEARNER")
        backoff = Backoff(0.2, 2.0, node.rng)
        while not node.core.cluster_config.members:
            for addr in endpoints:
                try:
                    info = await trio.to_thread.run_sync(info_raft, addr, 2.0)
                    seeds = {i: a for i, (a, _) in parse_members(info.get("members", "")).items()
                             if i != node.id}
                    if seeds and not node.core.cluster_config.members:
                        self.seed_peers = seeds
                        node.transport.update_peers(seeds)
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


class _Usage(ValueError):
    """Wrong subcommand or argument count: the reply is the usage line."""


def _parse(args: list[bytes]) -> tuple[bytes, int, str, bool]:
    """(subcommand, node id, peer address, learner) or ValueError (its text is for the
    client). Everything is checked here, before proposing: a committed entry can no longer
    be refused, and every node (and every restart) acts on it."""
    if len(args) < 2:
        raise _Usage
    sub = args[1].lower()
    rest = args[2:]
    if sub == b"addnode" and len(rest) in (2, 3):
        if len(rest) == 3 and rest[2].lower() != b"learner":
            raise _Usage
        try:
            addr = rest[1].decode()
        except UnicodeDecodeError:
            raise ValueError("peer address is not UTF-8") from None
        parse_addr(addr)  # ValueError says what is wrong with it
        return sub, parse_node_id(rest[0]), addr, len(rest) == 3
    if sub in (b"promote", b"removenode") and len(rest) == 1:
        return sub, parse_node_id(rest[0]), "", False
    raise _Usage


def parse_node_id(text: bytes) -> int:
    """A node id: decimal digits, 1 .. 2**63 - 1."""
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_NODE_ID:
        raise ValueError(f"node id must be an integer from 1 to {MAX_NODE_ID}")
    return int(text)
