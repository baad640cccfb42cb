"""attack25: a snapshot child that stops (SIGSTOP, or wedged) stalls the node's snapshots
for good.

``SnapshotChild.stream_to`` waits for the child's pipe to reach EOF with no deadline, and
``Snapshotter`` starts no other snapshot while one runs (``_running``). A stopped child
never writes again and never exits, so RAFT SNAPSHOT's caller is never answered, no
automatic snapshot is ever taken again (the log grows without bound), and only a stop of
the whole node (which SIGKILLs the child) ends it. With a worker thread nothing outside the
node can stop the encoder on its own.

Virtual time (autojump): the caller waits ten minutes of it, so whatever deadline a fix
picks (below that) shows here at once; ~5 s of real time.
"""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from chaos.cluster import free_ports
from raftkv.kv import KVState, encode_snapshot
from raftkv.node import snapshots
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from wire.reply import OK, ErrorReply


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def children() -> list[str]:
    """This process's live children (all threads' ``children`` lists)."""
    out: list[str] = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            out += f.read().split()
    return out


async def no_clients(*args: object,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def test_raft_snapshot_is_answered_though_the_child_was_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    stopped = tmp_path / "stopped"
    os.mkfifo(stopped)
    stopped_r = os.open(stopped, os.O_RDONLY | os.O_NONBLOCK)

    def encode(state: KVState, piece_bytes: int) -> bytes:
        # As `kill -STOP <child>` from outside: the child tells us, then stops itself.
        os.write(os.open(stopped, os.O_WRONLY | os.O_NONBLOCK), b"s")
        os.kill(os.getpid(), signal.SIGSTOP)
        return encode_snapshot(state)

    monkeypatch.setattr(snapshots, "snapshot_pieces", encode)
    peer, client = free_ports(2)
    settings = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                            peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                            data_dir=str(tmp_path / "node"), fsync="never",
                            snapshot_entries=0, snapshot_fork=True)
    node = Node(settings, admin=Pending.of)
    answer: object = "never answered"
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(no_clients))
        while node.core.role is not Role.LEADER:
            await node.driver.role_changed.wait()
        assert await node.submit([b"SET", b"k", b"v"]).wait() == OK
        pending = node.snapshots.request()  # RAFT SNAPSHOT
        await trio.lowlevel.wait_readable(stopped_r)
        with trio.move_on_after(600):  # virtual: ten minutes
            answer = await pending.wait()
        nursery.cancel_scope.cancel()  # (the stop SIGKILLs the stopped child)
    os.close(stopped_r)
    assert children() == [], "the stop left the stopped child behind"
    # Any answer will do (an error saying the snapshot was not written is fine): the
    # caller must not wait forever on a child that will never write.
    assert isinstance(answer, int | ErrorReply), answer
