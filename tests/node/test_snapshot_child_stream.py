"""A forked encoder's bytes reach the file as they come (raftkv.node.snapshot_child).

The node must not hold the whole encoding before writing it (~7 MB at 100k keys and their
feed, on top of the steady state: tests/bench/bench_memory.py), a child that dies mid-way
must leave no snapshot file, and a cancelled wait must not hang on the child.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from raftkv.node.snapshot_child import READ_BYTES, ChildFailed, SnapshotChild
from raftkv.storage.fsync import FsyncPolicy
from raftkv.storage.snapshot_file import write_snapshot
from wire.raft import ClusterConfig, Member, SnapshotMeta

BIG = 16 * READ_BYTES  # far more than a pipe holds: the child blocks until it is read


def pieces() -> Iterator[bytes]:
    """What the child encodes: BIG bytes in pieces, as ``snapshot_pieces`` gives them."""
    return (b"s" * READ_BYTES for _ in range(BIG // READ_BYTES))


def alive(pid: int) -> bool:
    """True while ``pid`` runs (not yet exited: a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


async def test_pieces_reach_the_consumer_while_the_child_still_writes() -> None:
    child = SnapshotChild(pieces)
    pid = child.pid
    seen: list[tuple[int, bool]] = []

    def consume(pieces: Iterator[bytes]) -> int:
        total = 0
        for piece in pieces:
            seen.append((len(piece), alive(pid)))
            total += len(piece)
        return total

    assert await child.stream_to(consume) == BIG == child.size
    assert seen[0][1], "the first piece came only after the child had written everything"
    assert max(size for size, _ in seen) <= READ_BYTES
    assert reaped(pid)


async def test_a_child_killed_midway_leaves_no_snapshot_file(tmp_path: Path) -> None:
    child = SnapshotChild(pieces)
    meta = SnapshotMeta(5, 1, ClusterConfig((Member(1, "127.0.0.1:7101"),)))

    def write(pieces: Iterator[bytes]) -> object:
        def killing() -> Iterator[bytes]:
            for i, piece in enumerate(pieces):
                if i == 0:
                    os.kill(child.pid, signal.SIGKILL)  # (the pipe's rest is lost)
                yield piece
        return write_snapshot(str(tmp_path), meta, killing(), FsyncPolicy.ALWAYS)

    with pytest.raises(ChildFailed):
        await child.stream_to(write)
    assert os.listdir(tmp_path) == []


async def test_cancelled_while_the_child_encodes_kills_and_reaps_it() -> None:
    child = SnapshotChild(lambda: time.sleep(3600) or b"")  # type: ignore[func-returns-value]
    pid = child.pid
    reading = trio.Event()

    def consume(pieces: Iterator[bytes]) -> list[bytes]:
        trio.from_thread.run_sync(reading.set)
        return list(pieces)  # blocks on the pipe until the child is gone

    with trio.fail_after(30):  # (a hang is the failure this test looks for)
        async with trio.open_nursery() as nursery:
            async def wait() -> None:
                await child.stream_to(consume)
                pytest.fail("stream_to returned although cancelled")

            nursery.start_soon(wait)
            await reading.wait()
            nursery.cancel_scope.cancel()
    assert not alive(pid)
    assert reaped(pid)
