"""attack18: a WATCHed key written and expired again before EXEC looked unchanged.

A key's WATCH version is ``(1, mod index)`` while alive and ``(0, tomb or _gone)`` while
missing. A write that creates a missing key does not touch its tomb, and a key that passed
its deadline, not yet deleted by a write or an ``EXPIRED`` entry, reads its old tomb again:
so WATCH (missing) -> another client's ``SET k v PX`` -> the TTL passes -> EXEC compared
equal and ran, although ``k`` was written in between (the client may well have read ``v``
and based its transaction on it). Redis 7 aborts that EXEC: the SET touched the key.

(fix19w: the comparison changed at feature level 2, ``WATCH_LEVEL``: a leader writes EXEC
at that level once every member reads it, and an EXEC entry below it keeps the previous
release's rule, which every replica of a mixed cluster must share. So EXEC here is a
level-2 entry; ``test_an_exec_below_the_watch_level_keeps_the_old_rule`` pins the other.)
"""

from __future__ import annotations

import pytest

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.features import WATCH_LEVEL
from wire.reply import OK

T0 = 1_700_000_000_000


def b(*args: str | bytes | int) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


def at(kv: KVStateMachine, stamp: int, *args: str | bytes | int):
    return kv.apply(encode_entry(b(*args), stamp))


def watch(kv: KVStateMachine, key: str, now: int) -> list[tuple[bytes, int, int]]:
    (version,) = kv.read(b("WATCH", key), now)
    return [(key.encode(), version[0], version[1])]


def exec_(kv: KVStateMachine, stamp: int, watches, *commands: list, level: int = WATCH_LEVEL):
    entry = [b"EXEC", encode_exec(watches, [b(*c) for c in commands])]
    return kv.apply(encode_entry(entry, stamp, level))


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


def test_an_exec_below_the_watch_level_keeps_the_old_rule() -> None:
    """What the previous release decides (the EXEC runs), so a cluster that has not every
    member at WATCH_LEVEL decides it alike on every replica."""
    kv = KVStateMachine()
    watches = watch(kv, "k", T0)
    at(kv, T0 + 1, "SET", "k", "v", "PX", 100)
    assert exec_(kv, T0 + 150, watches, ["SET", "k", "w"], level=0) == [OK]


@pytest.mark.parametrize("level", [0, WATCH_LEVEL])
def test_an_expired_key_watched_and_left_alone_still_runs_exec(level: int) -> None:
    """Watched after its deadline (still in the map), unchanged: EXEC runs at either level
    if the WATCH read used the cluster's rule (``cluster_level``)."""
    kv = KVStateMachine()
    kv.keep_members([1])
    if level:
        at(kv, T0, "member_level", 1, level)
    at(kv, T0, "SET", "k", "v", "PX", 100)
    watches = watch(kv, "k", T0 + 200)
    assert exec_(kv, T0 + 300, watches, ["SET", "x", "1"], level=level) == [OK]

