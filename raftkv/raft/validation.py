"""Is a decoded peer message well formed? Checked on receipt, before the core sees it.

The codec (wire.record) guarantees types and 0 <= int < 2**64. This adds what a message
must also satisfy for the core to act on it safely; anything else is a ProtocolError, which
closes that peer's connection (like a garbled frame) and never reaches the core:

- only peer message types (a Hello, an Entry or any other record is not a message);
- terms and indexes at most MAX_TERM / MAX_INDEX (2**62 - 1), so ``term + 1`` stays
  encodable: a term near 2**64 would leave every node that adopted it unable to ever start
  another election;
- an AppendEntries' entries are consecutive after ``prev_index``, of known kinds, with
  terms not above the message's, and each CONFIG entry decodes to a configuration with
  valid, distinct member ids (the core decodes it on append: garbage there would raise);
- a snapshot's metadata the same way;
- with the receiver's current term (``checker``), a term at most MAX_TERM_AHEAD (2**32)
  above it. Without peer authentication (loopback only, see README Security) anyone who
  reaches the peer port can claim to be a member; one forged heartbeat at MAX_TERM used to
  make every node adopt a term from which no election can ever be started (term + 1 does
  not encode), persisted, so restarts did not help. A genuine peer is never that far
  ahead: terms grow by one per election round, and 2**32 rounds at one per 150 ms take
  20 years (with PreVote, a partitioned node does not even raise its term). Stepping up
  2**32 at a time, an attacker needs 2**30 accepted forgeries, each one fsynced by every
  node, to exhaust the range: peer authentication is the protection, this is the margin.

The transport checks separately that ``src`` is the link's authenticated peer and ``dst``
is this node. Peer *addresses* in configurations are not checked here: a bad one only
ever becomes a link that fails to dial (raftkv.node.transport), never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from raftkv.raft.membership import decode_config
from wire.errors import ProtocolError
from wire.raft import (
    CONFIG,
    MAX_INDEX,
    MAX_NODE_ID,
    MAX_TERM,
    NOOP,
    NORMAL,
    PEER_MESSAGE_TYPES,
    AppendEntries,
    ClusterConfig,
    InstallSnapshot,
    ReadIndexRequest,
    ReadIndexResponse,
)

MAX_TERM_AHEAD = 2**32  # how far above the receiver's term a message's term may be
MAX_READ_CTX = 64  # ReadIndex contexts are ours (8 bytes); anything longer is not

_KINDS = (NORMAL, NOOP, CONFIG)
# Integer fields that are ids, not terms or indexes (checked by the transport or unused).
_IDS = frozenset({"src", "dst"})
_INT_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in attrs.fields(cls) if f.type in (int, "int") and f.name not in _IDS)
    for cls in PEER_MESSAGE_TYPES
}


def check_peer_message(msg: Any) -> None:
    """Raise ProtocolError unless ``msg`` is a well-formed peer message (see module doc)."""
    fields = _INT_FIELDS.get(type(msg))
    if fields is None:
        raise ProtocolError(f"{type(msg).__name__} is not a peer message")
    for name in fields:
        if getattr(msg, name) > MAX_INDEX:  # == MAX_TERM: one bound for all of them
            raise ProtocolError(f"{type(msg).__name__}.{name} out of range")
    if isinstance(msg, AppendEntries):
        _check_entries(msg)
    elif isinstance(msg, InstallSnapshot):
        meta = msg.meta
        if meta.index > MAX_INDEX or meta.term > min(MAX_TERM, msg.term):
            raise ProtocolError("snapshot metadata out of range")
        _check_config(meta.config)
    elif isinstance(msg, ReadIndexRequest | ReadIndexResponse) and len(msg.ctx) > MAX_READ_CTX:
        raise ProtocolError("read context too long")


def check_term_ahead(msg: Any, current_term: int) -> None:
    """Raise ProtocolError if ``msg.term`` is more than MAX_TERM_AHEAD above ours."""
    term = getattr(msg, "term", 0)
    if term > current_term + MAX_TERM_AHEAD:
        raise ProtocolError(f"{type(msg).__name__}.term {term} is more than {MAX_TERM_AHEAD} "
                            f"above this node's term {current_term}")


def checker(current_term: Callable[[], int]) -> Callable[[Any], None]:
    """check_peer_message, then check_term_ahead against ``current_term()`` (the core's
    term when the message arrives): the transport's ``validate`` in a node."""
    def check(msg: Any) -> None:
        check_peer_message(msg)
        check_term_ahead(msg, current_term())
    return check


def _check_entries(msg: AppendEntries) -> None:
    if msg.prev_term > msg.term:
        raise ProtocolError("AppendEntries.prev_term above its term")
    expect, last_term = msg.prev_index + 1, msg.prev_term
    for e in msg.entries:
        if e.index != expect or e.index > MAX_INDEX:
            raise ProtocolError(f"AppendEntries entry index {e.index}, expected {expect}")
        if not last_term <= e.term <= msg.term:
            raise ProtocolError(f"AppendEntries entry {e.index} has term {e.term}")
        if e.kind not in _KINDS:
            raise ProtocolError(f"AppendEntries entry {e.index} has kind {e.kind}")
        if e.kind == CONFIG:
            try:
                config = decode_config(e.data)
            except (ProtocolError, ValueError, TypeError) as exc:
                raise ProtocolError(f"entry {e.index}: undecodable CONFIG: {exc}") from None
            _check_config(config)
        expect, last_term = expect + 1, e.term


def _check_config(config: ClusterConfig) -> None:
    ids = [m.id for m in config.members]
    if len(set(ids)) != len(ids) or not all(1 <= i <= MAX_NODE_ID for i in ids):
        raise ProtocolError(f"configuration with bad member ids {ids}")
