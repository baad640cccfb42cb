"""Attacker round 14: script replies the session table records badly.

A reply out of msgpack's range (a script's ``return 1e300``: a 301-digit int) made
``record`` raise after the script had written: apply answered ``ERR internal error
applying the command: TypeError``, the (session, seq) stayed unrecorded, and every retry
ran the script again (live, 3 nodes: the same ``RAFT ONCE id 1 EVAL ...`` sent to each
node incremented the key three times, on every replica).

Recorded replies that the table writes but cannot read back:

A script may answer a table nested up to 64 levels (``scripts.MAX_REPLY_DEPTH``), and
``RAFT ONCE id seq EVAL ...`` records that reply; ``decode_reply`` refuses more than 8
levels. So the retry of such a command answered ``ERR internal error applying the
command: KVDecodeError`` instead of its first reply, and every snapshot that held the
session failed to decode: a node refused to restart on its own snapshot ("corrupt at byte
offset 0 ... recorded reply nests too deep"), and no follower could install it.
"""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry

T0 = 1_700_000_000_000
MINUTE = 60_000
NESTED = "redis.call('incr', 'n') return {{{{{{{{{{{1}}}}}}}}}}}"  # 11 levels


def at(kv: KVStateMachine, stamp: int, *args: str | int) -> object:
    return kv.apply(encode_entry([str(a).encode() for a in args], stamp))


def _nested_once(kv: KVStateMachine) -> tuple[int, object]:
    sid = at(kv, T0, "session_open", MINUTE)
    assert isinstance(sid, int)
    first = at(kv, T0 + 1, "once", sid, 1, "eval", NESTED, 0)
    assert isinstance(first, list)  # the script ran and answered its table
    return sid, first


def test_the_retry_of_a_deeply_nested_script_reply_answers_as_a_duplicate() -> None:
    kv = KVStateMachine()
    sid, first = _nested_once(kv)
    again = at(kv, T0 + 2, "once", sid, 1, "eval", NESTED, 0)
    assert kv.state_copy()[b"n"] == b"1"  # not applied twice (this held)
    assert again == first or "already applied" in str(again), again  # not "internal error"


def test_a_snapshot_holding_a_deeply_nested_recorded_reply_restores() -> None:
    kv = KVStateMachine()
    _nested_once(kv)
    copy = KVStateMachine()
    copy.restore(kv.snapshot())  # raised KVDecodeError: "recorded reply nests too deep"
    assert copy.snapshot() == kv.snapshot()


HUGE = "redis.call('incr', 'n') return 1e300"  # a float the reply turns into a huge int


def test_a_retried_script_whose_reply_is_out_of_range_applies_once() -> None:
    kv = KVStateMachine()
    sid = at(kv, T0, "session_open", MINUTE)
    first = at(kv, T0 + 1, "once", sid, 1, "eval", HUGE, 0)
    again = at(kv, T0 + 2, "once", sid, 1, "eval", HUGE, 0)
    assert kv.state_copy()[b"n"] == b"1", (first, again)  # was b"2": applied twice
