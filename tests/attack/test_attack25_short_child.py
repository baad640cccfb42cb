"""attack25: a snapshot child that exits 0 after writing only part of its bytes makes a
truncated snapshot current.

The parent's only evidence that "the child wrote everything" is its exit status: it never
learns how many bytes the child meant to write (no length or checksum from the child), and
the file's checksum is computed over whatever arrived. So a child that leaves with status
0 early (here: half of the encoding written, then ``os._exit(0)``, as any exit path in the
encoder or an at-fork hook could) gives a snapshot that is checksummed, made current, and
the log it covers is dropped: it does not decode, so the node cannot restart from its own
data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.kv import KVState, decode_snapshot_stream, encode_snapshot
from raftkv.node import snapshots
from raftkv.testing import one_node_leader
from wire.reply import OK, ErrorReply


def half_then_exit_0(state: KVState, piece_bytes: int) -> bytes:
    """In the child: write the first half of the real encoding to the pipe (its only
    descriptor), then leave with status 0."""
    data = encode_snapshot(state)
    (w,) = (int(fd) for fd in os.listdir("/proc/self/fd")
            if _open(int(fd)))  # (listdir's own descriptor is closed by now)
    os.write(w, data[: len(data) // 2])
    os._exit(0)


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_a_child_that_exits_0_early_leaves_no_truncated_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with one_node_leader(tmp_path / "node", *free_ports(2), fsync="never",
                               snapshot_fork=True) as node:
        for i in range(200):
            assert await node.submit([b"SET", b"k%d" % i, b"v" * 100]).wait() == OK
        monkeypatch.setattr(snapshots, "snapshot_pieces", half_then_exit_0)
        before = node.storage.snapshot_meta().index
        answer = await node.snapshots.request().wait()  # (an error reply would be right)
        monkeypatch.undo()
        state = node.kv.state_copy()
        taken = node.storage.snapshot_meta().index != before
        decoded: object = None
        if taken:  # (else nothing became current: the node has no snapshot to decode)
            try:
                decoded = await trio.to_thread.run_sync(node.storage.decode_snapshot,
                                                        decode_snapshot_stream)
            except Exception as exc:  # (any failure to decode is the finding)
                decoded = exc
    # A new current snapshot must be a whole one; refusing it is right too.
    if taken:
        assert isinstance(decoded, KVState), f"current snapshot does not decode: {decoded!r}"
        assert set(decoded.data) <= set(state)
    else:
        assert isinstance(answer, ErrorReply), answer
