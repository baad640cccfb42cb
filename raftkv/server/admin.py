"""``RAFT STATUS | TRANSFER id | SNAPSHOT | ADDNODE id peer_addr [LEARNER] | PROMOTE id |
REMOVENODE id | SESSION ... | ONCE ...``: cluster administration on the client port
(membership changes are in raftkv.node.membership: any node takes them and forwards them to
the leader; client sessions are translated in session_cmd.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.node.membership import SUBCOMMANDS, parse_node_id
from raftkv.node.pending import Pending
from raftkv.raft import NotLeader, Role
from raftkv.server.backup_cmd import backup_command
from raftkv.server.session_cmd import session_command
from wire.reply import OK, ErrorReply

if TYPE_CHECKING:
    from raftkv.node.node import Node


def raft_command(node: Node, args: list[bytes]) -> Pending:
    sub = args[1].lower() if len(args) > 1 else b""
    if sub == b"status" and len(args) == 2:
        return Pending.of(node.raft_info())
    if sub == b"transfer" and len(args) == 3:
        return transfer(node, args[2])
    if sub == b"snapshot" and len(args) == 2:
        # Snapshot this node's applied state now and compact its log; replies with the
        # snapshot index (the current one if nothing was applied since).
        return node.request_snapshot()
    if sub == b"backup":  # raftkv backup: a consistent copy in chunks (server/backup_cmd.py)
        return backup_command(node, args)
    if sub in (b"session", b"once"):  # client sessions (server/session_cmd.py)
        command = session_command(args)
        return Pending.of(command) if isinstance(command, ErrorReply) else node.submit(command)
    if sub in SUBCOMMANDS:
        return node.membership.command(args)
    return Pending.of(ErrorReply(
        "ERR unknown RAFT subcommand or wrong arguments; try RAFT STATUS | TRANSFER id | "
        "SNAPSHOT | ADDNODE id peer_addr [LEARNER] | PROMOTE id | REMOVENODE id | "
        "SESSION OPEN [seconds] | SESSION CLOSE id | ONCE id seq command..."
    ))


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
