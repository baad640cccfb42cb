"""``raftkv up --nodes 1`` on a directory that holds a 3-node cluster (session 11).

Before: node 1 started alone with the others' votes missing and ``raftkv up`` said only
"no leader after 15 s; see the node logs above". Now it refuses before starting anything,
in one line naming the directory's voters and the command to run instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from raftkv.local_cluster import preflight, short_of_quorum
from raftkv.storage import open_storage
from wire.raft import ClusterConfig, Member

pytestmark = pytest.mark.timeout(90)


def with_state(data_dir: Path, voters: tuple[int, ...], *ids: int) -> None:
    config = ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}") for i in voters))
    for i in ids:
        open_storage(data_dir / f"node-{i}", "abc", i, config, fsync="never").close()


def test_too_few_of_the_voters_is_named_with_what_to_run(tmp_path: Path) -> None:
    assert short_of_quorum(1, str(tmp_path)) is None  # a new cluster
    with_state(tmp_path, (1, 2, 3), 1, 2, 3)
    assert short_of_quorum(3, str(tmp_path)) is None  # a restart
    assert short_of_quorum(2, str(tmp_path)) is None  # 2 of 3: a majority may run
    line = short_of_quorum(1, str(tmp_path))
    assert line == (f"{tmp_path} holds a cluster of 3 voters (nodes 1, 2, 3); --nodes 1 "
                    "starts 1 of them, not a majority, so no leader can be elected: run "
                    f"`raftkv up --data-dir {tmp_path} --nodes 3`")


def test_voters_up_cannot_start_point_elsewhere(tmp_path: Path) -> None:
    with_state(tmp_path, (1, 12, 13), 1)  # members added by hand under other ids
    line = short_of_quorum(1, str(tmp_path))
    assert line is not None and "(nodes 1, 12, 13)" in line
    assert "raftkv serve" in line and "raftkv recover --force-new-cluster" in line


@pytest.mark.slow
def test_raftkv_up_refuses_at_once_and_starts_nothing(tmp_path: Path) -> None:
    with_state(tmp_path, (1, 2, 3), 1, 2, 3)
    base = next(b for b in range(24000, 60000, 700) if preflight(1, "127.0.0.1", b) is None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftkv", "up", "--data-dir", str(tmp_path), "--nodes", "1",
         "--fsync", "never", "--port-base", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "holds a cluster of 3 voters (nodes 1, 2, 3)" in lines[0], err
    assert "--nodes 3`" in lines[0]
