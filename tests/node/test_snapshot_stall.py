"""A node's own snapshot never holds its event loop (issue 15's stability row).

Encoding a large state runs long C calls (sorting keys, packing) that hold the GIL for
their whole duration; in a worker thread they stalled the leader's loop past an election
timeout. The encoder below holds the GIL until the loop has answered it (through a libc
``poll`` called by ``ctypes.PyDLL``, which keeps the GIL), so it can only see the answer
if the loop turns while it encodes. And the automatic snapshots' staggering rule.
"""

from __future__ import annotations

import ctypes
import os
import select
import threading
from functools import partial
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.kv import KVState
from raftkv.kv.features import FEATURE_LEVEL
from raftkv.node import snapshots
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.node.snapshot_child import ChildFailed, SnapshotChild
from raftkv.node.snapshots import snapshot_due, snapshot_phase
from raftkv.raft import Role
from wire.reply import OK

GIVE_UP_MS = 10_000  # how long the encoder waits for the loop before it reports "late"


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def gil_holding_wait(fd: int, timeout_ms: int) -> bool:
    """Wait for ``fd`` to be readable *without* releasing the GIL (as a long C call)."""
    pfd = _PollFd(fd, select.POLLIN, 0)
    return ctypes.PyDLL(None).poll(ctypes.byref(pfd), 1, timeout_ms) == 1


async def no_clients(*args: object,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def test_the_loop_answers_while_its_snapshot_is_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FIFOs by name: the child keeps no inherited descriptor but its own pipe.
    started, answer = tmp_path / "started", tmp_path / "answer"
    data_dir = tmp_path / "node"
    os.mkfifo(started)
    os.mkfifo(answer)
    started_r = os.open(started, os.O_RDONLY | os.O_NONBLOCK)
    answer_w = os.open(answer, os.O_RDWR)  # (a FIFO opened read-write never blocks)

    def encode(state: KVState, piece_bytes: int) -> list[bytes]:
        answer_r = os.open(answer, os.O_RDONLY | os.O_NONBLOCK)
        os.write(os.open(started, os.O_WRONLY | os.O_NONBLOCK), b"s")
        return [b"in time" if gil_holding_wait(answer_r, GIVE_UP_MS) else b"late"]

    monkeypatch.setattr(snapshots, "snapshot_pieces", encode)
    peer, client = free_ports(2)
    settings = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                            peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                            data_dir=str(data_dir), fsync="never", snapshot_entries=0,
                            snapshot_fork=True)
    node = Node(settings, admin=Pending.of)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(no_clients))
        while node.core.role is not Role.LEADER:
            await node.driver.role_changed.wait()
        assert await node.submit([b"SET", b"k", b"v"]).wait() == OK
        # the leader's own entries (published, its feature level): none may apply later
        while not node.kv.is_published(1) or node.kv.cluster_level != FEATURE_LEVEL:
            await node.next_tick()
        pending = node.snapshots.request()  # RAFT SNAPSHOT
        await trio.lowlevel.wait_readable(started_r)
        os.write(answer_w, b"a")  # the loop turned while the encoder ran
        assert await pending.wait() == node.applied
        data = await trio.to_thread.run_sync(node.storage.snapshot_data)
        nursery.cancel_scope.cancel()
    os.close(started_r)
    os.close(answer_w)
    assert data == b"in time"


async def test_a_child_that_fails_gives_no_bytes() -> None:
    def boom() -> bytes:
        raise RuntimeError("encoder bug")

    with pytest.raises(ChildFailed):
        await SnapshotChild(boom).stream_to(list)
    whole = await SnapshotChild(lambda: b"x" * 3_000_000).stream_to(list)
    assert b"".join(whole) == b"x" * 3_000_000


async def test_the_child_holds_no_descriptor_but_its_pipe() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    with listener:
        got = await SnapshotChild(lambda: " ".join(os.listdir("/proc/self/fd")).encode()
                                  ).stream_to(list)
    fds = b"".join(got).split()
    assert len(fds) == 2, fds  # the pipe, and the directory listdir reads



def test_followers_snapshot_apart_from_the_leader_and_from_each_other() -> None:
    every = 10_000
    assert snapshot_phase(7, every, leading=True) == 0
    phases = [snapshot_phase(i, every, leading=False) for i in (1, 2, 3, 4, 5)]
    assert all(every // 4 <= p < every * 3 // 4 for p in phases)
    assert min(abs(a - b) for i, a in enumerate(phases) for b in phases[i + 1:]) > every // 20

    def points(phase: int, start: int = 0) -> list[int]:
        """The indexes a node applying one entry at a time snapshots at."""
        last, out = start, []
        for applied in range(start + 1, start + 5 * every):
            if snapshot_due(applied, last, every, phase):
                out.append(applied)
                last = applied
        return out

    assert points(0) == [every, 2 * every, 3 * every, 4 * every]  # as before, for the leader
    phase = phases[1]
    assert points(phase) == [phase + k * every for k in (1, 2, 3, 4)]
    # A node whose last snapshot is off its points (a role change, RAFT SNAPSHOT) comes
    # back to them: here a follower's last snapshot, then leading.
    assert points(0, start=phase) == [2 * every, 3 * every, 4 * every, 5 * every]
    # A snapshot lands a few entries past its point; the next is still at the next point.
    assert points(0, start=every + 1)[:2] == [2 * every, 3 * every]
    assert points(phase, start=phase + every + 3)[:2] == [phase + 2 * every, phase + 3 * every]


def test_a_loop_in_another_thread_can_fork_its_encoder() -> None:
    got: list[bytes] = []

    async def main() -> None:
        got.append(b"".join(await SnapshotChild(lambda: b"ok").stream_to(list)))

    thread = threading.Thread(target=trio.run, args=(main,))
    thread.start()
    thread.join()
    assert got == [b"ok"]
