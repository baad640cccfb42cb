"""``RAFT BACKUP`` | ``RAFT BACKUP CHUNK id offset`` | ``RAFT BACKUP END id``: how
``raftkv backup`` streams a consistent copy of the state from any node (the sessions live
in raftkv.node.backup_source)."""

from __future__ import annotations

from raftkv.node.node import Node
from raftkv.node.pending import Pending
from wire.reply import ErrorReply

USAGE = ErrorReply("ERR usage: RAFT BACKUP | RAFT BACKUP CHUNK id offset | RAFT BACKUP END id")


def backup_command(node: Node, args: list[bytes]) -> Pending:
    """``args`` is the whole command, ``RAFT BACKUP ...``."""
    rest = args[2:]
    if not rest:
        return node.backups.start()
    sub = rest[0].lower()
    if sub == b"chunk" and len(rest) == 3:
        if not rest[2].isdigit() or len(rest[2]) > 15:
            return Pending.of(ErrorReply("ERR offset is not a non-negative integer"))
        return node.backups.chunk(rest[1].decode("ascii", "replace"), int(rest[2]))
    if sub == b"end" and len(rest) == 2:
        return node.backups.end(rest[1].decode("ascii", "replace"))
    return Pending.of(USAGE)
