"""The feature gate in a real in-process cluster (raftkv.node.features): three ``Node``s on
127.0.0.1 in one trio run. The leader asks every member ``RAFT FEATURES`` and records the
levels; an entry that runs scripts is written in the level-1 form (``budget``) only when
every member reads it. A member standing in for an earlier release (``level=0``) keeps
the old form, and its scripts' old charges and 10M budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.kv.codec import decode_entry_level
from raftkv.node.node import Node
from raftkv.raft import Role
from raftkv.testing import in_process_cluster
from wire.raft import NORMAL

pytestmark = pytest.mark.timeout(60)
EVAL = [b"EVAL", b"return 1", b"0"]


@asynccontextmanager
async def cluster(tmp: Path, levels: list[int]) -> AsyncIterator[list[Node]]:
    async with in_process_cluster(tmp, levels, free_ports(2 * len(levels)),
                                  script_budget=250_000) as nodes:
        yield nodes


async def _leader_knows_all(nodes: list[Node]) -> Node:
    """The leader, once it has learned every member's level and recorded what it records
    (nothing while a member is below 1)."""
    while True:
        await nodes[0].next_tick()
        leaders = [n for n in nodes if getattr(n, "core", None) is not None
                   and n.core.role is Role.LEADER]
        if leaders:
            leader = leaders[0]
            known = leader.levels.learned
            if len(known) == len(nodes) and (min(known.values()) == 0 or all(
                    leader.kv.member_levels.get(i, 0) == level for i, level in known.items())):
                return leader


def _last_script_entry(node: Node) -> tuple[int, list[bytes]]:
    entries = node.core.entries_after(0) or []
    level, args = next((level, args) for e in reversed(entries) if e.kind == NORMAL
                       for _, level, args in [decode_entry_level(e.data)]
                       if b"EVAL" in args or b"budget" in args)
    return level, args


async def test_a_member_of_an_earlier_release_keeps_the_old_form(tmp_path: Path) -> None:
    async with cluster(tmp_path, [1, 1, 0]) as nodes:
        with trio.fail_after(20):
            leader = await _leader_knows_all(nodes)
            assert leader.kv.cluster_level == 0 and leader.gate_level() == 0
            assert leader.kv.member_levels == {}  # (snapshots stay version 6)
            assert await leader.submit(list(EVAL)).wait() == 1
        level, args = _last_script_entry(leader)
        assert (level, args) == (0, EVAL)


async def test_every_member_at_level_1_gets_the_budget_form(tmp_path: Path) -> None:
    async with cluster(tmp_path, [1, 1, 1]) as nodes:
        with trio.fail_after(20):
            leader = await _leader_knows_all(nodes)
            while leader.gate_level() < 1:
                await leader.next_tick()
            assert await leader.submit(list(EVAL)).wait() == 1
            spend = [b"EVAL", b"while true do end", b"0"]
            over = await leader.submit(spend).wait()
            applied = leader.applied  # (attack15: a follower had not applied it yet)
            while any(n.applied < applied for n in nodes):
                await leader.next_tick()
        assert over.text == "ERR Script exceeded the instruction budget (250000 instructions)"
        level, args = _last_script_entry(leader)
        assert (level, args) == (1, [b"budget", b"250000", *spend])
        assert all(n.kv.cluster_level == 1 for n in nodes)
