"""A leader gathers the client port's write runs into one entry until its ready loop looks
(raftkv.node.gathered): each run gets its own replies, a connection's writes keep their
order, and an entry keeps its bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.cluster import free_ports
from raftkv.kv import KVStateMachine, encode_entry
from raftkv.node.gathered import MISMATCH, Gathered, entry_args, joined, share
from raftkv.node.pending import Pending
from raftkv.node.requests import SHUTTING_DOWN
from raftkv.testing import one_node_leader
from wire.reply import OK, ErrorReply

pytestmark = pytest.mark.timeout(60)


async def test_runs_submitted_before_the_loop_looks_are_one_entry(tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2)) as node:
        proposed = node.stats["proposed"]
        lone = node.submit_run([[b"SET", b"a", b"1"]], 5)
        run = node.submit_run([[b"INCR", b"a"], [b"INCR", b"a"]], 10)
        other = node.submit_run([[b"SET", b"b", b"x"]], 5)
        assert await other.wait() == OK
        assert lone.value == OK and run.value == [2, 3]
        assert node.stats["proposed"] - proposed == 1


async def test_a_later_write_of_another_kind_goes_after_the_gathered_runs(
        tmp_path: Path) -> None:
    """An APPEND (no run joins it) proposed while a run waits for the loop: the run
    reaches the log first, as the connection sent them (else the SET, applied second,
    would overwrite the APPEND's value)."""
    async with one_node_leader(tmp_path / "d", *free_ports(2)) as node:
        first = node.submit_run([[b"SET", b"a", b"1"]], 5)
        second = node.submit([b"APPEND", b"a", b"z"])
        assert await second.wait() == 2 and first.value == OK
        assert node.kv.read([b"GET", b"a"]) == b"1z"


async def test_a_run_that_does_not_fit_proposes_what_was_gathered_first(
        tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2),
                               max_keys_per_command=3) as node:
        proposed = node.stats["proposed"]
        runs = [node.submit_run([[b"INCR", b"n"]] * 2, 8) for _ in range(3)]
        assert await runs[-1].wait() == [5, 6]
        assert [r.value for r in runs] == [[1, 2], [3, 4], [5, 6]]
        assert node.stats["proposed"] - proposed == 3  # 2 + 2 > 3: one run an entry


def test_an_entry_shares_its_replies_out_or_its_error() -> None:
    items = [([[b"SET", b"a", b"1"]], Pending(), 0.0, 0.0),
             ([[b"INCR", b"a"], [b"INCR", b"a"]], Pending(), 0.0, 0.0)]
    share(items, [OK, 2, 3])
    assert items[0][1].value == OK and items[1][1].value == [2, 3]
    failed = [([[b"SET", b"a", b"1"]], Pending(), 0.0, 0.0),
              ([[b"INCR", b"a"]], Pending(), 0.0, 0.0)]
    error = ErrorReply("UNKNOWN the outcome is unknown")
    share(failed, error)
    assert all(item[1].value is error for item in failed)
    short = [([[b"SET", b"a", b"1"]], Pending(), 0.0, 0.0),
             ([[b"INCR", b"a"]], Pending(), 0.0, 0.0)]
    share(short, [OK])  # (not the entry's reply: never a wrong share)
    assert all(item[1].value is MISMATCH for item in short)


def test_bounds_and_entry_forms() -> None:
    gathered = Gathered(max_commands=3, max_bytes=100)
    assert gathered.fits(3, 100) and not gathered.fits(4, 1) and not gathered.fits(1, 101)
    gathered.add(([[b"SET", b"a", b"1"]], Pending(), 0.0, 0.0), 60)
    assert gathered.fits(2, 40) and not gathered.fits(1, 41)
    assert len(gathered.take()) == 1 and gathered.fits(3, 100)
    assert entry_args([[b"SET", b"a", b"1"]]) == [b"SET", b"a", b"1"]
    assert entry_args([[b"SET", b"a", b"1"], [b"INCR", b"b"]])[0] == b"EXEC"


async def test_automatic_snapshots_count_the_commands_of_gathered_entries(
        tmp_path: Path) -> None:
    """``--snapshot-entries 100`` with runs of 32 commands an entry: a snapshot after about
    100 commands (4 entries), not after 100 entries (3,200 commands)."""
    async with one_node_leader(tmp_path / "d", *free_ports(2), snapshot_entries=100) as node:
        first = node.applier.applied
        commands = node.kv.commands_applied
        n = 0
        while node.storage.snapshot_meta().index == 0:
            assert node.applier.applied - first < 10  # (entries: far fewer than 100)
            await node.submit_run([[b"SET", b"k%d" % (n + i), b"v"] for i in range(32)],
                                  300).wait()
            n += 32
            await node.next_tick()
        assert 100 <= node.kv.commands_applied - commands < 200


def test_the_state_machine_counts_each_command_of_an_exec() -> None:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"a", b"1"], 1), 1)
    kv.apply(encode_entry(entry_args([[b"INCR", b"a"]] * 5), 2), 2)
    assert kv.commands_applied == 6 and kv.read([b"GET", b"a"]) == b"6"
    kv.read(entry_args([[b"GET", b"a"]] * 3))  # a read changes no count
    assert kv.commands_applied == 6


def test_a_run_gone_a_command_at_a_time_is_answered_once_all_are() -> None:
    parts = [Pending(), Pending(), Pending()]
    whole = joined(parts)
    parts[2].set(3)
    parts[0].set(OK)
    assert not whole.done
    parts[1].set(ErrorReply("ERR x"))
    assert whole.value == [OK, ErrorReply("ERR x"), 3]


async def test_runs_gathered_when_the_node_stops_are_answered(tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2)) as node:
        run = node.submit_run([[b"SET", b"a", b"1"], [b"INCR", b"n"]], 10)
        await node.stop()
        assert run.done and run.value is SHUTTING_DOWN  # (never proposed)
