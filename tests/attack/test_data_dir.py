"""A data directory with hostile contents (attack2 branch, round 2). Each test fails today.

Copies of a real node's directory, one thing changed, then ``raftkv serve``:

* a 4 GB (sparse) file named like the next WAL segment: ``scan_segment`` reads every
  segment whole (``f.read()``), so the node died with ``MemoryError`` under a 3 GB limit,
  and without a limit takes the memory before finding a zero header;
* ``meta.json`` of 200,000 nested arrays: ``RecursionError`` traceback, not a refusal;
* a FIFO named like a WAL segment: the node blocks in ``open()`` before it serves, for
  good, and ignores SIGTERM (only SIGKILL ends it).

What does work: a symlink to /dev/zero as segment or snapshot, a LOCK that is a directory,
a 3 GB zero snapshot, a segment symlinked to /etc/passwd: each is refused with one line.
The node must refuse every directory it cannot use with a ``DiskStorageError`` naming the
file, promptly and in bounded memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raftkv.restore import config_of
from raftkv.storage import open_storage

CLUSTER = {1: "127.0.0.1:1"}

CHILD = """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1024 * 1024 * 1024, resource.RLIM_INFINITY))
    from raftkv.restore import config_of
    from raftkv.storage import open_storage
    from raftkv.storage.errors import DiskStorageError
    try:
        open_storage(sys.argv[1], "c", 1, config_of({1: "127.0.0.1:1"}), fsync="never").close()
    except DiskStorageError as exc:
        print("refused:", exc)
    else:
        print("opened")
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A real, closed data directory with one WAL segment."""
    d = tmp_path / "data"
    open_storage(str(d), "c", 1, config_of(CLUSTER), fsync="never").close()
    return d


def _open_in_child(d: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(d)],
                          capture_output=True, text=True, timeout=timeout)


def _next_segment(d: Path) -> Path:
    segments = sorted(n for n in os.listdir(d) if n.startswith("wal-"))
    seq = int(segments[-1][4:-4]) + 1
    return d / f"wal-{seq:016d}.log"


def test_huge_segment_is_refused_in_bounded_memory(data_dir: Path) -> None:
    with open(_next_segment(data_dir), "wb") as f:
        f.truncate(1536 * 1024 * 1024)  # sparse: no disk used
    done = _open_in_child(data_dir)
    assert "refused:" in done.stdout, done.stderr[-1500:]


def test_deeply_nested_meta_is_refused_not_a_traceback(data_dir: Path) -> None:
    (data_dir / "meta.json").write_text("[" * 200_000 + "]" * 200_000)
    done = _open_in_child(data_dir)
    assert "refused:" in done.stdout, done.stderr[-1500:]


@pytest.mark.slow  # 10 s while it fails (the child is killed at its timeout)
def test_fifo_in_place_of_a_segment_is_refused_not_waited_on(data_dir: Path) -> None:
    os.mkfifo(_next_segment(data_dir))
    try:
        done = _open_in_child(data_dir, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("opening the data directory blocked on a FIFO for 10 s")
    assert "refused:" in done.stdout, done.stderr[-1500:]
