"""``raftkv member`` when its first endpoint answers TRYAGAIN for good (attack5 branch,
round 5). Failed before the fix.

``member_cli.change`` sent the command to the first endpoint that answered and, on
``TRYAGAIN``, retried *that endpoint* until ``--timeout``. A node that was removed from
the cluster (or one cut off in a minority) answers ``TRYAGAIN no leader known`` forever,
so once it led ``--endpoints`` (still in the operator's list after "Replacing a dead
node", say) every membership command gave up ("gave up: TRYAGAIN no leader known; the
membership change was not made, retry") although the other endpoints reach the leader.
It must try the next endpoint before coming back.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from chaos.cluster import LocalCluster, free_ports, retry_call
from wire.reply import ErrorReply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_removed_first_endpoint_does_not_stop_a_membership_change(
        cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    gone = next(i for i in cluster.nodes if i != leader)
    reply = retry_call(cluster.nodes[leader].client_addr, "RAFT", "REMOVENODE", str(gone))
    assert not isinstance(reply, ErrorReply), reply
    deadline = time.monotonic() + 20
    while (cluster.info(gone) or {}).get("role") != "removed":
        assert time.monotonic() < deadline, cluster.info(gone)
        time.sleep(0.1)  # another process: nothing to wait on but its INFO
    eps = ",".join([cluster.nodes[gone].client_addr,
                    *(n.client_addr for i, n in cluster.nodes.items() if i != gone)])
    done = subprocess.run(
        [sys.executable, "-m", "raftkv", "member", "add", "9", f"127.0.0.1:{free_ports(1)[0]}",
         "--learner", "--endpoints", eps, "--timeout", "10"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-800:]
    assert "ADDNODE 9" in done.stdout and "committed" in done.stdout, done.stdout
