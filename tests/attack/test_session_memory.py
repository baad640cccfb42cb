"""The session table's memory (attack3). Each of 16,384 sessions keeps the replies of its
last 64 sequence numbers, each up to 1 KiB: 1 GiB of recorded replies per replica (measured:
16,384 full sessions of 1,000-byte GETSET replies, 1.1 GB RSS), which DBSIZE does not show,
FLUSHALL does not free, and every snapshot copies. One client reaches it with ~1M pipelined
``RAFT ONCE`` writes. The replies kept across the whole table need a bound of their own."""

from __future__ import annotations

import msgpack

from raftkv.kv import sessions
from raftkv.kv.sessions import MAY_APPLY, WINDOW, SessionTable, decode_reply, sessions_to_wire


def test_recorded_replies_are_bounded_across_the_table() -> None:
    table = SessionTable()
    value = b"x" * 1000
    n_sessions = 1100  # 1100 x 64 x ~1 KB: 70 MB of 1 KB replies
    for sid in range(1, n_sessions + 1):
        assert table.open(sid, 600_000, 0) is None
        for seq in range(1, WINDOW + 1):
            table.record(sid, seq, value)
    kept = sum(len(blob) for s in table.state().values() for blob in s.replies.values()
               if decode_reply(blob) == value)  # not the few-byte "applied" markers
    assert kept <= 64 * 1024 * 1024, f"{kept / 2**20:.0f} MiB of replies kept"
    # A session opened when the budget is spent still records that its commands applied:
    # a duplicate answers the 'already applied' error, never a second apply.
    assert table.recorded(n_sessions, WINDOW, 0) is not MAY_APPLY
    table.open(n_sessions + 1, 600_000, 0)
    table.record(n_sessions + 1, 1, value)
    assert table.recorded(n_sessions + 1, 1, 0) is not MAY_APPLY


def test_the_budget_is_the_same_after_a_snapshot() -> None:
    """A replica restored from a snapshot must keep or drop the same replies as one that
    applied the log (the budget is part of the deterministic state)."""
    value = b"y" * 1000
    live = SessionTable()
    for sid in range(1, 1100):
        live.open(sid, 600_000, 0)
        for seq in range(1, WINDOW + 1):
            live.record(sid, seq, value)
    wire = msgpack.unpackb(msgpack.packb(sessions_to_wire(live.state())), raw=False)
    restored = SessionTable(sessions.sessions_from_wire(wire))
    for table in (live, restored):
        table.open(5000, 600_000, 0)
        table.record(5000, 1, value)
    assert (decode_reply(live.state()[5000].replies[1])
            == decode_reply(restored.state()[5000].replies[1]))
