"""An EXEC that would copy or walk too much when it applies is refused before it is proposed
(raftkv/kv/entry_cost.py, issue 12, harden11), by the state of the node that checks it (the
one a client talks to, and the leader again for a forwarded EXEC). On main one EXEC of 32
one-byte APPENDs to an 8 MiB value copied 256 MiB on every replica (~140 ms of CPU
unloaded, seconds under load), and KEYS, SCAN, RANDOMKEY or DBSIZE inside MULTI walked the
whole keyspace at apply. Entries already in a log still apply as before."""

from __future__ import annotations

from pathlib import Path

import trio

from chaos.cluster import free_ports
from raftkv.kv import encode_entry, encode_exec, entry_cost, glob
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.server import transaction
from raftkv.server.transaction import QUEUED, Transaction
from raftkv.testing import idle_node, one_node_leader

MIB = 1024 * 1024
LIMIT = 2 * MIB  # what the nodes below may copy: 2 x their max-request-bytes (1 MiB)
VALUE = 600_000  # three copies of it fit in LIMIT, four do not


def node(**settings: object) -> Node:
    return idle_node(**{"max_request_bytes": MIB, **settings})


def apply(n: Node, *args: bytes) -> object:
    """Apply ``args`` as a committed entry would (the entry counter is its index)."""
    return n.kv.apply(encode_entry(list(args), 1_700_000_000_000))


def exec_args(*commands: list[bytes]) -> list[bytes]:
    return [b"EXEC", encode_exec([], list(commands))]


def text(reply: object) -> str:
    return getattr(reply, "text", "")


COPY_OVER = "EXECABORT Transaction discarded because of: ERR SETRANGE and APPEND in this"
WALK_OVER = "EXECABORT Transaction discarded because of: ERR KEYS, SCAN, RANDOMKEY and DBSIZE"


def test_appends_to_a_big_value_are_bounded_in_all_and_old_entries_still_apply() -> None:
    n = node()
    apply(n, b"SET", b"big", b"x" * VALUE)
    three = exec_args(*[[b"APPEND", b"big", b"y"]] * 3)
    assert n.check(three) is None
    four = exec_args(*[[b"APPEND", b"big", b"y"]] * 4)
    refused = text(n.check(four))
    assert refused.startswith(COPY_OVER), refused
    assert f"would copy {4 * VALUE + 10} bytes of values, over {LIMIT}" in refused
    # the same, forwarded inside RAFT ONCE; and nothing is proposed
    assert text(n.check([b"once", b"1", b"1", *four])).startswith(COPY_OVER)
    assert text(n.submit(four).value).startswith(COPY_OVER)
    # an entry already in a log applies as it did: the bound is never checked at apply
    assert apply(n, *four) == [VALUE + 1, VALUE + 2, VALUE + 3, VALUE + 4]


def test_the_transactions_own_writes_count() -> None:
    n = node()
    appends = [[b"APPEND", b"k", b"y"]] * 4
    assert n.check(exec_args(*appends)) is None  # k is missing: the first creates it
    built = exec_args([b"SET", b"k", b"x" * VALUE], *appends)
    assert text(n.check(built)).startswith(COPY_OVER)
    for reset in ([b"DEL", b"k"], [b"FLUSHALL"]):
        assert n.check(exec_args([b"SET", b"k", b"x" * VALUE], reset, *appends)) is None
    moved = exec_args([b"SET", b"a", b"x" * VALUE], [b"RENAME", b"a", b"k"], *appends)
    assert text(n.check(moved)).startswith(COPY_OVER)


def test_setrange_far_into_a_value_counts_the_value_it_builds() -> None:
    n = node()
    far = [b"SETRANGE", b"k", b"%d" % (VALUE - 1), b"y"]
    assert n.check(exec_args(*[far] * 3)) is None
    assert text(n.check(exec_args(*[far] * 4))).startswith(COPY_OVER)


def test_one_copy_larger_than_the_bound_is_allowed_alone() -> None:
    """As at apply: a single APPEND to a value longer than the bound is allowed (it would
    be outside MULTI), a second one is not."""
    n = node()
    apply(n, b"SET", b"big", b"x" * (3 * MIB))
    assert n.check(exec_args([b"APPEND", b"big", b"y"], [b"INCR", b"n"])) is None
    assert text(n.check(exec_args(*[[b"APPEND", b"big", b"y"]] * 2))).startswith(COPY_OVER)


def test_after_a_script_a_copy_counts_as_a_maximal_value() -> None:
    """A script may have written any key, at up to 8 MiB."""
    n = node()
    script = [b"EVAL", b"redis.call('SET', KEYS[1], string.rep('x', 8000000))", b"1", b"k"]
    assert n.check(exec_args(script, [b"APPEND", b"k", b"y"])) is None
    assert text(n.check(exec_args(script, *[[b"APPEND", b"k", b"y"]] * 2))).startswith(
        COPY_OVER)


def test_keyspace_walks_in_a_transaction_are_bounded_by_the_keyspace() -> None:
    n = node(max_keys_per_command=5)
    apply(n, b"MSET", *[a for i in range(5) for a in (b"k%d" % i, b"v")])
    for walk in ([b"KEYS", b"*"], [b"SCAN", b"0"], [b"RANDOMKEY"]):
        assert n.check(exec_args(walk)) is None, walk
        refused = text(n.check(exec_args([b"SET", b"new", b"v"], walk)))
        assert refused == (f"{WALK_OVER} in this transaction would walk 6 keys, over "
                           "max-keys-per-command 5: run them outside MULTI"), walk
    assert text(n.check(exec_args([b"KEYS", b"*"], [b"SCAN", b"0"]))).startswith(WALK_OVER)
    assert n.check(exec_args([b"FLUSHALL"], [b"SET", b"a", b"v"], [b"KEYS", b"*"])) is None


def test_dbsize_in_a_transaction_counts_the_keys_with_a_deadline() -> None:
    n = node(max_keys_per_command=3)
    apply(n, b"MSET", *[a for i in range(10) for a in (b"k%d" % i, b"v")])
    assert n.check(exec_args(*[[b"DBSIZE"]] * 3)) is None  # no deadlines: nothing walked
    for i in range(2):
        apply(n, b"EXPIRE", b"k%d" % i, b"100")
    assert n.check(exec_args([b"DBSIZE"])) is None
    assert text(n.check(exec_args([b"DBSIZE"], [b"DBSIZE"]))).startswith(WALK_OVER)


def test_exec_through_the_client_ports_transaction_answers_execabort() -> None:
    n = node(max_keys_per_command=2)
    apply(n, b"MSET", b"a", b"1", b"b", b"2", b"c", b"3")
    tx = Transaction(queue=[])
    assert transaction.enqueue(n, tx, [b"KEYS", b"*"], False).value is QUEUED
    reply = transaction.exec_(n, tx)
    assert reply.done and text(reply.value).startswith(WALK_OVER)
    assert tx.queue is None  # the transaction is over, as after any EXEC


GLOB_OVER = "EXECABORT Transaction discarded because of: ERR pattern matching in this"


def test_patterns_over_long_keys_are_matched_by_the_proposer_up_to_a_bound() -> None:
    """Three 1 MiB key names: ``*a?b*`` searches each (~590,000 matcher units, which every
    replica would spend at apply, unsliced); ``*x*`` is matched in C and not counted, and
    ``?*x`` looks at both ends of a key only."""
    n = node(max_keys_per_command=8)
    apply(n, b"MSET", *[a for i in range(3) for a in (b"%d" % i + b"a" * MIB, b"v")])
    assert n.check(exec_args([b"KEYS", b"*x*"], [b"SCAN", b"0", b"MATCH", b"?*x"])) is None
    for walk in ([b"KEYS", b"*a?b*"], [b"SCAN", b"0", b"MATCH", b"*a?b*", b"COUNT", b"5"]):
        refused = text(n.check(exec_args(walk)))
        assert refused == (f"{GLOB_OVER} transaction would take over 10000 matcher steps "
                           "(patterns with ?, [ or \\ over long keys): run this KEYS or SCAN "
                           "outside MULTI"), walk
    assert n.check(exec_args([b"FLUSHALL"], [b"KEYS", b"*a?b*"])) is None  # none left
    # the transaction's own keys count too
    n = node(max_keys_per_command=8, max_request_bytes=8 * MIB)
    long = [[b"SET", b"%d" % i + b"a" * MIB, b"v"] for i in range(3)]
    assert text(n.check(exec_args(*long, [b"KEYS", b"*a?b*"]))).startswith(GLOB_OVER)


def test_a_write_that_may_not_happen_keeps_the_length_it_may_leave() -> None:
    """attack12: ``SET big x NX`` (and SETNX, MSETNX, a CAS that fails, RENAME of a missing
    key or of a key onto itself, RENAMENX or COPY onto an existing key) leaves ``big`` as
    it was, but the estimate took the new length: the APPENDs after it passed the check
    and copied up to 256 MiB at apply (0.13 s of CPU for 100 one-byte APPENDs to 8 MiB)."""
    n = node()
    apply(n, b"SET", b"big", b"x" * VALUE)
    apply(n, b"SET", b"small", b"x")
    appends = [[b"APPEND", b"big", b"y"]] * 4
    for first in ([b"SET", b"big", b"x", b"NX"], [b"SETNX", b"big", b"x"],
                  [b"MSETNX", b"big", b"x"], [b"CAS", b"big", b"nope", b"x"],
                  [b"SET", b"big", b"x", b"XX", b"EX", b"10"],
                  [b"RENAME", b"missing", b"big"], [b"RENAME", b"big", b"big"],
                  [b"RENAMENX", b"small", b"big"], [b"COPY", b"small", b"big"]):
        assert text(n.check(exec_args(first, *appends))).startswith(COPY_OVER), first
    # an unconditional write still sets the length: these copy a few bytes
    for first in ([b"SET", b"big", b"x"], [b"SET", b"big", b"x", b"GET", b"EX", b"10"],
                  [b"GETSET", b"big", b"x"]):
        assert n.check(exec_args(first, *appends)) is None, first


def test_the_proposers_matching_stops_within_a_long_key() -> None:
    """attack12: the bound was tested after each whole key, so one 4 MiB key name made the
    check of a 20-byte ``EXEC`` of ``KEYS *a?b*`` match all of it (787,000 units, 30-60
    ms of the proposer's loop each time it was sent, every time refused)."""
    n = node(max_keys_per_command=8)
    apply(n, b"SET", b"a" * (4 * MIB), b"v")
    work = entry_cost._glob_units(n.kv, [(b"*a?b*", True)], [])
    assert entry_cost.GLOB_UNITS < work <= entry_cost.GLOB_UNITS + 2 * glob.STEP
    assert text(n.check(exec_args([b"KEYS", b"*a?b*"]))).startswith(GLOB_OVER)


def test_dbsize_counts_the_deadlines_the_transaction_gives() -> None:
    """attack12: DBSIZE walks every key with a deadline at apply (unbounded there), and the
    estimate counted only the node's: 512 SETEX then 512 DBSIZE walked 262,144 deadlines
    with the estimate at 0; after a script setting 5,000 keys with PX, 1,023 DBSIZE walked
    5 million."""
    n = node(max_keys_per_command=1024)
    setex = [[b"SETEX", b"k%d" % i, b"100", b"v"] for i in range(512)]
    assert n.check(exec_args(*setex, [b"DBSIZE"])) is None  # 512 walked
    assert text(n.check(exec_args(*setex, [b"DBSIZE"], [b"DBSIZE"], [b"DBSIZE"]))).startswith(
        WALK_OVER)
    script = [b"EVAL", b"for i=1,5000 do redis.call('SET', 'k'..i, 'v', 'PX', '100000') end",
              b"0"]
    assert text(n.check(exec_args(script, [b"DBSIZE"]))).startswith(WALK_OVER)
    assert n.check(exec_args(script, [b"FLUSHALL"], [b"DBSIZE"])) is None
    assert n.check(exec_args([b"DBSIZE"], script)) is None  # a walk before the script


def test_writes_in_flight_count_before_the_transaction() -> None:
    """attack12: ``SET k <600 KB>`` (or SETRANGE, or a RAFT ONCE of an EXEC doing it)
    pipelined before an ``EXEC`` of APPENDs to ``k`` was checked against a ``k`` the SET
    had not made yet, and copied up to 256 MiB at apply (live: 5 such pipelines, 0.8-3.1 s
    of CPU on each node, a follower's probe SET stalled 0.94 s or timed out UNKNOWN)."""
    n = node()
    four = exec_args(*[[b"APPEND", b"k", b"y"]] * 4)
    big = encode_entry([b"SET", b"k", b"x" * VALUE], 1)
    far = encode_entry([b"SETRANGE", b"k", b"%d" % VALUE, b"x"], 1)
    once = encode_entry([b"once", b"1", b"1", *exec_args([b"SET", b"k", b"x" * VALUE])], 1)
    for inflight in ([big], [far], [once], [b"\xc1 not an entry", big]):
        def unapplied(entries: list[bytes] = inflight) -> list[bytes]:
            return entries
        refused = entry_cost.refusal(n.kv, four, copy_limit=LIMIT, walk_limit=1024,
                                     unapplied=unapplied)
        assert text(refused).startswith(COPY_OVER), inflight
        assert entry_cost.refusal(n.kv, four, copy_limit=LIMIT, walk_limit=1024) is None
    # a DEL in flight after it, or too much in flight to replay (counted as unknown)
    gone = encode_entry([b"DEL", b"k"], 1)
    assert entry_cost.refusal(n.kv, four, copy_limit=LIMIT, walk_limit=1024,
                              unapplied=lambda: [big, gone]) is None
    unknown = text(entry_cost.refusal(n.kv, four, copy_limit=LIMIT, walk_limit=1024,
                                      unapplied=lambda: None))
    assert unknown.startswith(COPY_OVER) and unknown.endswith(
        "(or retry: over 2000 commands or 4194304 bytes were proposed and not yet applied "
        "on this node, counted as unknown writes)"), unknown
    # keys added in flight count for KEYS too
    mset = encode_entry([b"MSET", *[a for i in range(6) for a in (b"k%d" % i, b"v")]], 1)
    assert text(entry_cost.refusal(n.kv, exec_args([b"KEYS", b"*"]), copy_limit=LIMIT,
                                   walk_limit=5, unapplied=lambda: [mset])).startswith(WALK_OVER)


async def test_a_leader_checks_against_its_proposed_writes(tmp_path: Path) -> None:
    """The node passes its log past the applied index: a SET proposed and not yet applied
    counts for the EXEC checked right after it (nothing yields between the two)."""
    async with one_node_leader(tmp_path / "data", *free_ports(2), fsync="never",
                               max_request_bytes=MIB) as node:
        with trio.fail_after(20):
            four = exec_args(*[[b"APPEND", b"k", b"y"]] * 4)
            assert node.check(four) is None
            pending = node.submit([b"SET", b"k", b"x" * VALUE])
            assert node.kv.stored_len(b"k") == 0  # proposed, not applied
            assert text(node.check(four)).startswith(COPY_OVER)
            await pending.wait()
            assert text(node.check(four)).startswith(COPY_OVER)


async def test_an_exec_parked_behind_writes_is_checked_again_when_they_are_proposed(
        tmp_path: Path) -> None:
    """attack12: commands parked while there is no leader are dispatched in order once
    one is known; an EXEC checked while ``SET k <600 KB>`` was parked before it (in no log)
    was proposed after it unchecked."""
    async with one_node_leader(tmp_path / "data", *free_ports(2), fsync="never",
                               max_request_bytes=MIB) as node:
        with trio.fail_after(20):
            four = exec_args(*[[b"APPEND", b"k", b"y"]] * 4)
            assert node.check(four) is None
            until = trio.current_time() + 10
            node.requests.park([b"SET", b"k", b"x" * VALUE], True, Pending(), until)
            parked = Pending()
            node.requests.park(four, True, parked, until)
            node._unpark()
            assert text(await parked.wait()).startswith(COPY_OVER)
