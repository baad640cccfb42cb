"""attack18 (follow50): ``--fsync never`` is not honoured on the AIO path.

``DiskStorage.sync`` fsyncs through ``fsync_fd``/``fdatasync_fd``, which do nothing under
``FsyncPolicy.NEVER``. The AIO path (``SyncThread._sync_aio``) takes ``sync_write``'s
``(fd, datasync)`` and submits the fsync to the kernel whatever the storage's policy: a
node started with ``--fsync never`` (54 test files start nodes so, e.g.
tests/attack/conftest.py's cluster; the benchmarks' rows that leave the disk out) now
fsyncs every WAL group, in a kernel worker. Measured with the real AioFsync (a data
directory under /work, twice each): 300 one-entry groups under ``fsync=never`` took
0.51 s (1.7 ms a group, the disk's fsync) against 0.005-0.008 s on main's path; the CI
suite runs its clusters with ``never`` and is near its 20 min budget.
"""

from __future__ import annotations

import os

import pytest
import trio

from raftkv.node.sync_thread import SyncThread
from raftkv.storage import open_storage
from wire.raft import ClusterConfig, Entry, HardState, Member

CONFIG = ClusterConfig((Member(1, "127.0.0.1:7101"),))


class RecordingAio:
    """AioFsync's interface; every submitted fsync completes at once (a socketpair)."""

    def __init__(self) -> None:
        import socket
        self._done, self._signal = socket.socketpair()
        self._done.setblocking(False)
        self.submitted: list[tuple[int, bool]] = []

    def fileno(self) -> int:
        return self._done.fileno()

    def submit(self, fd: int, datasync: bool) -> None:
        self.submitted.append((fd, datasync))
        self._signal.send(b"x")

    def reap(self) -> bool:
        try:
            self._done.recv(1)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        self._done.close()
        self._signal.close()


async def test_fsync_never_submits_no_fsync_to_the_kernel(tmp_path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    s = open_storage(tmp_path, "c", 1, CONFIG, fsync="never")
    aio = RecordingAio()
    calls: list[str] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda fd, _n=name, _r=real: (calls.append(_n), _r(fd))[1])
    with trio.fail_after(10):
        async with SyncThread(aio=lambda: aio) as worker:
            for group in range(3):
                lo = group * 4 + 1
                s.append([Entry(1, i, 0, b"v%d" % i) for i in range(lo, lo + 4)])
                s.set_hard_state(HardState(1, 1, lo - 1))
                await worker.sync(s.sync, s.buffered_bytes, s)
    assert aio.submitted == [] and calls == []  # never: no fsync, on any path
    monkeypatch.undo()
    s.close(sync=False)
    s = open_storage(tmp_path, "c", 1, CONFIG, fsync="never")
    assert s.last_index() == 12  # (written all the same)
    s.close()
