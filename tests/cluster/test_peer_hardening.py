"""Peer-side hardening against real processes (issue 12): hostile admin commands are
refused before they are proposed, hostile peer frames cost only their connection, and
entries near the maximum request size replicate."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster, retry_call
from raftkv.node.sizes import request_size
from raftkv.probe import call
from wire.addr import parse_addr
from wire.frames import encode_frame
from wire.hello import PROTOCOL_VERSION, Hello
from wire.raft import CONFIG, AppendEntries, Entry, RequestVote
from wire.record import encode
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


def _term(c: LocalCluster, node: int) -> int:
    return int((c.info(node) or {"term": -1})["term"])


def test_hostile_peer_frames_close_only_that_connection(cluster: LocalCluster) -> None:
    """A peer (here a raw socket passing the Hello as member 2) sending a RequestVote at term
    2**64 - 1 with the transfer flag, or an AppendEntries with a garbage CONFIG entry: the
    connection is closed, no node changes term or dies, writes keep working."""
    c = cluster
    c.wait_for_leader()
    terms = {i: _term(c, i) for i in c.nodes}
    for node in c.nodes:
        sender = 3 if node == 2 else 2
        hello = encode_frame(encode(
            Hello(PROTOCOL_VERSION, (c.info(node, timeout=10) or {})["cluster_id"], sender,
                  "127.0.0.1:1", "x")))
        for msg in (
            RequestVote(2**64 - 1, sender, node, 2**64 - 1, 2**64 - 1, transfer=True),
            AppendEntries(terms[node], sender, node, 0, 0,
                          (Entry(terms[node], 1, CONFIG, b"\xc1garbage"),), 0),
        ):
            host, port = parse_addr(c.nodes[node].peer_addr)
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(hello + encode_frame(encode(msg)))
                sock.settimeout(10)
                while sock.recv(65536):  # pings until the node closes the connection
                    pass
    # The raw socket did pass the Hello as a member (peers are not authenticated yet, issue
    # 13), so it displaced that member's inbound link for a moment: an election may follow.
    for node in c.nodes:
        assert retry_call(c.nodes[node].client_addr, "SET", f"after-hostile-{node}", "v") == OK
    assert not c.crashed(), c.logs_tail()
    assert all(_term(c, i) < 2**62 for i in c.nodes)
    assert max(_term(c, i) for i in c.nodes) <= max(terms.values()) + 5


def test_entries_near_the_max_request_size_commit_and_replicate(tmp_path: Path) -> None:
    """--max-request-bytes 17.5 MB: the peer frame limit follows (2x + 1 MiB), so SETs of
    almost 17.5 MB commit through the leader and through a follower, and every node serves
    them; one byte more is refused with -ERR before it is proposed. (On a 16 MiB frame
    limit such an entry never reached a follower and commit stalled for good.)"""
    limit = 17_500_000
    # Election timeouts of 1-2 s: moving a 17 MB entry through a node's loop takes longer
    # than the default 150 ms on a loaded machine (the loop-lag issue, not this one), and
    # every election would start the big entry's replication over.
    args = ["--max-request-bytes", str(limit), "--election-ticks", "100",
            "--heartbeat-ticks", "10"]
    with LocalCluster(tmp_path, extra_args=args) as c:
        leader = c.wait_for_leader()
        follower = next(i for i in c.nodes if i != leader)
        values = {}
        for n, via in enumerate((leader, follower)):
            key = f"big-{n}"
            # As large as the limit admits (it counts the request as RESP: request_size).
            size = limit - request_size([b"SET", key.encode(), b""]) - 10
            values[key] = bytes([65 + n]) * size
            assert request_size([b"SET", key.encode(), values[key]]) <= limit
            # (A TRYAGAIN after an election is fair: retried.)
            reply = retry_call(c.nodes[via].client_addr, "SET", key, values[key])
            assert reply == OK, reply
        too_big = call(c.nodes[leader].client_addr, "SET", "x", b"y" * limit, timeout=30.0)
        assert isinstance(too_big, ErrorReply) and "max-request-bytes" in too_big.text
        assert call(c.nodes[leader].client_addr, "SET", "small", "1", timeout=10.0) == OK
        for node in c.nodes:
            for key, value in values.items():
                assert call(c.nodes[node].client_addr, "GET", key, timeout=30.0) == value
            assert call(c.nodes[node].client_addr, "GET", "small", timeout=10.0) == b"1"
        assert not c.crashed(), c.logs_tail()
