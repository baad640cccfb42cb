"""MULTI/EXEC/DISCARD/WATCH/UNWATCH: a connection's transaction state.

Commands after MULTI are checked (arity, syntax: ``validate``) and queued (``+QUEUED``); a
command that fails the check is answered with its error and marks the transaction, whose
EXEC then answers ``-EXECABORT`` (Redis 7). EXEC sends every queued state-machine command
as **one** internal ``EXEC payload`` command (``raftkv.kv.encode_exec``): one log entry, so
it is applied atomically and at one time on every replica, and a follower forwards it
once. PING, ECHO and UNWATCH inside MULTI are answered at EXEC from here; other
connection commands are refused inside MULTI.

WATCH is a read (``WATCH key...`` served after a ReadIndex, like GET) answering each key's
version (see KVStateMachine); EXEC carries them, and the state machine answers a null
reply instead of running the commands if any changed. A WATCH that failed (e.g.
``-TRYAGAIN``) makes the next EXEC answer null too, so a client that ignored the error
retries instead of running unprotected.
"""

from __future__ import annotations

from typing import Any

import attrs

from raftkv.kv import (
    MAX_TRANSACTION_COMMANDS,
    encode_exec,
    key_cap,
    legacy_form,
    lookup,
    validate,
)
from raftkv.kv.commands import MAX_WATCHED_KEYS
from raftkv.kv.errors import unknown_command
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from wire.reply import OK, ErrorReply, SimpleString

QUEUED = SimpleString("QUEUED")
EXECABORT = ErrorReply("EXECABORT Transaction discarded because of previous errors.")
NOT_IN_MULTI = ErrorReply("ERR Command not allowed inside a transaction")
TOO_BIG = ErrorReply("ERR transaction too large for one log entry")
PONG = SimpleString("PONG")
# Connection commands answered at EXEC from the queue (their reply does not need the log).
_QUEUED_LOCALLY = {b"ping", b"echo", b"unwatch"}


@attrs.define
class Transaction:
    """One connection's MULTI queue and WATCHed versions."""

    # None outside MULTI; else each queued item: the command's args, or a ready reply.
    queue: list[list[bytes] | Any] | None = None
    commands: int = 0
    size: int = 0
    keys: int = 0  # the queued commands' keys (raftkv.kv.key_cap), each at least 1
    dirty: bool = False
    watches: list[tuple[bytes, int, int]] = attrs.Factory(list)
    watch_bytes: int = 0  # the watched keys' bytes (each plus WATCH_OVERHEAD)
    watch_failed: bool = False
    acl_generation: int = 0  # the ACL LOADs done at MULTI (auth.queue_still_allowed)

    @property
    def held(self) -> int:
        """Bytes this connection holds here for as long as it likes: its queue and its
        watched keys. The client port counts them with its query buffer against
        --client-buffer-total (attack8: 20 connections with an 8 MiB SET queued, or one
        with 20 WATCHed 8 MiB keys, held 150-170 MB that no bound counted; 10,000 watched
        keys of 8 MiB would be 80 GB on one connection)."""
        return self.size + self.watch_bytes

    def reset(self) -> None:
        self.queue = None
        self.commands = self.size = self.keys = self.watch_bytes = 0
        self.dirty = False
        self.watches = []
        self.watch_failed = False


WATCH_OVERHEAD = 64  # a watched key's tuple and its two versions, roughly


def _arity(name: str) -> Pending:
    return Pending.of(ErrorReply(f"ERR wrong number of arguments for '{name}' command"))


def _local_reply(args: list[bytes]) -> Any:
    name = args[0].lower()
    if name == b"ping" and len(args) <= 2:
        return args[1] if len(args) == 2 else PONG
    if name == b"echo" and len(args) == 2:
        return args[1]
    if name == b"unwatch" and len(args) == 1:
        return OK
    return ErrorReply(f"ERR wrong number of arguments for '{name.decode()}' command")


def enqueue(node: Node, tx: Transaction, args: list[bytes], local: bool) -> Pending:
    """A command sent inside MULTI (``local``: one the client port answers itself)."""
    assert tx.queue is not None
    name = args[0].lower()
    if local and name not in _QUEUED_LOCALLY:
        tx.dirty = True
        return Pending.of(NOT_IN_MULTI)
    size = sum(len(a) + 8 for a in args)
    if (tx.commands + 1 > MAX_TRANSACTION_COMMANDS
            or tx.size + size > node.settings.max_request_bytes):
        tx.dirty = True  # PING/ECHO count too: their arguments wait in the queue as well
        return Pending.of(TOO_BIG)
    if local:
        item: Any = _local_reply(args)
        if isinstance(item, ErrorReply):
            tx.dirty = True
            return Pending.of(item)
        tx.queue.append(_Ready(item))
        tx.commands += 1
        tx.size += size
        return Pending.of(QUEUED)
    args = legacy_form(args)
    spec = lookup(name)
    if spec is None or spec.internal:
        tx.dirty = True
        return Pending.of(unknown_command(args))
    error = validate(args)
    if error is None:  # (the whole queue is one entry, applied in one step of the loop)
        keys = tx.keys + key_cap.weight(args)
        limit = node.settings.max_keys_per_command
        error = key_cap.too_many(keys, limit, transaction=True) if keys > limit else None
    if error is not None:
        tx.dirty = True
        return Pending.of(error)
    tx.queue.append(args)
    tx.keys = keys
    tx.commands += 1
    tx.size += size
    return Pending.of(QUEUED)


@attrs.frozen
class _Ready:
    """A queued connection command's reply, computed when it was queued."""

    value: Any


def multi(tx: Transaction) -> Pending:
    if tx.queue is not None:
        return Pending.of(ErrorReply("ERR MULTI calls can not be nested"))
    tx.queue = []
    return Pending.of(OK)


def discard(tx: Transaction) -> Pending:
    if tx.queue is None:
        return Pending.of(ErrorReply("ERR DISCARD without MULTI"))
    tx.reset()
    return Pending.of(OK)


def unwatch(tx: Transaction) -> Pending:
    tx.watches = []
    tx.watch_bytes = 0
    tx.watch_failed = False
    return Pending.of(OK)


def watch(node: Node, tx: Transaction, args: list[bytes]) -> Pending:
    """Read the keys' versions through the node (a linearizable read) and remember them."""
    if tx.queue is not None:
        return Pending.of(ErrorReply("ERR WATCH inside MULTI is not allowed"))
    keys = args[1:]
    if len(tx.watches) + len(keys) > MAX_WATCHED_KEYS:
        return Pending.of(ErrorReply(f"ERR at most {MAX_WATCHED_KEYS} keys can be watched"))
    reply = Pending()

    def remember(value: Any) -> None:
        if (isinstance(value, list) and len(value) == len(keys)
                and all(isinstance(v, list) and len(v) == 2 for v in value)):
            pairs = zip(keys, value, strict=True)
            tx.watches.extend((key, int(v[0]), int(v[1])) for key, v in pairs)
            reply.set(OK)
        else:
            tx.watch_failed = True
            reply.set(value if isinstance(value, ErrorReply) else ErrorReply("ERR WATCH failed"))

    # Counted now, with the command that brings them (the port counts after each read):
    # counted only once the read answered, a client that sends nothing more held them
    # uncounted. (A failed WATCH keeps its count until EXEC, DISCARD or UNWATCH.)
    tx.watch_bytes += sum(len(key) + WATCH_OVERHEAD for key in keys)
    node.submit([b"WATCH", *keys]).add_callback(remember)
    return reply


def exec_(node: Node, tx: Transaction) -> Pending:
    """Run the queue as one log entry; the array of replies, or null if a watch fired."""
    if tx.queue is None:
        return Pending.of(ErrorReply("ERR EXEC without MULTI"))
    queue, watches, dirty, failed = tx.queue, tx.watches, tx.dirty, tx.watch_failed
    tx.reset()
    if dirty:
        return Pending.of(EXECABORT)
    if failed:
        return Pending.of(None)
    commands = [item for item in queue if isinstance(item, list)]
    reply = Pending()

    def merge(value: Any) -> None:
        if not isinstance(value, list) or len(value) != len(commands):
            reply.set(value)  # null (a watched key changed) or an error (TRYAGAIN, ...)
            return
        results = iter(value)
        reply.set([next(results) if isinstance(item, list) else item.value for item in queue])

    node.submit([b"EXEC", encode_exec(watches, commands)]).add_callback(merge)
    return reply
