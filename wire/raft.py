"""Raft's records and peer messages (pure data; the codec is wire.record).

Node ids are positive integers; 0 means "none" (no vote, no leader). Every peer message
carries ``term``, ``src`` and ``dst``.
"""

from __future__ import annotations

from typing import get_args

import attrs

from wire.record import record

# Bounds a peer message must respect (raftkv.raft.validation checks them on receipt).
# Terms and indexes stop at 2**62 - 1: far beyond any real cluster (a new term every
# millisecond for 146 million years), yet ``term + 1`` always stays encodable, so a hostile
# or corrupt term near 2**64 is refused as malformed instead of wedging every node at a
# term it cannot increment. Node ids are 1 .. 2**63 - 1 (0 means "none").
MAX_TERM = 2**62 - 1
MAX_INDEX = 2**62 - 1
MAX_NODE_ID = 2**63 - 1

# Entry kinds.
NORMAL = 0  # a state-machine command
NOOP = 1  # appended by a new leader at the start of its term
CONFIG = 2  # data is an encoded ClusterConfig


@record(tag=10)
@attrs.frozen(init=False)
class Entry:
    """One log entry. Its ``__init__`` stores the four slots through their descriptors:
    attrs' frozen one calls ``object.__setattr__`` per field, and an entry is built for
    every proposal and again for every entry read back from the log (about 30% of the
    construction; issue 15). It stores the same fields, so it is the same object."""

    term: int
    index: int
    kind: int
    data: bytes

    def __init__(self, term: int, index: int, kind: int, data: bytes) -> None:
        _set_term(self, term)
        _set_index(self, index)
        _set_kind(self, kind)
        _set_data(self, data)


_set_term, _set_index, _set_kind, _set_data = (
    getattr(Entry, name).__set__ for name in ("term", "index", "kind", "data"))


@record(tag=11)
@attrs.frozen
class HardState:
    term: int = 0
    vote: int = 0
    commit: int = 0


@record(tag=12)
@attrs.frozen
class Member:
    """``promote``: a learner the leader turns into a voter once it has caught up (added
    with RAFT ADDNODE without LEARNER); False for voters and for learners meant to stay."""

    id: int
    peer_addr: str
    learner: bool = False
    promote: bool = False


@record(tag=13)
@attrs.frozen
class ClusterConfig:
    members: tuple[Member, ...] = ()


@record(tag=14)
@attrs.frozen
class SnapshotMeta:
    index: int
    term: int
    config: ClusterConfig


# -- peer messages (tags 20-39) ---------------------------------------------------------------


@record(tag=20)
@attrs.frozen
class RequestVote:
    """A (pre-)vote request. ``pre_vote``: a PreVote probe at ``term`` = candidate's term + 1,
    which changes nobody's term or vote. ``transfer``: sent because of TimeoutNow, so the
    receiver's leader lease (CheckQuorum) does not apply."""

    term: int
    src: int
    dst: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@record(tag=21)
@attrs.frozen
class RequestVoteResponse:
    """``term`` is the voter's term, or the requested term for a granted pre-vote."""

    term: int
    src: int
    dst: int
    granted: bool
    pre_vote: bool = False


@record(tag=22)
@attrs.frozen
class AppendEntries:
    """Entries after ``prev_index`` (empty for a heartbeat). ``seq`` is the leader's latest
    ReadIndex round number when this was sent; the response echoes it."""

    term: int
    src: int
    dst: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    seq: int = 0


@record(tag=23)
@attrs.frozen
class AppendEntriesResponse:
    """On success ``match_index`` is the last index known to match the leader's log. On a
    rejection it is the rejected ``prev_index`` (so the leader can drop stale rejections) and
    ``conflict_term`` / ``conflict_index`` are the fast back-off hint: the follower's term at
    prev_index and the first index it holds of that term, or (0, last index + 1) when the
    follower's log is too short."""

    term: int
    src: int
    dst: int
    success: bool
    match_index: int
    conflict_index: int = 0
    conflict_term: int = 0
    seq: int = 0


@record(tag=24)
@attrs.frozen
class TimeoutNow:
    """Leadership transfer: the target campaigns at once (no PreVote, lease bypassed)."""

    term: int
    src: int
    dst: int


@record(tag=25)
@attrs.frozen
class ReadIndexRequest:
    """A follower asks the leader for a confirmed read index for ``ctx``."""

    term: int
    src: int
    dst: int
    ctx: bytes


@record(tag=26)
@attrs.frozen
class ReadIndexResponse:
    """``ok`` False: the leader could not serve the read (not leader any more)."""

    term: int
    src: int
    dst: int
    ctx: bytes
    index: int
    ok: bool


@record(tag=28)
@attrs.frozen
class InstallSnapshot:
    """One chunk of the leader's snapshot ``meta``: ``data`` is the state-machine bytes at
    ``offset``; ``done`` marks the last chunk. Sent in bounded chunks with a small window in
    flight; a chunk at offset 0 starts a transfer (any partial receive is discarded)."""

    term: int
    src: int
    dst: int
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@record(tag=29)
@attrs.frozen
class InstallSnapshotResponse:
    """Acknowledges snapshot ``index``: the follower holds its bytes up to ``offset`` (the
    next offset it wants). ``done``: installed, or not needed because the follower's log
    already holds the entry at ``index`` with the snapshot's term; either way it matches the
    leader up to ``index``. ``reject``: the chunk did not continue what the follower holds
    (it restarted, say): resend from ``offset``."""

    term: int
    src: int
    dst: int
    index: int
    offset: int
    done: bool = False
    reject: bool = False


# -- forwarding (tags 40-49): routed by the runtime, never given to the consensus core -------


@record(tag=40)
@attrs.frozen
class ForwardRequest:
    """A client command forwarded from a follower to the leader."""

    term: int
    src: int
    dst: int
    req_id: int
    args: tuple[bytes, ...]


@record(tag=41)
@attrs.frozen
class ForwardResponse:
    """The leader's reply to a ForwardRequest: ``reply`` is an encoded reply the runtime defines."""

    term: int
    src: int
    dst: int
    req_id: int
    reply: bytes


# Messages the consensus core steps (RaftCore.step accepts exactly these).
RaftMessage = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
    | InstallSnapshot
    | InstallSnapshotResponse
)
# Everything a peer may send: the core's messages plus forwarded client commands, which the
# runtime answers itself.
PeerMessage = RaftMessage | ForwardRequest | ForwardResponse

# The same unions as tuples of classes, for ``isinstance`` and per-class tables.
RAFT_MESSAGE_TYPES: tuple[type, ...] = get_args(RaftMessage)
PEER_MESSAGE_TYPES: tuple[type, ...] = get_args(PeerMessage)
