"""A founding voter that lost its data directory, restarted with its original ``--cluster``
line (attack7's hole that ``--join`` did not cover), and founders that start late.

Before: ``SET k v1`` acknowledged by the leader A and the voter B while C was down; B wiped
and restarted with ``serve --id B --cluster ...``; A killed; C restarted: B voted for C at
once with an empty log and term, C became leader and its entries overwrote v1 on A when A
came back: every node answered the old value. Now B asks its founder peers before it votes
or campaigns; C has B as published (it served), so B exits naming the fix, C cannot win an
election alone, and v1 is there once A is back.

A founder that never served is not published: a fresh cluster whose nodes start seconds
apart forms, and a founder started after the others elected a leader still joins.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster, retry_call
from wire.reply import OK

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def _wait_exit_or_leader(c: LocalCluster, node_id: int, leader_among: list[int],
                         timeout: float = 60.0) -> None:
    """Until ``node_id`` exits or a leader is elected among ``leader_among``."""
    proc = c.nodes[node_id].proc
    assert proc is not None
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        infos = [c.info(i) for i in leader_among]
        if any(v and v.get("role") == "leader" for v in infos):
            return
        time.sleep(0.1)  # other processes: nothing to wait on but their state


def published(c: LocalCluster, node_id: int) -> set[int]:
    """The members ``node_id``'s log has as published (empty if it does not answer)."""
    info = c.info(node_id) or {}
    return {int(i) for i in info.get("published", "").split(",") if i}


def _wait_published(c: LocalCluster, node_id: int, ids: set[int],
                    timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if published(c, node_id) >= ids:
            return
        time.sleep(0.05)  # another process: nothing to wait on but its state
    raise AssertionError(f"node {node_id} never had {ids} published: {c.info(node_id)}")


def test_a_wiped_founder_restarted_with_its_cluster_line_refuses_and_v1_survives(
        tmp_path: Path) -> None:
    with LocalCluster(tmp_path, fsync="never") as c:
        a = c.wait_for_leader()
        b, stale = (i for i in c.nodes if i != a)
        assert retry_call(c.nodes[a].client_addr, "SET", "k", "v0") == OK
        # Past the window the fix leaves open (README): C has applied B's publication.
        _wait_published(c, stale, {1, 2, 3})
        c.kill(stale)
        assert retry_call(c.nodes[a].client_addr, "SET", "k", "v1") == OK  # A and B
        c.kill(b)
        c.wipe(b)
        c.kill(a)
        c.start(stale)
        c.start(b)  # the same --cluster line it was founded with, on an empty directory
        _wait_exit_or_leader(c, b, [stale, b])
        node_b = c.nodes[b]
        assert node_b.proc is not None
        node_b.expect_exit = node_b.proc.poll() is not None
        c.start(a)
        leader = c.wait_for_leader(among=[i for i in c.nodes if c.nodes[i].alive], timeout=60)
        for i in c.nodes:
            if c.nodes[i].alive:
                assert retry_call(c.nodes[i].client_addr, "GET", "k") == b"v1", (
                    f"node {i} (leader {leader}) lost the acknowledged v1")
        log = node_b.log_path.read_text(errors="replace")
        assert node_b.proc.poll() == 1, f"the wiped founder still runs:\n{log[-2000:]}"
        assert f"node {b} is already a voter of this cluster" in log
        assert "its data directory is empty" in log and "new --id" in log
        # Started again, as a supervisor would (attack9: its first start had made the
        # directory, so this one skipped the check, voted, and v1 was lost): it refuses again.
        c.start(b)
        assert node_b.proc.wait(timeout=60) == 1
        node_b.expect_exit = True
        assert node_b.log_path.read_text(errors="replace").count(
            f"node {b} is already a voter of this cluster") == 2


def test_founders_started_seconds_apart_form_a_cluster(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, fsync="never")
    try:
        for n, i in enumerate(c.nodes):
            if n:
                time.sleep(2)  # the point of the test: founders that start late
            c.start(i)
        leader = c.wait_for_leader(timeout=60)
        assert retry_call(c.nodes[leader].client_addr, "SET", "k", "v") == OK
        for i in c.nodes:
            assert retry_call(c.nodes[i].client_addr, "GET", "k") == b"v"
        assert not c.crashed()
    finally:
        c.close()


def test_a_founder_started_after_the_others_served_still_joins(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, fsync="never")
    try:
        late = 3
        for i in c.nodes:
            if i != late:
                c.start(i)
        leader = c.wait_for_leader(among=[i for i in c.nodes if i != late], timeout=60)
        assert retry_call(c.nodes[leader].client_addr, "SET", "k", "v") == OK
        # The brief's case: a founder 10 s late, by when the others have published
        # themselves (they served) and it has not; waited for as that, not as 10 s (the
        # peers' dial back-off is at most 1 s, so nothing else changes with the wait).
        _wait_published(c, leader, {i for i in c.nodes if i != late})
        assert late not in published(c, leader)
        c.start(late)
        assert retry_call(c.nodes[late].client_addr, "GET", "k", timeout=60) == b"v"
        info = c.info(late, timeout=2.0)
        assert info is not None and info.get("role") == "follower", info
        _wait_published(c, late, {1, 2, 3})  # it has served now
        assert not c.crashed()
    finally:
        c.close()
