"""Feature levels and the script budget recorded in the entry (raftkv.kv.features, issue
12): the gate's min over members, the ``member_level`` record, the level slot of the
codec, the ``budget`` form and its charges, and old-form entries applying as before."""

from __future__ import annotations

import pytest

from raftkv.kv import KVStateMachine, decode_snapshot, encode_entry, encode_exec, entry_cost
from raftkv.kv.codec import decode_entry, decode_entry_level
from raftkv.kv.features import (
    FEATURE_LEVEL,
    EntryNeedsLevel,
    budget_error,
    cluster_level,
    runs_scripts,
    wrap,
)
from raftkv.kv.scripts import ALLOC_COST, CALL_COST, INSTRUCTION_BUDGET, ITEM_COST, START_COST
from wire.reply import OK, ErrorReply

T = 1_700_000_000_000
N = 2000
BUILD = b"local t = {} for i = 1, %d do t[i] = 'key:' .. i end " % N
DEL_ALL = [b"EVAL", BUILD + b"return redis.call('DEL', unpack(t))", b"0"]
SPEND = [b"EVAL", b"while true do end", b"0"]


def machine(members: tuple[int, ...] = (1, 2, 3)) -> KVStateMachine:
    kv = KVStateMachine()
    kv.keep_members(members)
    return kv


def run(kv: KVStateMachine, args: list[bytes], level: int = 0) -> object:
    return kv.apply(encode_entry(args, T, level))


def filled(members: tuple[int, ...] = (1, 2, 3)) -> KVStateMachine:
    kv = machine(members)
    run(kv, [b"MSET", *(x for i in range(1, N + 1) for x in (b"key:%d" % i, b"v"))])
    return kv


def test_cluster_level_is_the_min_over_members_learners_and_unknown_included() -> None:
    assert cluster_level({1: 1, 2: 1, 3: 1}, [1, 2, 3]) == 1
    assert cluster_level({1: 1, 2: 1}, [1, 2, 3]) == 0  # 3 unknown
    assert cluster_level({1: 1, 2: 1, 3: 1, 4: 0}, [1, 2, 3, 4]) == 0  # 4 a learner
    assert cluster_level({1: 3, 2: 2}, [1, 2]) == 2
    assert cluster_level({}, []) == 0
    kv = machine((1, 2, 3, 4))  # (the runtime passes voters and learners alike)
    for i in (1, 2, 3):
        assert run(kv, [b"member_level", b"%d" % i, b"1"]) == 1
    assert kv.cluster_level == 0
    assert run(kv, [b"member_level", b"4", b"1"]) == 1
    assert kv.cluster_level == 1
    assert run(kv, [b"member_level", b"4", b"1"]) == 0  # no change
    kv.keep_members((1, 2, 3, 5))  # 4 removed, 5 added: forgotten, unknown (recorded 0)
    assert kv.member_levels == {1: 1, 2: 1, 3: 1, 5: 0} and kv.cluster_level == 0


@pytest.mark.parametrize("args", [
    [b"member_level", b"0", b"1"],
    [b"member_level", b"1", b"-1"],
    [b"member_level", b"1", b"65536"],
    [b"member_level", b"1", b"01"],
    [b"member_level", b"1", b"x"],
])
def test_a_hostile_member_level_is_an_error_and_changes_nothing(args: list[bytes]) -> None:
    kv = machine()
    assert isinstance(run(kv, args), ErrorReply)
    assert kv.member_levels == {}


def test_levels_go_in_snapshots_of_version_7_when_there_are_some() -> None:
    kv = machine()
    assert kv.snapshot()[1] != 7  # none: readable by an earlier release
    run(kv, [b"member_level", b"1", b"1"])
    run(kv, [b"member_level", b"2", b"1"])
    assert decode_snapshot(kv.snapshot()).levels == {1: 1, 2: 1}
    run(kv, [b"member_level", b"3", b"1"])
    state = decode_snapshot(kv.snapshot())
    assert state.levels == {1: 1, 2: 1, 3: 1}
    other = machine()
    other.restore(kv.snapshot())
    assert other.member_levels == {1: 1, 2: 1, 3: 1} and other.cluster_level == 1


def test_the_codec_carries_a_level_and_older_decoders_see_no_command() -> None:
    data = encode_entry([b"budget", b"250000", *SPEND], T, 1)
    assert decode_entry_level(data) == (T, 1, [b"budget", b"250000", *SPEND])
    assert decode_entry(data) == (T, [b"budget", b"250000", *SPEND])
    assert decode_entry_level(encode_entry([b"GET", b"k"], T)) == (T, 0, [b"GET", b"k"])


def test_an_entry_above_this_releases_level_stops_instead_of_being_skipped() -> None:
    kv = machine()
    with pytest.raises(EntryNeedsLevel) as raised:
        kv.apply(encode_entry([b"SET", b"k", b"v"], T, FEATURE_LEVEL + 1), 7)
    assert str(raised.value) == (f"entry 7 needs feature level {FEATURE_LEVEL + 1}; this "
                                 f"release reads up to {FEATURE_LEVEL}: upgrade this node")
    assert kv.state_copy() == {}


def test_an_old_form_entry_applies_with_the_old_charges_and_budget() -> None:
    """Entries already in logs apply as before: a script DEL of N keys costs 50 units a key
    (ITEM_COST) and the budget is 10M; the same script in the budget form pays per key."""
    old, new = filled(), filled()
    assert run(old, DEL_ALL) == N
    legacy = old._scripting.last_cost
    assert run(new, wrap(DEL_ALL, 10_000_000), 1) == N
    keyed = new._scripting.last_cost
    assert old.digest() == new.digest()  # same writes, same state
    # a key written: 700 units, on top of its item; and in the budget form only, what the
    # script allocates (its table of N keys, the call's arguments: a few hundred KiB)
    assert 700 * N < keyed - legacy < 700 * N + ALLOC_COST * 512
    assert legacy > CALL_COST + ITEM_COST * (N + 1)  # (the table built, the call, the keys)
    over = run(old, SPEND)
    assert over == ErrorReply(
        f"ERR Script exceeded the instruction budget ({INSTRUCTION_BUDGET} instructions)")
    assert old._scripting.last_cost == INSTRUCTION_BUDGET


def test_the_budget_form_spends_the_recorded_budget_and_names_it() -> None:
    kv = filled()
    assert run(kv, wrap(SPEND, 220_000), 1) == ErrorReply(
        "ERR Script exceeded the instruction budget (220000 instructions)")
    assert kv._scripting.last_cost == 220_000 - START_COST  # (its start charged first)
    # 2,000 keys deleted cost 1.4M units: refused whole by a 1M budget (nothing deleted)
    assert run(kv, wrap(DEL_ALL, 1_000_000), 1) == ErrorReply(
        "ERR Script exceeded the instruction budget (1000000 instructions)")
    assert len(kv) == N
    assert run(kv, [b"session_open", b"60000", b"5"]) == 5
    exec_args = [b"exec", encode_exec([], [[b"SET", b"a", b"1"], SPEND])]
    reply = run(kv, wrap([b"once", b"5", b"1", *exec_args], 230_000), 1)
    assert reply == [OK, ErrorReply(
        "ERR Script exceeded the instruction budget (230000 instructions)")]


@pytest.mark.parametrize("args", [
    [b"budget", b"-1", *SPEND],
    [b"budget", b"0", *SPEND],
    [b"budget", b"9999", *SPEND],  # below MIN_BUDGET
    [b"budget", b"100000001", *SPEND],  # above MAX_BUDGET
    [b"budget", b"99999999999999999999", *SPEND],
    [b"budget", b"1e6", *SPEND],
    [b"budget", b"010000", *SPEND],
    [b"budget", b"250000", b"budget", b"250000", *SPEND],  # nested
    [b"budget", b"250000", b"SET", b"k", b"v"],  # not a script
    [b"budget", b"250000", b"exec", encode_exec([], [[b"SET", b"k", b"v"]])],
    [b"budget", b"250000"],
    [b"exec", encode_exec([], [[b"budget", b"10000000", *SPEND], SPEND])],  # inside EXEC
    [b"budget", b"250000", b"exec", encode_exec([], [[b"budget", b"100000000", *SPEND]])],
])
def test_a_hostile_budget_entry_is_refused_and_applies_as_an_error(args: list[bytes]) -> None:
    if args[0] == b"budget":
        assert budget_error(args) is not None or args[2] == b"exec"
    kv = filled()
    before = kv.state_copy()
    for level in (0, 1):
        reply = run(kv, args, level)
        flat = reply if isinstance(reply, list) else [reply]
        assert all(isinstance(r, ErrorReply) for r in flat), reply
    assert kv.state_copy() == before


def test_budget_inside_an_entry_never_resets_the_entrys_budget() -> None:
    kv = filled()
    whole = ErrorReply("ERR budget is valid only as a whole entry")
    over = ErrorReply(f"ERR Script exceeded the instruction budget ({INSTRUCTION_BUDGET} "
                      "instructions)")
    inside = [b"exec", encode_exec([], [[b"budget", b"10000000", *SPEND], SPEND])]
    assert run(kv, inside) == [whole, over]
    nested = wrap([b"exec", encode_exec([], [[b"budget", b"100000000", *SPEND], SPEND])],
                  220_000)
    assert run(kv, nested, 1) == [whole, ErrorReply(
        "ERR Script exceeded the instruction budget (220000 instructions)")]
    assert run(kv, [b"session_open", b"60000", b"5"]) == 5
    assert run(kv, [b"once", b"5", b"1", *wrap(SPEND, 220_000)]) == whole


def test_runs_scripts_finds_scripts_in_once_and_exec_only() -> None:
    assert runs_scripts(SPEND) and runs_scripts([b"evalsha", b"ab", b"0"])
    assert runs_scripts([b"once", b"1", b"2", *SPEND])
    assert runs_scripts([b"exec", encode_exec([], [[b"SET", b"k", b"v"], SPEND])])
    assert not runs_scripts([b"exec", encode_exec([], [[b"SET", b"k", b"eval"]])])
    assert not runs_scripts([b"SET", b"eval", b"v"])
    # (EVAL_RO alone is a read, never proposed; inside an EXEC it runs at apply: attack15)
    assert runs_scripts([b"exec", encode_exec([], [[b"EVAL_RO", b"return 1", b"0"]])])


def test_read_only_scripts_use_the_nodes_budget_and_the_keyed_charges() -> None:
    kv = filled()
    kv.read_budget = 220_000
    assert kv.read([b"EVAL_RO", b"while true do end", b"0"]) == ErrorReply(
        "ERR Script exceeded the instruction budget (220000 instructions)")
    kv.read_budget = 10_000_000
    mget = [b"EVAL_RO", BUILD + b"return #redis.call('MGET', unpack(t))", b"0"]
    assert kv.read(mget) == N
    keyed = kv._scripting.last_cost
    assert run(kv, [b"EVAL", *mget[1:]]) == N  # the old form, in the log
    # a key read: 300 units; and what the script allocates (the KEYED charges only)
    assert 300 * N < keyed - kv._scripting.last_cost < 300 * N + ALLOC_COST * 512


def test_a_budget_entry_in_flight_is_unwrapped_for_the_transaction_estimate() -> None:
    """A leader replays its unapplied entries before estimating an EXEC (entry_cost): the
    budget form hides a script's EXEC, which must count as the script's unknown writes."""
    kv = machine()
    script = [b"EVAL", b"return 1", b"0"]
    wrapped = wrap([b"exec", encode_exec([], [script])], 1_000_000)
    four = [b"exec", encode_exec([], [[b"DBSIZE"]] * 4)]
    refused = entry_cost.refusal(kv, four, copy_limit=1 << 20, walk_limit=1024,
                                 unapplied=lambda: [encode_entry(wrapped, T, 1)])
    assert refused is not None and "walk" in refused.text
    assert entry_cost.refusal(kv, four, copy_limit=1 << 20, walk_limit=1024) is None


def test_an_error_naming_another_budget_is_left_as_the_old_form_leaves_it() -> None:
    """A script's own error text is turned into the budget error only if it holds the
    entry's own budget error, as before: an old-form reply (which a session may keep, in
    state) is the same on either release."""
    kv = machine()
    fake = b"error('ERR Script exceeded the instruction budget (220000 instructions)')"
    assert run(kv, [b"EVAL", fake, b"0"]) == ErrorReply(
        "ERR Error running script: user_script:1: ERR Script exceeded the instruction "
        "budget (220000 instructions)")
    assert run(kv, wrap([b"EVAL", fake, b"0"], 220_000), 1) == ErrorReply(
        "ERR Script exceeded the instruction budget (220000 instructions)")


def test_a_node_that_joined_applies_member_level_as_a_founder_does() -> None:
    """The founders' first configuration is not in the log: a node that joined later
    replays member_level entries before any configuration entry. A check against the
    applied configuration made it refuse them, and a chaos run with member changes found
    the replicas' RAFT BACKUP digests differing."""
    founder, joiner = machine((1, 2, 3)), KVStateMachine()
    for kv in (founder, joiner):
        for i in (1, 2, 3):
            run(kv, [b"member_level", b"%d" % i, b"1"])
    assert founder.snapshot() == joiner.snapshot()
    assert joiner.member_levels == {1: 1, 2: 1, 3: 1}
