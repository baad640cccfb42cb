"""Attacker round 4: KEYS and SCAN MATCH inside MULTI/EXEC run on every replica's apply loop.

Outside a transaction they are sliced (sliced.py); inside one they run when the EXEC entry
applies, at once, on every replica. A pattern with ``?``, ``[`` or ``\\`` runs glob.py's
Python port of Redis's matcher, about 0.5 us per byte of each key: one ``SCAN 0 MATCH ?*x``
over an 8 MiB key held apply for 3.7 s, and a transaction may queue 100,000 of them (SCAN
is not even ``@dangerous``: an application user with ``-@dangerous`` can send it). Redis
does the same work in C, about 1,000 times faster. Expected: the matcher's work in one
entry is bounded, deterministically (the same answer on every replica): past the bound the
command answers an error instead of matching on.

The matcher is linear now (pscost: segments found in C), but a pattern of many sets still
costs about the key's length times its sets, counted in work units of about one old step:
``*[bc][bc]...*a`` (16 sets) over the 2 MiB key counts ~2.1M units, over the bound. The
assertions are on the replies, not on time.
"""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from wire.reply import ErrorReply

T = 1_700_000_000_000
LONG_KEY = b"a" * (2 * 1024 * 1024)
SETS = b"*" + b"[bc]" * 16 + b"*a"  # each set searched along the whole key
RANGES = b"*" + b"[b-c]" * 16 + b"*a"


def machine() -> KVStateMachine:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", LONG_KEY, b"v"], T))
    kv.apply(encode_entry([b"MSET", b"user:1", b"x", b"user:2", b"y"], T))
    return kv


def exec_(kv: KVStateMachine, *commands: list[bytes]) -> object:
    return kv.apply(encode_entry([b"EXEC", encode_exec([], list(commands))], T))


def test_slow_patterns_in_one_transaction_are_bounded() -> None:
    kv = machine()
    replies = exec_(kv, [b"KEYS", SETS], [b"SCAN", b"0", b"MATCH", RANGES],
                    [b"SET", b"k", b"v"])
    assert isinstance(replies, list)
    assert isinstance(replies[0], ErrorReply) and "matcher steps" in replies[0].text, replies[0]
    assert isinstance(replies[1], ErrorReply), replies[1]
    assert replies[2].text == "OK"  # the other commands of the transaction still run


def test_ordinary_patterns_in_a_transaction_still_answer() -> None:
    kv = machine()
    replies = exec_(kv, [b"KEYS", b"user:?"], [b"KEYS", b"*x"],
                    [b"SCAN", b"0", b"MATCH", b"user:[12]"], [b"KEYS", b"u*"])
    assert isinstance(replies, list)
    scan = replies.pop(2)
    assert replies == [[b"user:1", b"user:2"], [], [b"user:1", b"user:2"]]
    assert scan[0] == b"0" and sorted(scan[1]) == [b"user:1", b"user:2"]  # SCAN's hash order


def test_the_bound_is_per_entry() -> None:
    """Each entry starts afresh: a transaction that hit the bound does not fail the next."""
    kv = machine()
    assert isinstance(exec_(kv, [b"KEYS", SETS])[0], ErrorReply)
    assert exec_(kv, [b"KEYS", b"user:?"]) == [[b"user:1", b"user:2"]]


def test_keys_walked_by_one_transaction_are_bounded() -> None:
    """Not only the matcher: every KEYS walks the whole keyspace and every SCAN up to its
    COUNT (10,000), on every replica's apply loop, and a transaction holds 100,000 of them.
    With 20,000 keys, ``SCAN 0 COUNT 10000`` took 7.6 ms and ``KEYS *`` 3.5 ms each: one
    EXEC of 100,000 SCANs (a 2.7 MB request, and SCAN is not @dangerous) holds every
    replica for ~13 minutes, and KEYS over 1M keys for days. Expected: the keys one entry
    walks are bounded (1,000,000), past which KEYS/SCAN answer an error."""
    kv = KVStateMachine()
    pairs = [x for i in range(20_000) for x in (b"k:%06d" % i, b"v")]
    kv.apply(encode_entry([b"MSET", *pairs], T))
    scan = [b"SCAN", b"0", b"COUNT", b"10000"]
    replies = exec_(kv, *[scan] * 150, [b"KEYS", b"*"], [b"SET", b"x", b"1"])
    assert isinstance(replies, list)
    assert all(isinstance(r, list) for r in replies[:100])  # 100 x 10,000 keys walked
    over = replies[100:151]
    assert all(isinstance(r, ErrorReply) and "walk" in r.text for r in over), over[0]
    assert replies[151].text == "OK"
    assert exec_(kv, [b"KEYS", b"k:00000*"])[0] == [b"k:%06d" % i for i in range(10)]


def test_bytes_copied_by_setrange_and_append_in_one_transaction_are_bounded() -> None:
    """Values are immutable bytes: every SETRANGE or APPEND copies the whole value. On an
    8 MiB value, ``SETRANGE big 0 y`` (25 bytes in a transaction) took 28-66 ms of every
    replica's apply; one EXEC of 100,000 of them (2.5 MB) ~1-2 hours. Expected: the bytes
    one entry copies this way are bounded (256 MiB), past which they answer an error."""
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"big", b"x" * (4 * 1024 * 1024)], T))
    replies = exec_(kv, *[[b"SETRANGE", b"big", b"0", b"y"]] * 70,
                    *[[b"APPEND", b"big", b"z"]] * 5, [b"SET", b"x", b"1"],
                    [b"COPY", b"big", b"big2"])
    assert isinstance(replies, list)
    assert replies[:63] == [4 * 1024 * 1024] * 63  # 63 x 4 MiB + 4 bytes fit in 256 MiB
    over = replies[64:75]
    assert all(isinstance(r, ErrorReply) and "copy" in r.text for r in over), over[0]
    assert replies[75].text == "OK"
    assert replies[76] == 1  # COPY shares no bound with them (a reference, not a copy)
    assert kv.apply(encode_entry([b"APPEND", b"big", b"z"], T)) == 4 * 1024 * 1024 + 1
