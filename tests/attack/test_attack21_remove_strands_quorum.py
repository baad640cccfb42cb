"""``RAFT REMOVENODE`` of a healthy voter while another voter is down takes the cluster
down (attack21).

Live (``raftkv up``, 3 nodes, leader 2): node 3 stopped (SIGSTOP, a dead disk, a reboot),
the two others serve writes. An operator removes node 1 (the wrong node, or "the one
being replaced next"): the leader puts {2, 3} in force at once, which needs node 3, so
the removal answers ``-UNKNOWN timed out waiting for a quorum`` after 5 s, the leader
steps down (``role:candidate``), and every later ``SET`` answers ``-TRYAGAIN no leader
known`` until node 3 comes back. One mistyped admin command turned a cluster that
tolerated its one failure into one that is down.

etcd refuses such a change up front (``--strict-reconfig-check``, on by default:
``etcdserver: re-configuration failed due to not enough started members``): a removal
is allowed only if the voters left that the leader has heard from recently are a quorum
of the new configuration. Right here: the same check, answered with an error (nothing
proposed), and the cluster keeps serving.

Deterministic: node 3 is never started, so the leader has never heard from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call, parse_members
from wire.reply import OK, ErrorReply

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def two_of_three(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, fsync="never")  # not ``with``: that starts all three
    try:
        c.start(1)
        c.start(2)
        c.wait_for_leader(among=[1, 2])
        yield c
    finally:
        c.close()


def test_removing_a_live_voter_while_another_is_down_is_refused(
        two_of_three: LocalCluster) -> None:
    c = two_of_three
    leader = c.wait_for_leader(among=[1, 2])
    other = 3 - leader  # the live follower
    addr = c.nodes[leader].client_addr
    assert call(addr, "SET", "k", "before", timeout=10.0) == OK

    reply = call(addr, "RAFT", "REMOVENODE", str(other), timeout=10.0)

    assert isinstance(reply, ErrorReply), reply
    assert not reply.text.startswith("UNKNOWN"), reply.text  # refused, not proposed
    info = c.info(leader, timeout=5.0)
    assert info is not None
    assert set(parse_members(info["members"])) == {1, 2, 3}
    assert call(addr, "SET", "k", "after", timeout=10.0) == OK  # still available
