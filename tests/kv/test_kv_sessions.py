"""raftkv.kv client sessions: a command tagged (session, seq) applies at most once.

The state machine never reads a clock, so every test gives the leader stamps itself.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv import KVStateMachine, encode_entry, validate
from raftkv.kv import sessions as sessions_module
from raftkv.kv.errors import KVDecodeError
from raftkv.kv.sessions import WINDOW, sessions_from_wire
from raftkv.kv.state import decode_snapshot, encode_snapshot
from wire.reply import OK, ErrorReply

T0 = 1_700_000_000_000  # a stamp, ms since the epoch
MINUTE = 60_000


def b(*args: str | bytes | int) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


def at(kv: KVStateMachine, stamp: int, *args: str | bytes | int):
    return kv.apply(encode_entry(b(*args), stamp))


def opened(kv: KVStateMachine, stamp: int = T0, timeout_ms: int = MINUTE) -> int:
    sid = at(kv, stamp, "session_open", timeout_ms)
    assert isinstance(sid, int)
    return sid


@pytest.fixture
def kv() -> KVStateMachine:
    return KVStateMachine()


def test_a_retried_incr_applies_once_and_answers_the_first_reply(kv: KVStateMachine) -> None:
    sid = opened(kv)
    assert at(kv, T0 + 1, "once", sid, 1, "incr", "n") == 1
    assert at(kv, T0 + 2, "once", sid, 1, "incr", "n") == 1  # the retry: recorded reply
    assert at(kv, T0 + 3, "once", sid, 2, "incr", "n") == 2  # the next command applies
    assert kv.state_copy()[b"n"] == b"2"


def test_session_ids_are_the_entry_counter_and_differ(kv: KVStateMachine) -> None:
    at(kv, T0, "set", "a", "1")
    first, second = opened(kv), opened(kv)
    assert (first, second) == (2, 3)
    assert at(kv, T0, "once", first, 1, "append", "k", "x") == 1
    assert at(kv, T0, "once", second, 1, "append", "k", "x") == 2  # another session's seq 1


def test_out_of_order_sequence_numbers_within_the_window(kv: KVStateMachine) -> None:
    sid = opened(kv)
    assert at(kv, T0, "once", sid, 3, "append", "k", "c") == 1
    assert at(kv, T0, "once", sid, 2, "append", "k", "b") == 2  # late, never seen: applies
    assert at(kv, T0, "once", sid, 3, "append", "k", "c") == 1  # duplicates of both
    assert at(kv, T0, "once", sid, 2, "append", "k", "b") == 2
    assert kv.state_copy()[b"k"] == b"cb"


def test_a_sequence_number_below_the_window_is_never_applied(kv: KVStateMachine) -> None:
    sid = opened(kv)
    assert at(kv, T0, "once", sid, WINDOW + 10, "incr", "n") == 1
    reply = at(kv, T0, "once", sid, 10, "incr", "n")  # at the acknowledged mark
    assert isinstance(reply, ErrorReply) and "acknowledged" in reply.text
    assert at(kv, T0, "once", sid, 11, "incr", "n") == 2  # just above it: applies
    assert kv.state_copy()[b"n"] == b"2"


def test_an_idle_session_expires_by_log_time_and_refuses_commands(kv: KVStateMachine) -> None:
    sid = opened(kv, T0, timeout_ms=1000)
    assert at(kv, T0 + 999, "once", sid, 1, "incr", "n") == 1  # use moves the deadline
    assert at(kv, T0 + 1998, "once", sid, 2, "incr", "n") == 2
    reply = at(kv, T0 + 2998, "once", sid, 3, "incr", "n")  # 1000 ms idle: expired
    assert isinstance(reply, ErrorReply) and reply.text.startswith("SESSIONEXPIRED ")
    assert kv.state_copy()[b"n"] == b"2"  # never applied


def test_unknown_and_closed_sessions_refuse(kv: KVStateMachine) -> None:
    sid = opened(kv)
    assert at(kv, T0, "session_close", sid) == 1
    assert at(kv, T0, "session_close", sid) == 0
    for unknown in (sid, 999):
        reply = at(kv, T0, "once", unknown, 1, "set", "k", "v")
        assert isinstance(reply, ErrorReply) and reply.text.startswith("SESSIONEXPIRED ")
    assert kv.state_copy() == {}


def test_sessions_are_bounded_and_expired_ones_make_room(
        kv: KVStateMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 2)
    opened(kv, T0, timeout_ms=1000)
    opened(kv, T0, timeout_ms=5000)
    full = at(kv, T0 + 10, "session_open", MINUTE)
    assert isinstance(full, ErrorReply) and "too many client sessions" in full.text
    assert isinstance(at(kv, T0 + 1000, "session_open", MINUTE), int)  # the first expired


def test_a_large_reply_is_kept_only_as_applied(kv: KVStateMachine) -> None:
    sid = opened(kv)
    big = b"v" * (sessions_module.MAX_REPLY_BYTES + 1)
    at(kv, T0, "set", "k", big)
    assert at(kv, T0, "once", sid, 1, "getset", "k", "small") == big
    reply = at(kv, T0, "once", sid, 1, "getset", "k", "other")
    assert isinstance(reply, ErrorReply) and "already applied" in reply.text
    assert kv.state_copy()[b"k"] == b"small"


def test_errors_and_status_replies_are_recorded_as_they_were(kv: KVStateMachine) -> None:
    sid = opened(kv)
    at(kv, T0, "set", "s", "text")
    first = at(kv, T0, "once", sid, 1, "incr", "s")
    assert isinstance(first, ErrorReply)
    at(kv, T0, "set", "s", "5")  # the retry must not see the new value
    assert at(kv, T0, "once", sid, 1, "incr", "s") == first
    assert at(kv, T0, "once", sid, 2, "set", "x", "1") == OK
    assert at(kv, T0, "once", sid, 2, "set", "x", "1") == OK


def test_sessions_survive_a_snapshot(kv: KVStateMachine) -> None:
    sid = opened(kv, T0, timeout_ms=1000)
    assert at(kv, T0, "once", sid, 1, "incr", "n") == 1
    copy = KVStateMachine()
    copy.restore(kv.snapshot())
    assert copy == kv
    assert at(copy, T0 + 1, "once", sid, 1, "incr", "n") == 1  # still a duplicate
    reply = at(copy, T0 + 1001, "once", sid, 2, "incr", "n")  # and the deadline kept
    assert isinstance(reply, ErrorReply) and reply.text.startswith("SESSIONEXPIRED ")


def test_a_state_without_sessions_snapshots_as_version_2(kv: KVStateMachine) -> None:
    def version() -> int:  # of the state without its change feed (with it: version 4)
        return msgpack.unpackb(encode_snapshot(kv.snapshot_state(with_feed=False)))[0]

    at(kv, T0, "set", "k", "v")
    assert version() == 2
    sid = opened(kv)
    assert version() == 3
    at(kv, T0, "session_close", sid)
    assert version() == 2
    assert msgpack.unpackb(kv.snapshot())[0] == 4


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["once", "0", "1", "incr", "n"], "session id must be a positive integer"),
        (["once", "1", "-1", "incr", "n"], "sequence number must be a positive integer"),
        (["once", "1", "x", "incr", "n"], "sequence number must be a positive integer"),
        (["once", "1", "0", "incr", "n"], "sequence number must be a positive integer"),
        (["once", "1", "01", "incr", "n"], "sequence number must be a positive integer"),
        (["once", "1", "+1", "incr", "n"], "sequence number must be a positive integer"),
        (["once", "1", " 1", "incr", "n"], "sequence number must be a positive integer"),
        (["once", "1", str(2**63), "incr", "n"], "sequence number must be a positive integer"),
        (["once", "1", "1", "get", "n"], "wraps writes only"),
        (["once", "1", "1", "once", "1", "2", "incr", "n"], "cannot wrap a session command"),
        (["once", "1", "1", "incr"], "wrong number of arguments for 'incr'"),
        (["once", "1", "1", "nosuch"], "unknown command"),
        (["session_open", "0"], "session timeout must be a positive integer"),
        (["session_open", str(8 * 86_400_000)], "at most 604800 seconds"),
    ],
)
def test_hostile_session_commands_are_refused_before_proposing_and_when_applied(
        kv: KVStateMachine, args: list[str], error: str) -> None:
    refused = validate(b(*args))
    assert refused is not None and error in refused.text
    applied = at(kv, T0, *args)  # the log is input too: the same error, nothing changes
    assert isinstance(applied, ErrorReply) and error in applied.text
    assert kv.state_copy() == {} and len(kv._sessions) == 0


@pytest.mark.parametrize(
    "wire",
    [
        "not a list",
        [[1, 1000, T0, 0]],  # four fields
        [[1, 1000, T0, 0, []], [1, 1000, T0, 0, []]],  # duplicate id
        [[1, -5, T0, 0, []]],
        [[1, 1000, T0, 0, [[1, b"\xc1"]]]],  # a reply that is not msgpack
        [[1, 1000, T0, 0, [[1, msgpack.packb({"a": 1})]]]],  # a map is no reply
        [[1, 1000, T0, 0, [[i, b"\x01"] for i in range(WINDOW + 1)]]],
    ],
)
def test_a_hostile_snapshot_session_table_is_refused(wire: object) -> None:
    with pytest.raises(KVDecodeError):
        sessions_from_wire(wire)
    blob = msgpack.packb([3, {}, {}, {}, 0, 0, 0, {}, {}, wire], use_bin_type=True)
    with pytest.raises(KVDecodeError):
        decode_snapshot(blob)


_op = st.tuples(
    st.sampled_from(["once", "open", "close", "set"]),
    st.integers(1, 4),  # session (index into those opened)
    st.integers(1, 3 * WINDOW),  # seq
    st.integers(0, 3000),  # ms since the previous entry
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=60))
def test_no_sequence_number_applies_twice_and_replicas_agree(ops: list) -> None:
    """Any interleaving of opens, closes, retries and plain writes: each (session, seq)
    moves its counter at most once; a replica built from the snapshot midway agrees."""
    kv, stamp, sids = KVStateMachine(), T0, []
    applied: set[tuple[int, int]] = set()
    replica_at = len(ops) // 2
    replica = None
    for i, (kind, which, seq, dt) in enumerate(ops):
        if i == replica_at:
            replica = KVStateMachine()
            replica.restore(kv.snapshot())
        stamp += dt
        targets = [kv] if replica is None else [kv, replica]
        if kind == "open" or not sids:
            replies = [at(m, stamp, "session_open", 2000) for m in targets]
            sids.append(replies[0])
            continue
        sid = sids[(which - 1) % len(sids)]
        if kind == "once":
            key = f"c{sid}"
            before = int(kv.state_copy().get(key.encode(), b"0"))
            replies = [at(m, stamp, "once", sid, seq, "incr", key) for m in targets]
            after = int(kv.state_copy().get(key.encode(), b"0"))
            if after != before:
                assert (sid, seq) not in applied
                applied.add((sid, seq))
        elif kind == "close":
            replies = [at(m, stamp, "session_close", sid) for m in targets]
        else:
            replies = [at(m, stamp, "set", "k", str(seq)) for m in targets]
        assert all(r == replies[0] for r in replies)
    if replica is not None:
        assert replica.snapshot() == kv.snapshot()


def test_a_session_opened_with_a_drawn_id_answers_under_that_id() -> None:
    """RAFT SESSION OPEN puts a random id into the entry (attack3: counter ids let one
    user guess another's session); the same id again while it is live is refused."""
    kv = KVStateMachine()
    sid = 2**62 + 12345
    assert at(kv, T0, "session_open", MINUTE, sid) == sid
    assert at(kv, T0 + 1, "once", sid, 1, "incr", "n") == 1
    again = at(kv, T0 + 2, "session_open", MINUTE, sid)
    assert isinstance(again, ErrorReply) and again.text.startswith("TRYAGAIN"), again
    assert at(kv, T0 + 3, "once", sid, 1, "incr", "n") == 1  # still the first session's
    for bad in ((MINUTE, 0), (MINUTE, -1), (MINUTE, 2**63), (MINUTE, sid, 1)):
        assert isinstance(at(kv, T0, "session_open", *bad), ErrorReply), bad


def _window_holds(kv: KVStateMachine) -> None:
    """Each session keeps replies only inside (forgotten, highest], at most WINDOW, and the
    table's byte count is what a table rebuilt from the same sessions counts."""
    table = kv._sessions
    for session in table.state().values():
        assert len(session.replies) <= WINDOW
        assert all(session.forgotten < seq <= session.highest for seq in session.replies)
    assert table._bytes == type(table)(table.state())._bytes


def test_the_window_forgets_step_by_step_and_after_a_jump(kv: KVStateMachine) -> None:
    sid = opened(kv)
    for seq in range(1, 3 * WINDOW):  # counting up: the mark moves by one each time
        assert at(kv, T0, "once", sid, seq, "incr", "n") == seq
        _window_holds(kv)
    (session,) = kv._sessions.state().values()
    assert sorted(session.replies) == list(range(2 * WINDOW, 3 * WINDOW))
    assert at(kv, T0, "once", sid, 3 * WINDOW + 5, "incr", "n") == 3 * WINDOW  # a small gap
    _window_holds(kv)
    assert at(kv, T0, "once", sid, 10 * WINDOW, "incr", "n") == 3 * WINDOW + 1  # a jump
    _window_holds(kv)
    (session,) = kv._sessions.state().values()
    assert sorted(session.replies) == [10 * WINDOW]
    late = at(kv, T0, "once", sid, 10 * WINDOW - 1, "incr", "n")  # inside: applies
    assert late == 3 * WINDOW + 2
    _window_holds(kv)


@pytest.mark.parametrize("seq", [0, 36, 101])
def test_a_snapshot_reply_outside_its_window_is_refused(seq: int) -> None:
    # highest 100: the window is (36, 100]; a table never holds a reply outside it.
    with pytest.raises(KVDecodeError):
        sessions_from_wire([[1, 1000, T0, 100, [[seq, b"\x01"]]]])
    assert sessions_from_wire([[1, 1000, T0, 100, [[37, b"\x01"], [100, b"\x01"]]]])


def test_a_duplicate_whose_first_reply_was_nil_is_not_applied_again(kv: KVStateMachine) -> None:
    """A recorded nil is an answer: when the table said "new" for it, the retry of a
    SET NX that found the key set it after someone deleted the key (issue 19)."""
    sid = opened(kv)
    at(kv, T0, "set", "k", "v")
    assert at(kv, T0, "once", sid, 1, "set", "k", "w", "nx") is None  # not set: k exists
    at(kv, T0, "del", "k")
    assert at(kv, T0, "once", sid, 1, "set", "k", "w", "nx") is None  # the retry: nil again
    assert kv.state_copy() == {}
    restored = KVStateMachine()
    restored.restore(kv.snapshot())
    assert at(restored, T0, "once", sid, 1, "set", "k", "w", "nx") is None
    assert restored.state_copy() == {}


replies_st = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=70_000)
    | st.sampled_from([OK, ErrorReply("ERR x"), sessions_module.SimpleString("QUEUED")]),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)


@settings(max_examples=200)
@given(replies_st)
def test_a_kept_reply_counts_the_bytes_of_its_encoding(reply: object) -> None:
    """The table keeps a reply as it is and encodes it only for a duplicate or a snapshot,
    but counts (and bounds) it as its msgpack bytes, as when it kept the encodings: the
    same replies are dropped as before, on every replica, restored or not."""
    kept, size = sessions_module._kept_size(reply, sessions_module.encode_reply)
    assert size == len(sessions_module.encode_reply(reply))
    assert sessions_module._size(kept) == size


def test_a_recorded_list_is_a_copy_and_a_duplicate_answers_it() -> None:
    table = sessions_module.SessionTable()
    table.open(7, MINUTE, T0)
    reply = [b"a", 1, None]
    table.record(7, 1, reply)
    reply.append(b"changed by its owner")
    assert table.recorded(7, 1, T0) == [b"a", 1, None]
    assert table.recorded(7, 2, T0) is sessions_module.MAY_APPLY


@pytest.mark.parametrize("value", [0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32,
                                   -1, 2**63 - 1])
def test_an_int_reply_is_counted_as_its_encoding_as_the_window_moves(value: int) -> None:
    """``record`` sizes an INCR's reply (and the one the window drops) inline: the count
    must stay the msgpack bytes a rebuilt table counts, on either side of each int width."""
    table = sessions_module.SessionTable()
    table.open(7, MINUTE, T0)
    for seq in range(1, 2 * WINDOW + 2):  # the window moves by one from WINDOW + 1 on
        table.record(7, seq, value)
        assert table._bytes == len(sessions_module.encode_reply(value)) * min(seq, WINDOW)
        assert table._bytes == type(table)(table.state())._bytes
