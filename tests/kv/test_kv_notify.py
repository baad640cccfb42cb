"""Keyspace notifications (raftkv.kv.notify) from what the state machine applied, and
PUBLISH as a log command: Redis's flag letters and event names, in Redis's order."""

from __future__ import annotations

import pytest
from kv_log import T0, AppliedLog, b

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.changes import iter_changes
from raftkv.kv.notify import ALL, KEYEVENT, KEYSPACE, flags_text, keyspace_messages, parse_flags
from wire.reply import ErrorReply


class Log(AppliedLog):
    def apply(self, *args: str | bytes | int, t: int = T0, flags: str = "KEA") -> list[tuple]:
        flag_bits = parse_flags(flags)
        assert flag_bits is not None
        return list(keyspace_messages(self.apply_changes(*args, t=t), flag_bits))


def events(messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The (key, event) pairs of the keyspace channel messages."""
    prefix = b"__keyspace@0__:"
    return [(ch[len(prefix):], msg) for ch, msg in messages if ch.startswith(prefix)]


@pytest.mark.parametrize(("setup", "command", "expected"), [
    ([], ("SET", "k", "v"), [(b"k", b"set")]),
    ([], ("SET", "k", "v", "EX", 10), [(b"k", b"set"), (b"k", b"expire")]),
    ([], ("SETEX", "k", 10, "v"), [(b"k", b"set"), (b"k", b"expire")]),
    ([], ("SETNX", "k", "v"), [(b"k", b"set")]),
    ([("SET", "k", "v")], ("SETNX", "k", "w"), []),
    ([], ("MSET", "a", 1, "b", 2), [(b"a", b"set"), (b"b", b"set")]),
    ([("SET", "k", "v")], ("DEL", "k", "missing"), [(b"k", b"del")]),
    ([("SET", "k", "v")], ("UNLINK", "k"), [(b"k", b"del")]),
    ([("SET", "k", "v")], ("GETDEL", "k"), [(b"k", b"del")]),
    ([], ("INCR", "n"), [(b"n", b"incrby")]),
    ([], ("DECRBY", "n", 3), [(b"n", b"incrby")]),
    ([], ("INCRBYFLOAT", "f", "1.5"), [(b"f", b"incrbyfloat")]),
    ([], ("APPEND", "s", "x"), [(b"s", b"append")]),
    ([], ("SETRANGE", "s", 2, "x"), [(b"s", b"setrange")]),
    ([("SET", "k", "v")], ("EXPIRE", "k", 10), [(b"k", b"expire")]),
    ([("SET", "k", "v")], ("PEXPIREAT", "k", T0 - 1), [(b"k", b"del")]),
    ([("SET", "k", "v", "EX", 10)], ("PERSIST", "k"), [(b"k", b"persist")]),
    ([("SET", "k", "v")], ("PERSIST", "k"), []),
    ([("SET", "k", "v")], ("GETEX", "k", "EX", 5), [(b"k", b"expire")]),
    ([("SET", "k", "v", "EX", 10)], ("GETEX", "k", "PERSIST"), [(b"k", b"persist")]),
    ([("SET", "a", "v")], ("RENAME", "a", "b"), [(b"a", b"rename_from"), (b"b", b"rename_to")]),
    ([("SET", "a", "v")], ("COPY", "a", "b"), [(b"b", b"copy_to")]),
    ([("SET", "k", "v")], ("CAS", "k", "v", "w"), [(b"k", b"set")]),
    ([("SET", "k", "v")], ("FLUSHALL",), []),
])
def test_event_names_are_redis_names(setup: list[tuple], command: tuple,
                                     expected: list[tuple[bytes, bytes]]) -> None:
    log = Log()
    for args in setup:
        log.apply(*args)
    assert events(log.apply(*command)) == expected


def test_expired_keys_send_expired() -> None:
    log = Log()
    log.apply("SET", "k", "v", "PX", 100)
    # the leader's EXPIRED entry after the deadline
    assert log.apply("EXPIRED", "k", t=T0 + 200) == [(b"__keyspace@0__:k", b"expired"),
                                                     (b"__keyevent@0__:expired", b"k")]
    # a write meeting a key past its deadline: expired first, then its own event
    log.apply("SET", "j", "v", "PX", 100, t=T0 + 200)
    assert events(log.apply("SET", "j", "w", t=T0 + 400)) == [(b"j", b"expired"), (b"j", b"set")]


def test_a_transaction_sends_its_commands_events_in_order() -> None:
    log = Log()
    payload = encode_exec([], [b("SET", "a", 1), b("INCR", "a"), b("DEL", "a")])
    assert events(log.apply(b"EXEC", payload)) == [(b"a", b"set"), (b"a", b"incrby"),
                                                     (b"a", b"del")]


def test_flags_choose_channels_and_classes() -> None:
    log = Log()
    # E only: the keyevent channel, message = key
    assert log.apply("SET", "k", "v", flags="E$") == [(b"__keyevent@0__:set", b"k")]
    # K only: the keyspace channel, message = event
    assert log.apply("DEL", "k", flags="Kg") == [(b"__keyspace@0__:k", b"del")]
    # a class not asked for sends nothing: g does not include $ events, $ not g ones
    assert log.apply("SET", "k", "v", flags="KEg") == []
    assert log.apply("DEL", "k", flags="KE$") == []
    # classes without K or E send nothing (as in Redis)
    assert log.apply("SET", "k", "v", flags="A") == []
    # x: only expirations
    log.apply("SET", "e", "v", "PX", 10, flags="Ex")
    assert log.apply("EXPIRED", "e", t=T0 + 20, flags="Ex") == [
        (b"__keyevent@0__:expired", b"e")]


@pytest.mark.parametrize(("text", "shown"), [
    ("", ""), ("KEA", "AKE"), ("Ex", "xE"), ("AKEmn", "AKEmn"), ("g$K", "g$K"),
    ("g$lshzxetdKE", "AKE"),
])
def test_flags_round_trip_as_redis_shows_them(text: str, shown: str) -> None:
    flags = parse_flags(text)
    assert flags is not None
    assert flags_text(flags) == shown
    assert parse_flags(shown) == flags


def test_unknown_flag_letters_are_refused() -> None:
    assert parse_flags("KEq") is None
    assert parse_flags("k") is None  # case matters, as in Redis
    assert parse_flags("A") == ALL
    assert parse_flags("KE") == KEYSPACE | KEYEVENT


def test_publish_is_applied_in_order_and_changes_no_key() -> None:
    kv = KVStateMachine()
    assert kv.apply(encode_entry(b("PUBLISH", "ch", "one"), T0), index=1) == 0
    payload = encode_exec([], [b("PUBLISH", "ch", "two"), b("PUBLISH", "other", "three")])
    assert kv.apply(encode_entry([b"EXEC", payload], T0), index=2) == [0, 0]
    assert kv.last_changes == []
    assert len(kv) == 0
    assert kv.take_published() == [(b"ch", b"one"), (b"ch", b"two"), (b"other", b"three")]
    assert kv.take_published() == []
    # a malformed entry (the log is input too) answers an error and publishes nothing
    assert kv.apply(encode_entry(b("PUBLISH", "ch"), T0), index=3) == ErrorReply(
        "ERR wrong number of arguments for 'publish' command")
    assert kv.take_published() == []


def test_a_large_mset_sends_one_set_event_a_key_from_its_bulk_record() -> None:
    """An MSET of many keys is recorded as one Bulk record; the applier hands observers
    its changes lazily (iter_changes), and the events are Redis's, key by key, in order."""
    kv = KVStateMachine()
    pairs = [x for i in range(300) for x in (b"k%03d" % (i % 250), b"v%d" % i)]
    kv.apply(encode_entry([b"MSET", *pairs], T0), index=3)
    assert [type(r).__name__ for r in kv.last_records] == ["Bulk"]
    messages = list(keyspace_messages(iter_changes(kv.last_records), KEYSPACE | ALL))
    assert messages == [(b"__keyspace@0__:k%03d" % i, b"set") for i in range(250)]
