"""``raftkv up``'s ``DATA_DIR/cluster-id`` file, hostile (attack5 branch, round 5). Failed
before the fix.

``ensure_cluster_id_file`` read it with ``Path.read_text()``. Live, ``raftkv up``:

* a directory in its place: an ``IsADirectoryError`` traceback;
* bytes that are not UTF-8: ``Error: 'utf-8' codec can't decode byte 0xff ...``, which
  does not say which file;
* a FIFO: ``open`` blocks for good; a huge (sparse) file is read whole into memory
  before being refused.

Each must be one error naming the file (``raftkv up`` prints a ``ValueError`` as one
line), promptly.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from raftkv.node.cluster_id import ensure_cluster_id_file

pytestmark = pytest.mark.timeout(30)


def _directory(path: Path) -> None:
    path.mkdir()


def _binary(path: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00abc\n")


def _huge(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse


def _fifo(path: Path) -> None:
    os.mkfifo(path)


@pytest.mark.parametrize("make", [_directory, _binary, _huge, _fifo])
def test_a_bad_cluster_id_file_is_one_error_naming_it(tmp_path: Path, make) -> None:
    path = tmp_path / "cluster-id"
    make(path)
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            outcome.append(ensure_cluster_id_file(path, tmp_path / "node-1"))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert outcome, "reading the cluster-id file blocked for 10 s"
    assert isinstance(outcome[0], ValueError), repr(outcome[0])
    assert str(path) in str(outcome[0]), str(outcome[0])


def test_a_good_file_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "cluster-id"
    path.write_text("abc-123\n")
    assert ensure_cluster_id_file(path, tmp_path / "node-1") == "abc-123"
