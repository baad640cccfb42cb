"""Descriptors: clients may use up every descriptor of the process (EMFILE). Storage then
must not fail where failing stops the node: it holds what it needs (the directory, the
current snapshot, spare files for the next segment and received snapshot), postpones a
segment roll it cannot make, and a snapshot of its own state it cannot open is only
``SnapshotNotWritten``. It holds at most ``STORAGE_FDS`` descriptors."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from collections.abc import Iterator

import pytest
from storage_model import CONFIG, entries, entry, reopen

from raftkv.storage import STORAGE_FDS, SnapshotNotWritten
from wire.raft import SnapshotMeta


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[None]:
    """Take every free descriptor, as idle clients do, until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, open_fds() + 256), hard))
    taken: list[int] = []
    try:
        while True:
            try:
                taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as e:
                assert e.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_storage_keeps_working_when_clients_took_every_descriptor(tmp_path):
    s = reopen(tmp_path, fsync="always", segment_size=300)
    s.append(entries(1, 5, term=1, size=50))
    s.sync()
    with descriptors_exhausted():
        with pytest.raises(OSError):
            os.open(os.devnull, os.O_RDONLY)  # really none left
        # Segment rolls: the first uses the spare, the next ones are postponed.
        for i in range(6, 30):
            s.append([entry(i, 1, b"r" * 60)])
            s.sync()
        # A leader's snapshot is received into the spare snapshot file and installed.
        meta = SnapshotMeta(32, 2, CONFIG)
        w = s.snapshot_writer(meta)
        w.write(0, b"leader state")
        w.finish()
        s.append(entries(33, 36, term=2))
        s.sync()
        # Reading the snapshot needs no descriptor: read it, send it in chunks.
        assert s.snapshot_data() == b"leader state"
        assert s.snapshot_chunk(7, 100) == b"state"
        with s.open_snapshot() as reader:
            assert reader.read(0, 6) == b"leader"
        # Our own snapshot cannot get a file now: not written, and nothing failed.
        with pytest.raises(SnapshotNotWritten, match="Too many open files") as info:
            s.compact(SnapshotMeta(34, 2, CONFIG), b"state@34")
        assert info.value.errno == errno.EMFILE
        assert not s.failed
        s.append(entries(37, 37, term=2))
        s.sync()
    s.compact(SnapshotMeta(34, 2, CONFIG), b"state@34")  # descriptors back: it works
    s.append(entries(38, 40, term=2))
    s.sync()
    s.close()
    s = reopen(tmp_path)
    assert (s.snapshot_meta().index, s.snapshot_data(), s.last_index()) == (34, b"state@34", 40)
    assert [e.index for e in s.entries(35, 41)] == [35, 36, 37, 38, 39, 40]
    s.close()


def test_storage_holds_at_most_storage_fds_descriptors(tmp_path):
    base = open_fds()
    s = reopen(tmp_path, fsync="always", segment_size=200)
    peak = open_fds() - base
    for i in range(1, 40):
        s.append([entry(i, 1, b"p" * 40)])
        s.sync()
        peak = max(peak, open_fds() - base)
    reader = s.open_snapshot()  # a transfer reading the snapshot that gets replaced
    w = s.snapshot_writer(SnapshotMeta(45, 2, CONFIG))
    w.write(0, b"received")
    peak = max(peak, open_fds() - base)
    w.finish()
    peak = max(peak, open_fds() - base)
    s.append(entries(46, 50, term=2))
    s.sync()
    own = s.prepare_compact(SnapshotMeta(48, 2, CONFIG), b"own")
    peak = max(peak, open_fds() - base)
    assert own is not None
    s.finish_compact(SnapshotMeta(48, 2, CONFIG), own)
    peak = max(peak, open_fds() - base)
    reader.close()
    s.close()
    assert open_fds() <= base  # nothing leaked (other threads may close their own meanwhile)
    assert 0 < peak <= STORAGE_FDS, peak
