"""attack18: a WATCHed key written and expired again before EXEC looked unchanged.

A key's WATCH version is ``(1, mod index)`` while alive and ``(0, tomb or _gone)`` while
missing. A write that creates a missing key does not touch its tomb, and a key that passed
its deadline, not yet deleted by a write or an ``EXPIRED`` entry, reads its old tomb again:
so WATCH (missing) -> another client's ``SET k v PX`` -> the TTL passes -> EXEC compared
equal and ran, although ``k`` was written in between (the client may well have read ``v``
and based its transaction on it). Redis 7 aborts that EXEC: the SET touched the key.
"""

from __future__ import annotations

import pytest

from raftkv.kv import KVStateMachine, encode_entry, encode_exec

T0 = 1_700_000_000_000


def b(*args: str | bytes | int) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


def at(kv: KVStateMachine, stamp: int, *args: str | bytes | int):
    return kv.apply(encode_entry(b(*args), stamp))


def watch(kv: KVStateMachine, key: str, now: int) -> list[tuple[bytes, int, int]]:
    (version,) = kv.read(b("WATCH", key), now)
    return [(key.encode(), version[0], version[1])]


def exec_(kv: KVStateMachine, stamp: int, watches, *commands: list):
    entry = [b"EXEC", encode_exec(watches, [b(*c) for c in commands])]
    return kv.apply(encode_entry(entry, stamp))


@pytest.mark.parametrize("deleted_before", [False, True])
def test_exec_fails_when_a_watched_missing_key_was_set_and_expired(
        deleted_before: bool) -> None:
    kv = KVStateMachine()
    if deleted_before:  # the key has a tomb: a DEL before the WATCH
        at(kv, T0, "SET", "k", "old")
        at(kv, T0, "DEL", "k")
    watches = watch(kv, "k", T0)  # missing
    at(kv, T0 + 1, "SET", "k", "v", "PX", 100)  # another client writes it
    assert kv.read(b("GET", "k"), T0 + 2) == b"v"  # ... and this client reads it
    # The deadline passes; no write has met the key and no EXPIRED entry ran yet.
    assert exec_(kv, T0 + 150, watches, ["SET", "k", "derived-from-v"]) is None
