"""``RAFT STATUS | TRANSFER id | SNAPSHOT | ADDNODE id peer_addr [LEARNER] | PROMOTE id |
REMOVENODE id | SESSION ... | ONCE ...``: cluster administration on the client port, all of
the RAFT text (client sessions are translated in session_cmd.py).

``RAFT ADDNODE id peer_addr [LEARNER]``, ``RAFT PROMOTE id``, ``RAFT REMOVENODE id`` are
accepted by any node: a follower forwards them to the leader like a write (a
ForwardRequest whose args start with RAFT; the leader runs them through
``membership_command`` with ``forwarded``, never forwarding again), and the leader's
raftkv.node.membership proposes the change. Everything is checked here, before proposing:
a committed entry can no longer be refused, and every node (and every restart) acts on it.
"""

from __future__ import annotations

import re
import secrets

from raftkv.node.membership import NO_LEADER
from raftkv.node.node import REMOVED, Node
from raftkv.node.pending import Pending
from raftkv.raft import NotLeader, Role
from raftkv.server.backup_cmd import backup_command
from raftkv.server.info import raft_info
from raftkv.server.session_cmd import session_command
from wire.addr import parse_addr
from wire.raft import MAX_NODE_ID
from wire.reply import OK, ErrorReply

USAGE = ErrorReply(
    "ERR wrong arguments; try RAFT ADDNODE id peer_addr [LEARNER] | PROMOTE id | REMOVENODE id"
)
SUBCOMMANDS = (b"addnode", b"promote", b"removenode")
SESSION_IDS = 2**63 - 1  # a session id is a positive int64, drawn uniformly
_DIGITS = re.compile(rb"[0-9]{1,19}")


def raft_command(node: Node, args: list[bytes]) -> Pending:
    sub = args[1].lower() if len(args) > 1 else b""
    if sub in (b"once", b"session"):  # client sessions (server/session_cmd.py); ONCE is hot
        command = session_command(args, _new_session_id)
        return Pending.of(command) if isinstance(command, ErrorReply) else node.submit(command)
    if sub == b"status" and len(args) == 2:
        return Pending.of(raft_info(node))
    if sub == b"transfer" and len(args) == 3:
        return transfer(node, args[2])
    if sub == b"snapshot" and len(args) == 2:
        # Snapshot this node's applied state now and compact its log; replies with the
        # snapshot index (the current one if nothing was applied since).
        return node.snapshots.request()
    if sub == b"backup":  # raftkv backup: a consistent copy in chunks (server/backup_cmd.py)
        return backup_command(node, args)
    if sub in SUBCOMMANDS:
        return membership_command(node, args)
    return Pending.of(ErrorReply(
        "ERR unknown RAFT subcommand or wrong arguments; try RAFT STATUS | TRANSFER id | "
        "SNAPSHOT | ADDNODE id peer_addr [LEARNER] | PROMOTE id | REMOVENODE id | "
        "SESSION OPEN [seconds] | SESSION CLOSE id | ONCE id seq command..."
    ))


def _new_session_id() -> int:
    return secrets.randbelow(SESSION_IDS) + 1


def transfer(node: Node, target: bytes) -> Pending:
    try:
        to = parse_node_id(target)
    except ValueError as exc:
        return Pending.of(ErrorReply(f"ERR {exc}"))
    core = node.core
    voters = {m.id for m in core.cluster_config.members if not m.learner}
    if to not in voters:
        return Pending.of(ErrorReply(f"ERR node {to} is not a voting member"))
    if core.role is not Role.LEADER:
        leader = node.leader_client_addr() or "unknown"
        return Pending.of(ErrorReply(
            f"TRYAGAIN not the leader; send RAFT TRANSFER to the leader at {leader}"
        ))
    if to == node.id:
        return Pending.of(OK)
    try:
        core.transfer_leadership(to)
    except NotLeader:
        return Pending.of(ErrorReply("TRYAGAIN leadership changed; retry"))
    node.wake()
    return Pending.of(OK)


def membership_command(node: Node, args: list[bytes], forwarded: bool = False) -> Pending:
    """RAFT ADDNODE/PROMOTE/REMOVENODE; ``forwarded``: from a follower (never
    re-forwarded)."""
    try:
        sub, target, addr, learner = parse_change(args)
    except _Usage:
        return Pending.of(USAGE)
    except ValueError as exc:
        return Pending.of(ErrorReply(f"ERR {exc}"))
    core = node.core
    if core.role is not Role.LEADER:
        if node.removed:
            return Pending.of(REMOVED)
        if forwarded or not core.leader_id:
            return Pending.of(NO_LEADER)
        pending = Pending()
        node.forwarder.forward(args, pending)
        return pending
    if sub == b"addnode":
        return node.membership.add(target, addr, learner)
    if sub == b"promote":
        return node.membership.promote(target)
    return node.membership.remove(target)


class _Usage(ValueError):
    """Wrong subcommand or argument count: the reply is the usage line."""


def parse_change(args: list[bytes]) -> tuple[bytes, int, str, bool]:
    """(subcommand, node id, peer address, learner) or ValueError (its text is for the
    client)."""
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
