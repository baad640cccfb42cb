"""Peer-side hardening against real processes (issue 12): hostile admin commands are
refused before they are proposed, and the cluster keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call
from wire.reply import OK, ErrorReply

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir: Path = tmp_path_factory.mktemp("peer-hardening")
    with LocalCluster(workdir) as c:
        c.wait_for_leader()
        yield c


def test_hostile_admin_commands_are_refused_and_nothing_dies(cluster: LocalCluster) -> None:
    c = cluster
    leader = c.wait_for_leader()
    follower = next(i for i in c.nodes if i != leader)
    hostile = [
        ("ADDNODE", "9", "a..b:7000", "LEARNER"),  # killed every node, on every restart
        ("ADDNODE", "9", "127.0.0.1:99999", "LEARNER"),  # killed the leader
        ("ADDNODE", "9", "127.0.0.1:0"),
        ("ADDNODE", "9", "\u200b:7000"),
        ("ADDNODE", "0", "127.0.0.1:7000"),
        ("ADDNODE", "-9", "127.0.0.1:7000"),
        ("ADDNODE", str(2**63), "127.0.0.1:7000"),
        ("ADDNODE", "18446744073709551616", "127.0.0.1:7000"),
        ("REMOVENODE", str(2**64)),
        ("PROMOTE", "1_0"),
        ("TRANSFER", str(2**64)),
    ]
    for node in (follower, leader):
        for words in hostile:
            reply = call(c.nodes[node].client_addr, "RAFT", *words, timeout=10.0)
            assert isinstance(reply, ErrorReply) and reply.text.startswith("ERR"), (words, reply)
    for node in c.nodes:
        assert call(c.nodes[node].client_addr, "SET", f"after-{node}", "v", timeout=10.0) == OK
    assert not c.crashed(), c.logs_tail()
    members = (c.info(leader) or {}).get("members", "")
    assert "9=" not in members, members
