"""Attacker round 4: the instruction budget is per script, but a transaction holds up to
100,000 scripts, all run in one entry on every replica's apply loop.

Live (3 nodes, TLS, this machine): one EXEC of 100 ``EVAL "local i = 0 while true do
i = i + 1 end" 0`` (a 5 KB request) held every node's event loop for 28 s (loop lag
28,325 ms, three leader changes: term 10 -> 13); 100,000 of them fit the 8 MiB request
limit, about 8 hours. Each script also costs its body's rewrite (lua_rewrite.py, ~0.2 s
for 64 KiB, not charged), so 128 distinct 64 KiB bodies in one EXEC cost ~25 s more.

Expected: the budget is per log entry (a transaction's scripts share one), and the
distinct script bodies one entry may prepare are bounded; what is over answers an error,
the same on every replica, and the rest of the transaction still runs."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.scripts import BUDGET_ERROR, MAX_SCRIPT_BYTES
from wire.reply import ErrorReply

T = 1_700_000_000_000
# about 4M of the 10M units each (a numeric for is one VM instruction per turn)
WORK = b"for i = 1, 4e6 do end redis.call('INCR', 'n') return 1"


def exec_(kv: KVStateMachine, *commands: list[bytes]) -> object:
    return kv.apply(encode_entry([b"EXEC", encode_exec([], list(commands))], T))


def test_scripts_in_one_transaction_share_one_budget() -> None:
    kv = KVStateMachine()
    replies = exec_(kv, *[[b"EVAL", WORK, b"0"]] * 5, [b"SET", b"after", b"1"])
    assert replies[:2] == [1, 1], replies
    assert replies[2:5] == [ErrorReply(BUDGET_ERROR)] * 3, replies
    assert replies[5].text == "OK"
    assert kv.read([b"GET", b"n"]) == b"2"  # the failing scripts wrote nothing


def test_each_entry_gets_a_fresh_budget() -> None:
    kv = KVStateMachine()
    exec_(kv, *[[b"EVAL", WORK, b"0"]] * 3)
    for _ in range(3):  # three entries of one script each: every one runs
        assert kv.apply(encode_entry([b"EVAL", WORK, b"0"], T)) == 1
    assert kv.read([b"GET", b"n"]) == b"5"


def test_distinct_bodies_one_transaction_prepares_are_bounded() -> None:
    """Each distinct body is rewritten and compiled on every replica whatever its run
    costs: 64 KiB bodies that return at once are bounded by their bytes, not the budget."""
    kv = KVStateMachine()
    pad = b"-" * (MAX_SCRIPT_BYTES - 64)
    bodies = [b"return %d\n--" % i + pad for i in range(8)]
    replies = exec_(kv, *[[b"EVAL", body, b"0"] for body in bodies])
    assert isinstance(replies, list)
    assert replies[0] == 0
    assert all(isinstance(r, ErrorReply) for r in replies[-4:]), replies
    # the same body again is not counted twice
    assert exec_(kv, *[[b"EVAL", bodies[0], b"0"]] * 8) == [0] * 8


def test_script_load_counts_against_the_same_allowance() -> None:
    """SCRIPT LOAD rewrites and compiles its body on apply too (a dense 64 KiB body: 117 ms
    here), so one EXEC of 128 distinct ones (8 MiB) held every replica ~15 s."""
    kv = KVStateMachine()
    pad = b"-" * (MAX_SCRIPT_BYTES - 64)
    bodies = [b"return %d\n--" % i + pad for i in range(8)]
    replies = exec_(kv, *[[b"SCRIPT", b"LOAD", body] for body in bodies])
    assert isinstance(replies, list)
    assert isinstance(replies[0], bytes) and len(replies[0]) == 40  # its sha
    assert all(isinstance(r, ErrorReply) for r in replies[-4:]), replies
