"""attack24b: a write run gathered for the ready loop's next look (raftkv.node.gathered)
is in no table the node answers from, so the two paths that owe every client a reply
skip it.

1. The request sweeper (``Requests.sweep``: "a reply is owed to every client") answers a
   plain write -UNKNOWN at its deadline while the ready loop is held up (a slow fsync, a
   snapshot's ``finish_compact`` holding the storage lock); a gathered run waits until the
   loop comes back, however long that is: its client hangs past --request-timeout.
2. ``Node.stop`` answers what ``Requests`` holds (``fail_all``): a single node (no
   transfer target) stops without the ready loop looking again, so the gathered run is
   never answered; its client only sees the connection close (the same write proposed
   alone got "TRYAGAIN the node is shutting down").

Each test runs the same moment for a plain write (``submit``) and a write of the client
port's run path (``submit_run``), and expects both answered: with ``write_run`` 1 (no
gathering: ``submit_run`` proposes at once) each passes, with 32 (the default) each fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from chaos.cluster import free_ports
from raftkv.testing import one_node_leader
from wire.reply import ErrorReply

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("write_run", [1, 32])
async def test_the_sweeper_answers_a_gathered_run_like_a_plain_write(
        write_run: int, tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2), write_run=write_run) as node:
        lock = node.driver.storage_lock
        await lock.acquire()  # the ready loop's next Ready waits (a stalled fsync/snapshot)
        try:
            plain = node.submit([b"SET", b"a", b"1"])  # proposed now, tracked
            await trio.testing.wait_all_tasks_blocked()  # the loop now waits for the lock
            run = node.submit_run([[b"SET", b"b", b"1"]], 5)  # gathered for the next look
            # Every deadline has passed: what the sweeper does at --request-timeout.
            node.requests.sweep(trio.current_time() + 10 * node.settings.request_timeout)
            assert isinstance(plain.value, ErrorReply)  # -UNKNOWN: the client is answered
            assert run.done, "the gathered run's client is still waiting"
        finally:
            lock.release()


@pytest.mark.parametrize("write_run", [1, 32])
async def test_stop_answers_a_gathered_run_like_a_plain_write(
        write_run: int, tmp_path: Path) -> None:
    async with one_node_leader(tmp_path / "d", *free_ports(2), write_run=write_run) as node:
        plain = node.submit([b"SET", b"a", b"1"])
        run = node.submit_run([[b"SET", b"b", b"1"]], 5)
        other = node.submit_run([[b"INCR", b"n"], [b"INCR", b"n"]], 6)
        # (submit_run's gathering happens after ``plain``'s proposal: no flush between)
        await node.stop()
        assert isinstance(plain.value, ErrorReply)
        assert run.done and other.done, "gathered runs stopped without an answer"


@pytest.mark.parametrize("write_run", [1, 32])
async def test_a_gathered_run_waits_out_a_disk_stall_a_plain_write_is_answered_in(write_run: int,
        tmp_path: Path) -> None:
    """The realistic hold-up: the WAL's fsync hangs (a stalled disk). A plain write
    proposed meanwhile is tracked and answered -UNKNOWN at its deadline; a gathered run
    waits for the disk, however long."""
    async with one_node_leader(tmp_path / "d", *free_ports(2), write_run=write_run,
                               fsync="always") as node:
        disk = trio.Event()
        sync_thread = node.driver.sync_thread
        real_sync = sync_thread.sync

        async def stalled_sync(*args: object) -> None:
            await disk.wait()
            await real_sync(*args)  # type: ignore[arg-type]

        sync_thread.sync = stalled_sync  # type: ignore[method-assign]
        try:
            first = node.submit([b"SET", b"x", b"1"])  # its Ready's fsync hangs
            await trio.testing.wait_all_tasks_blocked()
            plain = node.submit([b"SET", b"a", b"1"])
            run = node.submit_run([[b"SET", b"b", b"1"]], 5)
            node.requests.sweep(trio.current_time() + 10 * node.settings.request_timeout)
            assert first.done and plain.done  # -UNKNOWN: each client is answered
            assert run.done, "the gathered run's client waits for the disk"
        finally:
            disk.set()
