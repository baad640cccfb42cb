"""The server side of ``raftkv backup``: a consistent copy of the state, read in chunks.

``start()`` takes the state at a linearizable point: it runs a ReadIndex read (``Node.barrier``)
through the node, and the moment that read is answered (in the loop, synchronously) the
node has applied at least the read index confirmed by a quorum, so every write
acknowledged before the backup began is in the copy taken right then. The copy is encoded
(the same bytes as a snapshot: ``raftkv.kv.encode_snapshot``) and hashed in a worker
thread, then kept as a session the client reads in chunks.

Bounded: at most ``MAX_SESSIONS`` backups at once (each holds one encoded copy of the
state), a session expires ``SESSION_TTL`` seconds after its last read, a chunk is at most
``CHUNK`` bytes.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from raftkv.kv import KVState, KVStateMachine, encode_snapshot
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from wire.reply import ErrorReply


class Node(Protocol):
    """What a backup reads of the node (raftkv.node.node.Node, which owns the sessions)."""

    settings: NodeSettings
    kv: KVStateMachine

    @property
    def applied(self) -> int: ...

    @property
    def applied_term(self) -> int: ...

    def submit(self, args: list[bytes]) -> Pending: ...

    def start_background(self, fn: Callable[..., Any], *args: Any) -> None: ...

MAX_SESSIONS = 2
SESSION_TTL = 60.0
CHUNK = 1024 * 1024


@attrs.define
class Session:
    token: str
    index: int
    term: int
    keys: int
    data: bytes = b""
    sha256: str = ""
    deadline: float = 0.0


def _encode(state: KVState) -> tuple[bytes, str]:
    data = encode_snapshot(state)
    return data, hashlib.sha256(data).hexdigest()


class BackupSource:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.sessions: dict[str, Session] = {}
        self._starting = 0

    def start(self) -> Pending:
        """RAFT BACKUP: the reply is the session's description once the copy is ready."""
        if len(self.sessions) + self._starting >= MAX_SESSIONS:
            return Pending.of(ErrorReply(
                f"TRYAGAIN {MAX_SESSIONS} backups are already in progress on this node"))
        node = self.node
        reply = Pending()
        barrier = node.barrier()
        self._starting += 1

        def at_linearizable_point(value: Any) -> None:
            if isinstance(value, ErrorReply):
                self._starting -= 1
                reply.set(value)
                return
            session = Session(secrets.token_hex(16), node.applied, node.applied_term,
                              len(node.kv))
            node.start_background(self._prepare, session, node.kv.snapshot_state(), reply)

        barrier.add_callback(at_linearizable_point)
        return reply

    async def _prepare(self, session: Session, state: KVState,
                       reply: Pending) -> None:
        try:
            session.data, session.sha256 = await trio.to_thread.run_sync(_encode, state)
        finally:
            self._starting -= 1
        self.sessions[session.token] = session
        self._touch(session)
        self.node.start_background(self._expire, session)
        reply.set({
            "id": session.token, "index": session.index, "term": session.term,
            "keys": session.keys, "bytes": len(session.data), "sha256": session.sha256,
            "cluster_id": self.node.settings.cluster_id, "chunk": CHUNK,
        })

    def _touch(self, session: Session) -> None:
        session.deadline = trio.current_time() + SESSION_TTL

    async def _expire(self, session: Session) -> None:
        while self.sessions.get(session.token) is session:
            if trio.current_time() >= session.deadline:
                del self.sessions[session.token]
                return
            await trio.sleep_until(session.deadline)

    def chunk(self, token: str, offset: int) -> Pending:
        """RAFT BACKUP CHUNK id offset: up to CHUNK bytes from ``offset`` (b"" at the end)."""
        session = self.sessions.get(token)
        if session is None:
            return Pending.of(ErrorReply("ERR no such backup (finished or expired)"))
        if not 0 <= offset <= len(session.data):
            return Pending.of(ErrorReply(f"ERR offset out of range 0..{len(session.data)}"))
        self._touch(session)
        return Pending.of(session.data[offset:offset + CHUNK])

    def end(self, token: str) -> Pending:
        """RAFT BACKUP END id: free the copy now instead of at expiry."""
        return Pending.of(int(self.sessions.pop(token, None) is not None))
