"""Values may not grow past ``MAX_VALUE_LEN`` after they are stored: APPEND and SETRANGE
(attack2: a 40-byte SETRANGE made a 100 MiB value on every replica) and a script's writes
(attack8: a 100-byte EVAL stored 30 MB). Applying decides, the same on every replica; the
node's check before proposing (``growth_error``, ``validate``) looks at the arguments only."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec, validate
from raftkv.kv.commands import MAX_VALUE_LEN
from raftkv.kv.errors import STRING_TOO_LONG
from wire.reply import SimpleString

LIMIT = 1000
T0 = 1_700_000_000_000


def kv_with(key: bytes, length: int) -> KVStateMachine:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", key, b"x" * length], 1))
    return kv


def test_setrange_past_the_limit_is_refused_from_the_arguments_alone() -> None:
    kv = KVStateMachine()
    assert kv.growth_error([b"SETRANGE", b"k", b"990", b"0123456789"], LIMIT) is None
    assert kv.growth_error([b"SETRANGE", b"k", b"991", b"0123456789"], LIMIT) == STRING_TOO_LONG
    assert kv.growth_error([b"SETRANGE", b"k", b"5000", b""], LIMIT) is None  # writes nothing


def test_append_is_left_to_apply() -> None:
    """This node's state may lag the log (a follower, or a leader with committed entries not
    yet applied): refusing APPEND from the length it holds would answer "too long" after an
    acknowledged DEL of the key. The state machine's bound decides, at apply."""
    kv = kv_with(b"k", 600)
    assert kv.growth_error([b"APPEND", b"k", b"y" * 401], LIMIT) is None
    assert kv.growth_error([b"exec", encode_exec([], [[b"APPEND", b"k", b"y" * 401]])],
                           LIMIT) is None


def test_inside_once_and_exec_too() -> None:
    kv = KVStateMachine()
    far = [b"SETRANGE", b"k", b"991", b"0123456789"]
    assert kv.growth_error([b"once", b"1", b"1", *far], LIMIT) == STRING_TOO_LONG
    near = [b"SETRANGE", b"k", b"0", b"0123456789"]
    assert kv.growth_error([b"exec", encode_exec([], [near])], LIMIT) is None
    assert kv.growth_error([b"exec", encode_exec([], [near, far])], LIMIT) == STRING_TOO_LONG


def test_setrange_past_the_value_limit_is_refused_before_proposing() -> None:
    """``SETRANGE k 100000000 x``, a 30-byte request, asked every replica for a 100 MB value;
    ``validate`` refuses it from its arguments, whatever the node's --max-request-bytes."""
    assert validate([b"SETRANGE", b"k", b"100000000", b"x"]) == STRING_TOO_LONG
    assert validate([b"SETRANGE", b"k", str(MAX_VALUE_LEN - 1).encode(), b"x"]) is None


def test_append_and_setrange_stop_at_the_value_limit_when_applied() -> None:
    kv = KVStateMachine()
    assert kv.apply(encode_entry([b"SETRANGE", b"k", b"100000000", b"x"], T0)) == STRING_TOO_LONG
    entry = encode_entry([b"SETRANGE", b"k", str(MAX_VALUE_LEN).encode(), b"x"], T0)
    assert kv.apply(entry) == STRING_TOO_LONG
    assert kv.apply(encode_entry([b"SETRANGE", b"k", str(MAX_VALUE_LEN - 1).encode(), b"x"],
                                 T0)) == MAX_VALUE_LEN
    assert kv.apply(encode_entry([b"APPEND", b"k", b"x"], T0)) == STRING_TOO_LONG
    assert kv.read([b"STRLEN", b"k"]) == MAX_VALUE_LEN


def _eval(body: str, *args: bytes) -> bytes:
    return encode_entry([b"EVAL", body.encode(), b"0", *args], T0)


def test_a_script_cannot_store_a_value_past_the_limit() -> None:
    """A write from a script carrying a longer argument gets the error from ``redis.call``
    (``redis.pcall`` returns it), and every replica applies the entry alike."""
    too_long = str(MAX_VALUE_LEN + 1).encode()
    log = [
        _eval("return redis.call('SET', 'k', string.rep('x', tonumber(ARGV[1])))", too_long),
        _eval("local r = redis.pcall('SET', 'k', string.rep('x', tonumber(ARGV[1]))) "
              "redis.call('SET', 'after', 'ran') return r", too_long),
        _eval("return redis.call('MSET', 'a', '1', string.rep('x', tonumber(ARGV[1])), '2')",
              too_long),
        _eval("return redis.call('SET', 'k', string.rep('x', tonumber(ARGV[1])))",
              str(MAX_VALUE_LEN).encode()),
    ]
    replicas = [KVStateMachine() for _ in range(3)]
    replies = [[kv.apply(entry) for entry in log] for kv in replicas]
    assert replies[0] == [STRING_TOO_LONG, STRING_TOO_LONG, STRING_TOO_LONG, SimpleString("OK")]
    assert replies[1] == replies[0] and replies[2] == replies[0]
    assert replicas[0] == replicas[1] == replicas[2]
    assert replicas[0].read([b"GET", b"after"]) == b"ran"
    assert replicas[0].read([b"EXISTS", b"a"]) == 0
    assert replicas[0].read([b"STRLEN", b"k"]) == MAX_VALUE_LEN
