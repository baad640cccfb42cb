"""``raftkv backup`` and ``backup verify`` given a directory end in a Python traceback
(attack21).

Live, a new user's first backup:

* ``raftkv backup verify /var/backups`` (the directory, not the file in it):
  ``IsADirectoryError: [Errno 21] Is a directory: 3`` after a 20-line traceback (the README
  says anything but a regular file is refused: a FIFO is, a directory is not).
* ``raftkv backup --endpoints ... /var/backups`` (an existing directory) takes the whole
  backup from the cluster, then fails at the rename: ``IsADirectoryError: ...
  '/var/backups.partial' -> '/var/backups'``; with a trailing slash, ``backups/``, it
  writes ``backups/.partial`` and fails with ``NotADirectoryError``. On a large state that
  is the whole transfer thrown away, then a traceback.

Right: one ``Error:`` line naming the path (exit status 1, as for every other refusal of
these commands), and for ``backup``, before any node is asked (etcdctl ``snapshot save``
to a directory fails at once too).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.cluster import LocalCluster
from raftkv.cli import main

pytestmark = pytest.mark.timeout(120)


def test_verify_of_a_directory_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["backup", "verify", str(tmp_path)])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Error:" in result.output


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", nodes=1, fsync="never") as c:
        c.wait_for_leader()
        yield c


@pytest.mark.parametrize("trailing", ["", "/"])
def test_backup_into_a_directory_is_one_error_line(tmp_path: Path, one_node: LocalCluster,
                                                   trailing: str) -> None:
    target = tmp_path / "backups"
    target.mkdir()

    done = subprocess.run([sys.executable, "-m", "raftkv", "backup", "--endpoints",
                           one_node.nodes[1].client_addr, f"{target}{trailing}"],
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "Error:" in done.stderr
    assert list(target.iterdir()) == []
