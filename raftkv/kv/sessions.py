"""Client sessions: what makes a retried command apply at most once (Raft dissertation 6.3).

A client opens a session (a log entry carrying a random 63-bit id the proposing server drew:
ids are capabilities, since anyone who knows one can read its recorded replies, so they
must not be guessable; entries without an id use the state machine's entry counter) and
tags each write with the session id and a sequence number. The table remembers, per
session, the replies of the last ``WINDOW`` sequence numbers it applied; a duplicate gets
the recorded reply instead of being applied again.

The rules a client follows (and the table enforces):

* Sequence numbers start at 1 and grow; they may arrive out of order and with gaps.
* Sending ``seq`` acknowledges every sequence number at or below ``seq - WINDOW``: their
  replies may be forgotten. A command at or below the forgotten mark, not recorded, answers
  an error and is never applied (it may have been, once).
* A session not used for its timeout expires: a command on it answers ``SESSIONEXPIRED``
  and is never applied. Time is the log's (the highest leader stamp applied), never a
  clock, so every replica expires the same sessions at the same entry.

Everything here is bounded: at most ``MAX_SESSIONS`` live sessions (opening one more is
refused), ``WINDOW`` replies per session, and a recorded reply over ``MAX_REPLY_BYTES``, or
one that would take the table's replies past ``MAX_TABLE_REPLY_BYTES``, is kept only as the
fact that the command applied.
"""

from __future__ import annotations

import heapq
from typing import Any

import attrs
import msgpack

from wire.reply import ErrorReply, SimpleString

from .errors import KVDecodeError

WINDOW = 64
MAX_SESSIONS = 16_384
MAX_REPLY_BYTES = 1024
# Recorded reply bytes across the whole table (without it: 16,384 x 64 x 1 KiB, 1.1 GB of
# RSS measured, attack3). Past it a reply is kept only as "applied", like a large one.
MAX_TABLE_REPLY_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_MS = 300_000  # 5 minutes, as the trio client's default
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1  # msgpack packs up to this (uint 64)
_EXT_SIMPLE, _EXT_ERROR, _EXT_DROPPED = 1, 2, 3

SESSION_EXPIRED = "SESSIONEXPIRED"
TOO_MANY = ErrorReply(f"ERR too many client sessions (at most {MAX_SESSIONS})")
ID_IN_USE = ErrorReply("TRYAGAIN that session id is in use; open again")


def expired_error(session: int) -> ErrorReply:
    return ErrorReply(f"{SESSION_EXPIRED} session {session} is unknown or expired: "
                      "the command was not applied; open a new session")


def forgotten_error(session: int, seq: int) -> ErrorReply:
    return ErrorReply(f"ERR sequence number {seq} of session {session} is at or below the "
                      f"acknowledged mark (seq - {WINDOW}): it may have applied, not again")


def dropped_error(session: int, seq: int) -> ErrorReply:
    return ErrorReply(f"ERR sequence number {seq} of session {session} already applied; its "
                      f"reply was not kept (over {MAX_REPLY_BYTES} bytes, or the sessions' "
                      "replies were over their total bound)")


@attrs.define
class Session:
    """One client's record: its timeout, last use (log time) and recent replies."""

    timeout_ms: int
    last_used: int
    highest: int = 0  # the highest sequence number applied
    # seq -> reply: in a snapshot's state (``SessionTable.state``) each as its msgpack bytes
    # (``encode_reply``), in the live table as ``_kept`` holds it (see ``record``).
    replies: dict[int, Any] = attrs.Factory(dict)

    @property
    def deadline(self) -> int:
        return self.last_used + self.timeout_ms

    @property
    def forgotten(self) -> int:
        """Sequence numbers at or below this are acknowledged: their replies are gone."""
        return max(0, self.highest - WINDOW)


class SessionTable:
    """The sessions of one state machine. Pure: time comes in as arguments."""

    def __init__(self, sessions: dict[int, Session] | None = None) -> None:
        """``sessions``: as ``state`` gives them (replies as bytes), e.g. from a snapshot."""
        self._sessions: dict[int, Session] = {
            sid: attrs.evolve(s, replies={seq: _kept(blob) for seq, blob in s.replies.items()})
            for sid, s in (sessions or {}).items()}
        # The table's own packer: ``msgpack.packb`` builds (and allocates a buffer for) a
        # new Packer per call. Used only while applying, on one thread, like the rest of
        # the state machine.
        self._pack = msgpack.Packer(default=_default, use_bin_type=True).pack
        # Bytes of every recorded reply, each counted as its msgpack encoding (a function of
        # the sessions alone, so a replica restored from a snapshot counts the same as one
        # that applied the log, and as the table counted when it kept the encodings).
        self._bytes = sum(_size(r) for s in self._sessions.values() for r in s.replies.values())
        # One (deadline, id) pair per session, the deadline possibly stale (earlier than the
        # session's: purge moves it on), plus those of closed sessions until popped.
        self._heap = [(s.deadline, sid) for sid, s in self._sessions.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._sessions)

    def state(self) -> dict[int, Session]:
        """Copies of the sessions, for a snapshot: each reply as its msgpack bytes."""
        pack = self._pack
        return {sid: attrs.evolve(s, replies={seq: _blob(r, pack) for seq, r in s.replies.items()})
                for sid, s in self._sessions.items()}


    def open(self, sid: int, timeout_ms: int, now: int) -> ErrorReply | None:
        """Open session ``sid`` at log time ``now``; an error if full or ``sid`` is live."""
        self.purge(now)
        if len(self._sessions) >= MAX_SESSIONS:
            return TOO_MANY
        if self._live(sid, now) is not None:
            return ID_IN_USE
        self._forget(sid)  # an expired one of that id (gone from the table's count)
        self._sessions[sid] = Session(timeout_ms, now)
        heapq.heappush(self._heap, (now + timeout_ms, sid))
        return None

    def close(self, sid: int, now: int) -> bool:
        """Forget ``sid``; whether it was live."""
        session = self._live(sid, now)
        if session is None:
            return False
        self._forget(sid)
        if len(self._heap) > 2 * len(self._sessions) + 64:  # closed sessions' stale entries
            self._heap = [(s.deadline, i) for i, s in self._sessions.items()]
            heapq.heapify(self._heap)
        return True

    def recorded(self, sid: int, seq: int, now: int) -> Any:
        """The answer to (sid, seq) if it must not run: the recorded reply of a duplicate or
        an error; ``MAY_APPLY`` if the command is new and may apply (then call ``record``).
        (Not None: a recorded nil, SET NX's "not set", is an answer too. When None meant
        new, a duplicate of such a command applied again: the SET NX of a retry set the
        key that someone had deleted since.)"""
        session = self._live(sid, now)
        if session is None:
            return expired_error(sid)
        session.last_used = now  # its heap entry moves on when popped (see purge)
        if seq <= session.highest - WINDOW or seq <= 0:  # (``forgotten``, inlined)
            return forgotten_error(sid, seq)
        reply = session.replies.get(seq, MAY_APPLY)
        if reply is MAY_APPLY:
            return reply
        if type(reply) is _Packed:
            return decode_reply(reply)
        return dropped_error(sid, seq) if reply is _DROPPED else reply

    def record(self, sid: int, seq: int, reply: Any) -> None:
        """Remember ``reply`` as the answer to (sid, seq); forget what the window left.

        The reply itself is kept when it is immutable (an int, bytes, nil, a status or an
        error: what writes answer), counted as the bytes its encoding would take; only a
        list is encoded (copied), since its owner could change it. Encoding every reply
        cost a Packer call per command, for the rare duplicate."""
        session = self._sessions[sid]
        replies = session.replies
        if type(reply) is int and 0 <= reply < 1 << 32:  # INCR's usual reply, inlined
            kept, size = reply, (1 if reply < 128 else 2 if reply < 256 else 3
                                 if reply < 1 << 16 else 5)
        else:
            kept, size = _kept_size(reply, self._pack)
        if seq in replies:  # (a duplicate never reaches here: only a test records twice)
            self._bytes -= _size(replies.pop(seq))
        if size > MAX_REPLY_BYTES or self._bytes + size > MAX_TABLE_REPLY_BYTES:
            kept, size = _DROPPED, _DROPPED_SIZE
        replies[seq] = kept
        self._bytes += size
        highest = session.highest
        if seq > highest:
            session.highest = seq
            mark = seq - WINDOW
            if mark > 0:
                if seq == highest + 1:  # the usual step (``_forget_replies``'s, inlined)
                    old = replies.pop(mark, MAY_APPLY)
                    if old is not MAY_APPLY:
                        # (``_size``; an INCR's reply, the usual one, inlined)
                        self._bytes -= ((1 if old < 128 else 2 if old < 256 else 3
                                         if old < 1 << 16 else 5)
                                        if type(old) is int and 0 <= old < 1 << 32
                                        else _size(old))
                else:
                    self._forget_replies(session, max(0, highest - WINDOW), mark)

    def _forget_replies(self, session: Session, before: int, mark: int) -> None:
        """Drop the replies of sequence numbers in (``before``, ``mark``]: the window moved.

        Every recorded seq is above the mark at the time it was recorded (``recorded``
        refuses the others; ``sessions_from_wire`` too), so nothing at or below ``before``
        is left. A client counting up moves the mark by one: one pop, not a scan of the
        window's 64 replies per command (what this cost before).
        """
        replies = session.replies
        if mark - before == 1:  # the usual step: one more number, one reply fewer
            reply = replies.pop(mark, MAY_APPLY)
            if reply is not MAY_APPLY:
                self._bytes -= _size(reply)
        elif mark - before <= len(replies):
            for seq in range(before + 1, mark + 1):
                reply = replies.pop(seq, MAY_APPLY)
                if reply is not MAY_APPLY:
                    self._bytes -= _size(reply)
        else:  # a jump past more numbers than are recorded: look at those recorded
            for seq in [s for s in replies if s <= mark]:
                self._bytes -= _size(replies.pop(seq))

    def purge(self, now: int) -> int:
        """Drop every session whose deadline is at or before ``now``; how many."""
        heap, sessions, dropped = self._heap, self._sessions, 0
        while heap and heap[0][0] <= now:
            _, sid = heapq.heappop(heap)
            session = sessions.get(sid)
            if session is None:
                continue  # closed
            if session.deadline <= now:
                self._forget(sid)
                dropped += 1
            else:  # used since this entry was pushed: one entry per session, moved on
                heapq.heappush(heap, (session.deadline, sid))
        return dropped

    def _live(self, sid: int, now: int) -> Session | None:
        session = self._sessions.get(sid)
        if session is not None and session.last_used + session.timeout_ms <= now:  # deadline
            self._forget(sid)
            return None
        return session

    def _forget(self, sid: int) -> None:
        """Drop session ``sid`` (if any) and its replies' bytes."""
        session = self._sessions.pop(sid, None)
        if session is not None:
            self._bytes -= sum(_size(reply) for reply in session.replies.values())


# -- recorded replies: kept as they are, counted (and in snapshots) as msgpack bytes ------

MAY_APPLY: Any = object()  # ``recorded``'s answer for a command that is new
_DROPPED: Any = object()  # "applied, its reply not kept"
_DROPPED_BLOB = msgpack.packb(msgpack.ExtType(_EXT_DROPPED, b""))
_DROPPED_SIZE = len(_DROPPED_BLOB)


class _Packed(bytes):
    """A recorded reply kept as its msgpack bytes (a list: its owner could change it)."""

    __slots__ = ()


def _int_size(value: int) -> int:
    """Bytes of ``value`` packed by msgpack (positive as uint, negative as int)."""
    if -32 <= value <= 127:
        return 1
    if value > 0:
        return 2 if value < 1 << 8 else 3 if value < 1 << 16 else 5 if value < 1 << 32 else 9
    if value >= -(1 << 15):
        return 2 if value >= -(1 << 7) else 3
    return 5 if value >= -(1 << 31) else 9


def _bytes_size(value: bytes) -> int:
    n = len(value)
    return n + (2 if n < 1 << 8 else 3 if n < 1 << 16 else 5)


_STATUS_SIZES: dict[Any, int] = {}  # SimpleString -> its packed size (OK, QUEUED, ...)


def _kept_size(reply: Any, pack: Any) -> tuple[Any, int]:
    """What the table keeps for ``reply`` and the bytes it counts: len(pack(reply))."""
    t = type(reply)
    if t is int and _INT64_MIN <= reply <= _UINT64_MAX:
        return reply, _int_size(reply)
    if t is bytes:
        return reply, _bytes_size(reply)
    if reply is None:
        return None, 1
    if t is SimpleString:
        size = _STATUS_SIZES.get(reply)
        if size is None:
            size = len(pack(reply))
            if len(_STATUS_SIZES) < 64:
                _STATUS_SIZES[reply] = size
        return reply, size
    if t is ErrorReply:
        return reply, len(pack(reply))
    # A list, or what a script answered that msgpack cannot hold (an int past 64 bits:
    # ``return 1e300``). Kept only if ``decode_reply`` reads it back; else "applied, reply
    # not kept". attack14: the pack raised after the script had written, the (session, seq)
    # stayed unrecorded and every retry ran the script again; and a table nested past
    # ``decode_reply``'s depth was kept, so its retry answered an internal error and every
    # snapshot holding it failed to load.
    try:
        _check_reply(reply, 0)
        blob = _Packed(pack(reply))
    except (KVDecodeError, TypeError, ValueError, OverflowError):
        return _DROPPED, _DROPPED_SIZE
    return blob, len(blob)


def _size(kept: Any) -> int:
    """The bytes counted for a reply the table keeps (as ``_kept_size`` counted it)."""
    t = type(kept)
    if t is int:
        return _int_size(kept)
    if t is bytes:
        return _bytes_size(kept)
    if kept is None:
        return 1
    if t is _Packed:
        return len(kept)
    if kept is _DROPPED:
        return _DROPPED_SIZE
    return _kept_size(kept, encode_reply)[1]


def _kept(blob: bytes) -> Any:
    """What the table keeps for a reply recorded as ``blob`` (a snapshot's; checked)."""
    reply = decode_reply(blob)
    return _Packed(blob) if type(reply) is list else reply


def _blob(kept: Any, pack: Any) -> bytes:
    """The msgpack bytes of a reply the table keeps (for a snapshot)."""
    if type(kept) is _Packed:
        return bytes(kept)
    return _DROPPED_BLOB if kept is _DROPPED else pack(kept)


def _default(obj: Any) -> Any:
    if isinstance(obj, SimpleString):
        return msgpack.ExtType(_EXT_SIMPLE, obj.text.encode())
    if isinstance(obj, ErrorReply):
        return msgpack.ExtType(_EXT_ERROR, obj.text.encode())
    raise TypeError(f"cannot record a {type(obj).__name__} reply")


def _ext(code: int, data: bytes) -> Any:
    if code == _EXT_SIMPLE:
        return SimpleString(data.decode())
    if code == _EXT_ERROR:
        return ErrorReply(data.decode())
    if code == _EXT_DROPPED:
        return _DROPPED
    raise KVDecodeError(f"recorded reply has unknown type {code}")


def encode_reply(reply: Any) -> bytes:
    """A state-machine reply (bytes, int, None, list, SimpleString, ErrorReply) as bytes."""
    return msgpack.packb(reply, default=_default, use_bin_type=True)


def decode_reply(blob: bytes) -> Any:
    """The reply ``encode_reply`` wrote; ``KVDecodeError`` if the bytes are not one."""
    try:
        reply = msgpack.unpackb(blob, ext_hook=_ext, raw=False, use_list=True)
    except KVDecodeError:
        raise
    except Exception as exc:  # msgpack raises several types for the many ways bytes are bad
        raise KVDecodeError(f"recorded reply is not valid ({exc!r})") from None
    _check_reply(reply, 0)
    return reply


# A recorded reply nests at most this deep: a script's reply up to its own bound (64,
# ``scripts.MAX_REPLY_DEPTH``), inside an EXEC's list, with room to spare.
MAX_DEPTH = 80


def _check_reply(reply: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise KVDecodeError("recorded reply nests too deep")
    if type(reply) is list:
        for item in reply:
            _check_reply(item, depth + 1)
    elif not (reply is None or reply is _DROPPED
              or type(reply) in (bytes, int, SimpleString, ErrorReply)):
        raise KVDecodeError(f"recorded reply holds a {type(reply).__name__}")


# -- snapshots ---------------------------------------------------------------------------

def sessions_to_wire(sessions: dict[int, Session]) -> list[Any]:
    """Sessions as a msgpack-ready list, sorted by id: equal tables give equal bytes."""
    return [[sid, s.timeout_ms, s.last_used, s.highest, sorted(s.replies.items())]
            for sid, s in sorted(sessions.items())]


def sessions_from_wire(obj: Any) -> dict[int, Session]:
    """The sessions in a snapshot, checked; ``KVDecodeError`` if invalid."""
    if type(obj) is not list or len(obj) > MAX_SESSIONS:
        raise KVDecodeError("snapshot sessions are not a bounded list")
    out: dict[int, Session] = {}
    for item in obj:
        if type(item) is not list or len(item) != 5:
            raise KVDecodeError("snapshot session is not [id, timeout, used, highest, replies]")
        sid, timeout_ms, last_used, highest, replies = item
        for value in (sid, timeout_ms, last_used, highest):
            if type(value) is not int or not 0 <= value <= _INT64_MAX:
                raise KVDecodeError("snapshot session holds a bad number")
        if sid in out or type(replies) is not list or len(replies) > WINDOW:
            raise KVDecodeError("snapshot session is duplicated or holds too many replies")
        kept: dict[int, bytes] = {}
        mark = max(0, highest - WINDOW)
        for pair in replies:
            if (type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int
                    or type(pair[1]) is not bytes or len(pair[1]) > MAX_REPLY_BYTES):
                raise KVDecodeError("snapshot session reply is not [seq, bytes]")
            if not mark < pair[0] <= highest:  # what ``record`` leaves: inside the window
                raise KVDecodeError("snapshot session reply is outside its window")
            decode_reply(pair[1])
            kept[pair[0]] = pair[1]
        out[sid] = Session(timeout_ms, last_used, highest, kept)
    return out
