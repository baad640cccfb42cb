"""``raftkv member`` when its first endpoint answers TRYAGAIN for good (attack5 branch,
round 5). Failed before the fix.

``member_cli.change`` sent the command to the first endpoint that answered and, on
``TRYAGAIN``, retried *that endpoint* until ``--timeout``. A node that was removed from
the cluster (or one cut off in a minority) answers ``TRYAGAIN no leader known`` forever,
so once it led ``--endpoints`` (still in the operator's list after "Replacing a dead
node", say) every membership command gave up ("gave up: TRYAGAIN no leader known; the
membership change was not made, retry") although the other endpoints reach the leader.
It must try the next endpoint before coming back.

The removed node's own answer was wrong too: it still names its old leader and forwards
every write there, the leader refuses its link, and after 5 s the client gets ``-UNKNOWN
... may or may not have been applied`` for a write that certainly was not. A removed node
must answer at once that it was removed (TRYAGAIN: not applied, send it elsewhere).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from chaos.cluster import LocalCluster, free_ports, retry_call
from raftkv.probe import call
from wire.reply import ErrorReply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def _remove_one(cluster: LocalCluster) -> int:
    """Remove a follower and wait until it knows; its id."""
    leader = cluster.wait_for_leader()
    gone = next(i for i in cluster.nodes if i != leader)
    reply = retry_call(cluster.nodes[leader].client_addr, "RAFT", "REMOVENODE", str(gone))
    assert not isinstance(reply, ErrorReply), reply
    deadline = time.monotonic() + 20
    while (cluster.info(gone) or {}).get("role") != "removed":
        assert time.monotonic() < deadline, cluster.info(gone)
        time.sleep(0.1)  # another process: nothing to wait on but its INFO
    return gone


def test_a_removed_node_says_so_instead_of_unknown(cluster: LocalCluster) -> None:
    gone = _remove_one(cluster)
    for args in (("SET", "a", "1"), ("RAFT", "ADDNODE", "9", "127.0.0.1:1")):
        reply = call(cluster.nodes[gone].client_addr, *args, timeout=30.0)
        assert isinstance(reply, ErrorReply) and reply.text.startswith("TRYAGAIN"), reply
        assert "removed" in reply.text, reply


def test_a_removed_first_endpoint_does_not_stop_a_membership_change(
        cluster: LocalCluster) -> None:
    gone = _remove_one(cluster)
    eps = ",".join([cluster.nodes[gone].client_addr,
                    *(n.client_addr for i, n in cluster.nodes.items() if i != gone)])
    done = subprocess.run(
        [sys.executable, "-m", "raftkv", "member", "add", "9", f"127.0.0.1:{free_ports(1)[0]}",
         "--learner", "--endpoints", eps, "--timeout", "10"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-800:]
    assert "ADDNODE 9" in done.stdout and "committed" in done.stdout, done.stdout
