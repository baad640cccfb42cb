"""The deletion of an expired key and WATCH (REAP_LEVEL, raftkv.kv.features; attack20):
what stays a change, and that a cluster below the level keeps the previous rule."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.features import REAP_LEVEL, WATCH_LEVEL
from wire.reply import OK

T0 = 1_700_000_000_000


def b(*args: str | int) -> list[bytes]:
    return [str(a).encode() for a in args]


def machine(level: int) -> KVStateMachine:
    """One member, recorded at ``level``."""
    kv = KVStateMachine()
    kv.keep_members([1])
    kv.apply(encode_entry(b("member_level", 1, level), T0))
    assert kv.cluster_level == level
    return kv


def at(kv: KVStateMachine, stamp: int, *args: str | int) -> object:
    return kv.apply(encode_entry(b(*args), stamp))


def exec_(kv: KVStateMachine, stamp: int, version: tuple[int, int], level: int) -> object:
    entry = [b"EXEC", encode_exec([(b"k", version[0], version[1])], [b("SET", "x", 1)])]
    return kv.apply(encode_entry(entry, stamp, level))


def test_a_cluster_below_the_level_keeps_the_deletion_index() -> None:
    """A member of the previous release gives the reaped key a tomb at the deletion: every
    replica must, or one would run this EXEC and another abort it."""
    kv = machine(WATCH_LEVEL)
    at(kv, T0, "SET", "k", "v", "PX", 100)
    (version,) = kv.read(b("WATCH", "k"), T0 + 150)
    at(kv, T0 + 200, "EXPIRED", "k")
    assert exec_(kv, T0 + 300, version, WATCH_LEVEL) is None


def test_a_key_created_after_the_watch_and_reaped_still_fails_exec() -> None:
    """Round 18's case at the new level: WATCH saw ``k`` missing, another client created
    it with a TTL, it expired and was reaped: its last write is newer than the WATCH."""
    kv = machine(REAP_LEVEL)
    at(kv, T0, "SET", "k", "old")
    at(kv, T0, "DEL", "k")
    (version,) = kv.read(b("WATCH", "k"), T0)
    at(kv, T0 + 1, "SET", "k", "v", "PX", 100)
    at(kv, T0 + 200, "EXPIRED", "k")
    assert kv.read(b("GET", "k"), T0 + 250) is None
    assert exec_(kv, T0 + 300, version, REAP_LEVEL) is None


def test_deleting_a_key_before_its_deadline_fails_exec() -> None:
    """Only a key already past its deadline keeps its version: a DEL of a live key with a
    TTL is a change."""
    kv = machine(REAP_LEVEL)
    at(kv, T0, "SET", "k", "v", "PX", 1000)
    (version,) = kv.read(b("WATCH", "k"), T0 + 10)
    assert at(kv, T0 + 20, "DEL", "k") == 1
    assert exec_(kv, T0 + 30, version, REAP_LEVEL) is None


def test_a_reaped_key_written_again_fails_exec() -> None:
    """WATCH after the reap sees the kept version; a SET since is a change."""
    kv = machine(REAP_LEVEL)
    at(kv, T0, "SET", "k", "v", "PX", 100)
    at(kv, T0 + 200, "EXPIRED", "k")
    (version,) = kv.read(b("WATCH", "k"), T0 + 210)
    assert exec_(kv, T0 + 220, version, REAP_LEVEL) == [OK]
    at(kv, T0 + 230, "SET", "k", "w", "PX", 10)
    at(kv, T0 + 300, "EXPIRED", "k")  # created and reaped again: a newer last write
    assert exec_(kv, T0 + 310, version, REAP_LEVEL) is None


def test_the_kept_version_survives_a_snapshot() -> None:
    """The tomb is state like any other: a replica restored from a snapshot decides the
    same."""
    kv = machine(REAP_LEVEL)
    at(kv, T0, "SET", "k", "v", "PX", 100)
    (version,) = kv.read(b("WATCH", "k"), T0 + 150)
    at(kv, T0 + 200, "EXPIRED", "k")
    copy = KVStateMachine()
    copy.restore(kv.snapshot())
    copy.keep_members([1])
    assert exec_(copy, T0 + 300, version, REAP_LEVEL) == [OK]


def test_a_node_that_joined_decides_a_deletion_as_the_founders_do() -> None:
    """The founders' first configuration is not in the log: a node that joined replays
    their entries with none. A gate over the configuration's ids kept the old rule there
    while the founders had the new one: their tombs, and so their EXECs, would differ."""
    founder, joiner = KVStateMachine(), KVStateMachine()
    founder.keep_members([1, 2, 3])
    for kv in (founder, joiner):
        for i in (1, 2, 3):
            at(kv, T0, "member_level", i, REAP_LEVEL)
        at(kv, T0, "SET", "k", "v", "PX", 100)
        at(kv, T0 + 200, "EXPIRED", "k")
    assert founder.snapshot() == joiner.snapshot()
    (version,) = founder.read(b("WATCH", "k"), T0 + 210)
    assert tuple(version) == (0, 4)  # the SET's entry (the 4th), not the EXPIRED's


def test_a_member_new_to_the_configuration_closes_the_gate_until_recorded() -> None:
    """A member added (maybe of an earlier release) counts 0 until the leader records its
    level: the deletion of an expired key is a change again meanwhile."""
    kv = machine(REAP_LEVEL)
    kv.keep_members([1, 2])  # RAFT ADDNODE 2 applied
    assert kv.member_levels == {1: REAP_LEVEL, 2: 0}
    at(kv, T0, "SET", "k", "v", "PX", 100)
    (version,) = kv.read(b("WATCH", "k"), T0 + 150)
    at(kv, T0 + 200, "EXPIRED", "k")
    assert exec_(kv, T0 + 300, version, REAP_LEVEL) is None
    at(kv, T0 + 300, "member_level", 2, REAP_LEVEL)  # recorded: open again
    at(kv, T0 + 300, "SET", "k", "v", "PX", 100)
    (version,) = kv.read(b("WATCH", "k"), T0 + 450)
    at(kv, T0 + 500, "EXPIRED", "k")
    assert exec_(kv, T0 + 600, version, REAP_LEVEL) == [OK]


def test_no_level_recorded_leaves_the_record_empty() -> None:
    """Before any level is recorded a configuration records none (a state with levels is
    a snapshot of version 7, which a member of an earlier release cannot read)."""
    kv = KVStateMachine()
    kv.keep_members([1, 2, 3])
    assert kv.member_levels == {}
