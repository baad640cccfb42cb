"""KVStateMachine.growth_error: the check before proposing that APPEND and SETRANGE build no
value larger than the node's --max-request-bytes (attack2: a 40-byte SETRANGE made a 100 MiB
value on every replica)."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.errors import STRING_TOO_LONG

LIMIT = 1000


def kv_with(key: bytes, length: int) -> KVStateMachine:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", key, b"x" * length], 1))
    return kv


def test_setrange_past_the_limit_is_refused_from_the_arguments_alone() -> None:
    kv = KVStateMachine()
    assert kv.growth_error([b"SETRANGE", b"k", b"990", b"0123456789"], LIMIT) is None
    assert kv.growth_error([b"SETRANGE", b"k", b"991", b"0123456789"], LIMIT) == STRING_TOO_LONG
    assert kv.growth_error([b"SETRANGE", b"k", b"5000", b""], LIMIT) is None  # writes nothing


def test_append_counts_the_current_value() -> None:
    kv = kv_with(b"k", 600)
    assert kv.growth_error([b"APPEND", b"k", b"y" * 400], LIMIT) is None
    assert kv.growth_error([b"APPEND", b"k", b"y" * 401], LIMIT) == STRING_TOO_LONG
    assert kv.growth_error([b"APPEND", b"other", b"y" * 401], LIMIT) is None


def test_inside_once_and_exec_too() -> None:
    kv = kv_with(b"k", 600)
    once = [b"once", b"1", b"1", b"APPEND", b"k", b"y" * 401]
    assert kv.growth_error(once, LIMIT) == STRING_TOO_LONG
    half = [b"APPEND", b"k", b"y" * 250]
    assert kv.growth_error([b"exec", encode_exec([], [half])], LIMIT) is None
    assert kv.growth_error([b"exec", encode_exec([], [half, half])], LIMIT) == STRING_TOO_LONG
