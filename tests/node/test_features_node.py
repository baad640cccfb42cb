"""The runtime side of feature levels (raftkv.node.features): answering RAFT FEATURES,
reading a member's reply (an earlier release's usage error is level 0), refusing a
``budget`` entry no leader built before it is proposed, and stopping with one line on an
entry above this release's level."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from raftkv.kv import encode_entry, encode_exec
from raftkv.kv.codec import decode_entry_level
from raftkv.kv.features import (
    BUDGET_LEVEL,
    FEATURE_LEVEL,
    REAP_LEVEL,
    WATCH_LEVEL,
    EntryNeedsLevel,
)
from raftkv.node.apply import Applier
from raftkv.node.features import answer_features, classify_level, gate_level
from raftkv.serve import fatal_line
from raftkv.server.admin import USAGE
from raftkv.testing import LeaderLevels, idle_node, link
from wire.raft import NORMAL, Entry
from wire.reply import ErrorReply

SPEND = [b"EVAL", b"while true do end", b"0"]


node = idle_node


def test_raft_features_is_answered_with_the_nodes_level() -> None:
    assert answer_features([b"RAFT", b"FEATURES"], 1) == 1
    assert answer_features([b"raft", b"features"], 0) == 0
    assert answer_features([b"RAFT", b"FEATURES", b"x"], 1) is None
    assert answer_features([b"SET", b"k"], 1) is None


def test_a_reply_of_an_earlier_release_is_level_0_and_anything_else_unknown() -> None:
    assert classify_level(USAGE) == 0  # this release's own usage line, as main's
    assert classify_level(1) == 1 and classify_level(0) == 0
    assert classify_level(None) is None and classify_level(-1) is None
    assert classify_level(ErrorReply("TRYAGAIN no leader")) is None
    assert classify_level(2**16) is None


def test_the_gate_counts_the_latest_configuration_too() -> None:
    """A member being added receives entries before its configuration applies."""
    assert gate_level({1: 1, 2: 1, 3: 1}, [1, 2, 3], [1, 2, 3]) == 1
    assert gate_level({1: 1, 2: 1, 3: 1}, [1, 2, 3], [1, 2, 3, 4]) == 0


@pytest.mark.parametrize("args", [
    [b"budget", b"1000000", *SPEND],
    [b"budget", b"-5", *SPEND],
    [b"budget", b"x", b"SET", b"k", b"v"],
    [b"once", b"1", b"1", b"budget", b"1000000", *SPEND],
    [b"EXEC", encode_exec([], [[b"budget", b"1000000", *SPEND]])],
    [b"member_level", b"1", b"1"],  # a forwarded one could open the gate
    [b"once", b"1", b"1", b"member_level", b"1", b"1"],
])
def test_a_leaders_own_entry_from_outside_is_refused_before_proposing(
        args: list[bytes]) -> None:
    refused = node().check(args)
    assert isinstance(refused, ErrorReply), args
    assert "budget" in refused.text or "member_level" in refused.text


def test_the_leader_writes_the_old_form_while_the_gate_is_closed() -> None:
    n = node(script_budget=250_000)
    n.core = SimpleNamespace(cluster_config=n.applier.applied_config)  # type: ignore
    n.kv.keep_members([1])
    old = n.entry_data(list(SPEND))
    assert b"budget" not in old
    n.applier.applied_config = SimpleNamespace(members=[SimpleNamespace(id=1)])  # type: ignore
    n.core = SimpleNamespace(cluster_config=n.applier.applied_config)  # type: ignore
    n.kv.apply(encode_entry([b"member_level", b"1", b"1"], 1))
    assert n.gate_level() == 1
    new = n.entry_data(list(SPEND))
    assert b"budget" in new and b"250000" in new
    assert b"budget" not in n.entry_data([b"SET", b"k", b"v"])


def test_the_leader_writes_exec_at_the_watch_level_once_every_member_reads_it() -> None:
    """EXEC's WATCH of an expired key changed at WATCH_LEVEL and REAP_LEVEL
    (raftkv.kv.features): below each, every replica must keep the old rule, so the leader
    tags EXEC (alone, in ``once``, with a script) at the highest level the gate opens;
    other entries keep their level."""
    n = node()
    n.applier.applied_config = SimpleNamespace(members=[SimpleNamespace(id=1)])  # type: ignore
    n.core = SimpleNamespace(cluster_config=n.applier.applied_config)  # type: ignore
    n.kv.keep_members([1])
    plain = [b"EXEC", encode_exec([(b"k", 0, 0)], [[b"SET", b"k", b"v"]])]
    once = [b"once", b"1", b"1", *plain]
    scripted = [b"EXEC", encode_exec([], [[b"EVAL", b"return 1", b"0"]])]
    set_ = [b"SET", b"k", b"v"]
    levels = {1: [0, 0, BUDGET_LEVEL, 0], WATCH_LEVEL: [WATCH_LEVEL] * 3 + [0],
              REAP_LEVEL: [REAP_LEVEL] * 3 + [0]}
    for gate, want in levels.items():
        n.kv.apply(encode_entry([b"member_level", b"1", b"%d" % gate], 1))
        assert n.gate_level() == gate
        got = [decode_entry_level(n.entry_data(list(a)))[1] for a in (plain, once, scripted, set_)]
        assert got == want, gate


def test_an_entry_above_the_level_stops_the_node_with_one_line() -> None:
    n = node()
    entry = Entry(term=1, index=9, kind=NORMAL,
                  data=encode_entry([b"SET", b"k", b"v"], 1, FEATURE_LEVEL + 1))
    with pytest.raises(EntryNeedsLevel) as raised:
        Applier.apply(n.applier, [entry])
    assert n.kv.state_copy() == {}
    line = fatal_line(ExceptionGroup("node", [raised.value]), True)
    assert line == (f"stopping: entry 9 needs feature level {FEATURE_LEVEL + 1}; this "
                    f"release reads up to {FEATURE_LEVEL}: upgrade this node")


async def test_the_leader_asks_again_when_a_link_reconnects_or_the_term_changes() -> None:
    """An upgrade or a downgrade restarts the member: its link connects again, and the
    leader asks it again rather than trust what it learned (and records a change)."""
    leader = LeaderLevels({2: 0, 3: 1})
    kv, asked = leader.kv, leader.asked
    await leader.steps(3)  # 2 at level 0: nothing recorded (a snapshot would be version 7)
    assert asked == [[2, 3]] and kv.member_levels == {}
    leader.levels[2] = 1  # node 2 upgraded and restarted: its link connected again
    leader.links[2] = link(generation=1, reconnects=1)
    await leader.steps(3)  # one proposal per step
    assert asked == [[2, 3], [2]] and kv.member_levels == {1: 1, 2: 1, 3: 1}
    assert kv.cluster_level == 1
    leader.levels[3] = 0  # node 3 went back to an earlier release
    leader.links[3] = link(generation=2, reconnects=1)
    await leader.steps(1)
    assert kv.member_levels[3] == 0 and kv.cluster_level == 0
    leader.core.term = 6  # a new term: everyone asked again
    await leader.steps(1)
    assert asked[-1] == [2, 3]
    assert [a[0] for a in leader.proposed] == [b"member_level"] * 4
    assert kv.snapshot()[1] == 7


async def test_the_leader_records_the_lowest_levels_first() -> None:
    """A deletion reads the record without the configuration (REAP_LEVEL, raftkv.kv): a
    record that rose above a member not yet recorded would open its gate too early."""
    leader = LeaderLevels({2: 0, 3: 1})
    leader.levels.update({2: 1, 3: 1})  # (all at level 1 or more: recording starts)
    leader.learner.level = 2  # node 1 runs a later release than 2 and 3
    await leader.steps(4)
    recorded = [(a[1], a[2]) for a in leader.proposed]
    assert recorded == [(b"2", b"1"), (b"3", b"1"), (b"1", b"2")]
