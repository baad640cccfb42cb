"""--max-keys-per-command (raftkv/kv/key_cap.py, issue 12): a command, or a MULTI/EXEC's
commands together, naming more keys than the bound is refused before it is proposed or
read, on the node a client talks to and on the leader for a forwarded one. On main one
100,000-key MSET held every replica's loop ~85 ms, a DEL of as many ~0.4 s, an EXEC of
100,000 SETs ~0.6 s. Entries already in a log apply whatever the bound."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.server import transaction
from raftkv.server.transaction import EXECABORT, QUEUED, Transaction
from raftkv.testing import idle_node

LIMIT = 1024  # the default


node = idle_node


def keys(n: int, tag: bytes = b"k") -> list[bytes]:
    return [b"%s%d" % (tag, i) for i in range(n)]


def pairs(n: int) -> list[bytes]:
    return [a for k in keys(n) for a in (k, b"v")]


def text(reply: object) -> str:
    return getattr(reply, "text", "")


def test_a_write_naming_more_keys_than_the_default_is_refused_before_proposing() -> None:
    n = node()
    for command in (b"MSET", b"MSETNX"):
        assert n.check([command, *pairs(LIMIT)]) is None
        refused = n.check([command, *pairs(LIMIT + 1)])
        assert text(refused) == "ERR command of 1025 keys exceeds max-keys-per-command 1024"
    for command in (b"DEL", b"UNLINK"):
        assert n.check([command, *keys(LIMIT)]) is None
        assert "1025 keys" in text(n.check([command, *keys(LIMIT + 1)]))
    # a script's declared keys; what it names in ARGV is not a key
    script = [b"EVAL", b"return 1", b"%d" % (LIMIT + 1), *keys(LIMIT + 1)]
    assert "1025 keys exceeds" in text(n.check(script))
    assert n.check([b"EVAL", b"return 1", b"1", b"k", *keys(5000)]) is None


def test_the_flag_sets_the_bound() -> None:
    n = node(max_keys_per_command=3)
    assert n.check([b"MSET", *pairs(3)]) is None
    assert text(n.check([b"DEL", *keys(4)])) == (
        "ERR command of 4 keys exceeds max-keys-per-command 3")
    assert n.check([b"SET", b"k", b"v", b"EX", b"10"]) is None  # 5 arguments, one key
    # the leader's expiry batches are its own (500 keys), whatever the flag
    assert n.check([b"EXPIRED", *keys(500)]) is None


def test_a_read_naming_too_many_keys_is_refused_before_its_read_index() -> None:
    n = node(max_keys_per_command=3)
    for command in (b"MGET", b"EXISTS", b"TOUCH"):
        reply = n.submit([command, *keys(4)])
        assert reply.done and text(reply.value) == (
            "ERR command of 4 keys exceeds max-keys-per-command 3"), command
    assert n.stats["reads"] == 0
    big = node().submit([b"MGET", *keys(100_000)])
    assert big.done and "100000 keys" in text(big.value)


def test_a_transaction_counts_its_commands_keys_together() -> None:
    n = node(max_keys_per_command=5)
    tx = Transaction(queue=[])
    assert transaction.enqueue(n, tx, [b"MSET", *pairs(3)], False).value is QUEUED
    assert transaction.enqueue(n, tx, [b"INCR", b"n"], False).value is QUEUED
    assert transaction.enqueue(n, tx, [b"PING"], True).value is QUEUED  # not a key
    refused = transaction.enqueue(n, tx, [b"DEL", b"a", b"b"], False).value
    assert text(refused) == "ERR transaction of 6 keys exceeds max-keys-per-command 5"
    assert transaction.exec_(n, tx).value is EXECABORT
    tx = Transaction(queue=[])  # commands without keys count one each
    for _ in range(5):
        assert transaction.enqueue(n, tx, [b"FLUSHALL"], False).value is QUEUED
    assert "6 keys" in text(transaction.enqueue(n, tx, [b"FLUSHALL"], False).value)


def test_the_leader_counts_a_forwarded_transaction_and_a_wrapped_command() -> None:
    """A follower's EXEC entry (or its RAFT ONCE) is checked again by the leader's
    ``check``, which also guards a follower with a larger bound."""
    n = node()
    many = [[b"SET", k, b"v"] for k in keys(LIMIT + 1)]
    assert "transaction of 1025 keys" in text(n.check([b"EXEC", encode_exec([], many)]))
    assert n.check([b"EXEC", encode_exec([], many[:LIMIT])]) is None
    once = [b"once", b"1", b"1", b"EXEC", encode_exec([], many)]
    assert "transaction of 1025 keys" in text(n.check(once))
    assert "command of 1025 keys" in text(n.check([b"once", b"1", b"1", b"DEL",
                                                   *keys(LIMIT + 1)]))


def test_entries_already_in_a_log_apply_whatever_the_bound() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"MSET", *pairs(2 * LIMIT)], 1), index=1)
    kv.apply(encode_entry([b"EXEC", encode_exec([], [[b"DEL", *keys(2 * LIMIT)]])], 2),
             index=2)
    assert kv.read([b"DBSIZE"]) == 0
