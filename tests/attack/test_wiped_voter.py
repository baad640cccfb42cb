"""A voter that lost its data directory, restarted with --join under its old id (attack7).

Before: it started, voted at once with an empty log and term, and a follower that had
missed the last acknowledged write was elected with its vote; the write was then gone
from every node (reproduced three times by hand: ``SET k v1`` acknowledged by the leader
and the voter, the voter wiped and restarted, the leader killed, the stale follower
restarted: every node answered ``GET k`` with the value before). Now it refuses to start,
naming what happened and what to do (remove it, come back under a new id).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_a_wiped_voter_rejoining_under_its_id_refuses_to_start(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, fsync="never") as c:
        leader = c.wait_for_leader()
        wiped = next(i for i in c.nodes if i != leader)
        c.kill(wiped)
        c.wipe(wiped)
        node = c.nodes[wiped]
        node.join = [c.nodes[i].client_addr for i in c.nodes if i != wiped]
        c.start(wiped)
        assert node.proc is not None
        deadline = time.monotonic() + 60
        while node.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        node.expect_exit = True
        code = node.proc.poll()
        log = node.log_path.read_text(errors="replace")
        assert code == 1, f"the wiped voter is still running (or exited {code}):\n{log[-2000:]}"
        assert f"node {wiped} is already a voter of this cluster" in log
        assert "new --id" in log
        assert c.wait_for_leader(among=[i for i in c.nodes if i != wiped])
