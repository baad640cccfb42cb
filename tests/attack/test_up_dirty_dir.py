"""``raftkv up`` re-run in a data directory where some nodes lost their data (attack7).

Before: a deleted ``node-3`` (or ``--nodes 5`` over a 3-node cluster's directory) started
an empty node with the cluster's ``--cluster`` line: it bootstraps as if the cluster were
new and, as a voter that lost its data, votes with an empty log (the lost write of
tests/attack/test_wiped_voter.py). Now ``raftkv up`` refuses in one line and starts
nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from raftkv.local_cluster import lost_nodes, preflight
from raftkv.storage import open_storage
from wire.raft import ClusterConfig, Member

CONFIG = ClusterConfig(tuple(Member(i, f"127.0.0.1:{7100 + i}") for i in (1, 2, 3)))


def with_state(data_dir: Path, *ids: int) -> None:
    for i in ids:
        open_storage(data_dir / f"node-{i}", "abc", i, CONFIG, fsync="never").close()


def test_a_directory_with_some_nodes_empty_is_named(tmp_path: Path) -> None:
    assert lost_nodes(3, str(tmp_path)) is None  # a new cluster
    with_state(tmp_path, 1, 2, 3)
    assert lost_nodes(3, str(tmp_path)) is None  # a restart
    assert lost_nodes(2, str(tmp_path)) is None  # fewer nodes: a majority may run
    five = lost_nodes(5, str(tmp_path))
    assert five is not None and "node-4, node-5 are empty" in five
    (tmp_path / "node-3" / "meta.json").unlink()
    lost = lost_nodes(3, str(tmp_path))
    assert lost is not None and "node-3 is empty" in lost and "raftkv member add" in lost


@pytest.mark.slow
def test_raftkv_up_refuses_to_start_a_wiped_node(tmp_path: Path) -> None:
    with_state(tmp_path, 1, 2)
    base = next(b for b in range(23000, 60000, 700) if preflight(3, "127.0.0.1", b) is None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftkv", "up", "--data-dir", str(tmp_path), "--fsync", "never",
         "--port-base", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"raftkv up started the cluster with node-3 empty:\n{out}\n{err[-1500:]}")
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "node-3 is empty" in lines[0], err
    assert not (tmp_path / "node-3").exists()  # it started nothing
