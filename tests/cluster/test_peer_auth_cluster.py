"""Peer authentication against real processes (issue 13): a 3-node cluster with a peer
secret; raw sockets without the secret (one speaking an old-style Hello, one that knows the
Hello format and sends a forged Proof) push a forged AppendEntries and RequestVote at a
high term at every node. No node changes term, log or data, and the cluster keeps serving."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from chaos.cluster import LocalCluster
from raftkv.kv import encode_command
from raftkv.probe import call
from wire.addr import parse_addr
from wire.frames import FrameDecoder, encode_frame
from wire.hello import PROTOCOL_VERSION, Hello, Proof, Refused
from wire.raft import NORMAL, AppendEntries, Entry, RequestVote
from wire.record import decode, encode
from wire.reply import OK

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

FORGED_TERM = 10_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("peer-auth"), peer_secret=True) as c:
        c.wait_for_leader()
        yield c


def _forgeries(c: LocalCluster, node: int, sender: int) -> bytes:
    info = c.info(node, timeout=10) or {}
    last = int(info["last_log_index"])
    entry = Entry(FORGED_TERM, last + 1, NORMAL, encode_command([b"SET", b"forged", b"x"]))
    return b"".join(encode_frame(encode(m)) for m in (
        AppendEntries(FORGED_TERM, sender, node, last, 0, (entry,), last + 1),
        AppendEntries(FORGED_TERM, sender, node, 0, 0, (), 2**40),
        RequestVote(FORGED_TERM, sender, node, 2**40, FORGED_TERM, transfer=True),
    ))


def _attack(c: LocalCluster, node: int, style: str) -> list[object]:
    """Connect to ``node``'s peer port as another member and send the forgeries; returns
    every frame the node sent back before it closed the connection."""
    sender = 3 if node == 2 else 2
    cluster_id = (c.info(node, timeout=10) or {})["cluster_id"]
    hello = Hello(PROTOCOL_VERSION, cluster_id, sender, "127.0.0.1:1", "x",
                  b"" if style == "no-nonce" else os.urandom(32))
    payload = encode_frame(encode(hello))
    if style == "forged-proof":
        payload += encode_frame(encode(Proof(os.urandom(32))))
    payload += _forgeries(c, node, sender)
    host, port = parse_addr(c.nodes[node].peer_addr)
    decoder = FrameDecoder(1 << 20)
    got: list[object] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(payload)
        sock.settimeout(10)
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            got += [decode(f) for f in decoder.feed(data)]
    return got


def test_peers_without_the_secret_change_nothing(cluster: LocalCluster) -> None:
    c = cluster
    leader = c.wait_for_leader()
    assert call(c.nodes[leader].client_addr, "SET", "before", "1", timeout=10.0) == OK
    before = {i: c.info(i, timeout=10) or {} for i in c.nodes}
    for node in c.nodes:
        refused = _attack(c, node, "no-nonce")
        assert len(refused) == 1 and isinstance(refused[0], Refused), refused
        answered = _attack(c, node, "forged-proof")
        # The node's own Hello and Proof, then the close: never an Ack or a response.
        assert [type(m) for m in answered] == [Hello, Proof], answered
    after = {i: c.info(i, timeout=10) or {} for i in c.nodes}
    for i in c.nodes:
        assert int(after[i]["term"]) < FORGED_TERM, (i, after[i])
        assert int(after[i]["commit_index"]) < 2**40
        assert call(c.nodes[i].client_addr, "GET", "forged", timeout=10.0) is None
        assert call(c.nodes[i].client_addr, "GET", "before", timeout=10.0) == b"1"
    # No election was caused: the authenticated links were never displaced.
    assert {after[i]["term"] for i in c.nodes} == {before[leader]["term"]}
    for i in c.nodes:
        assert call(c.nodes[i].client_addr, "SET", f"after-{i}", "v", timeout=10.0) == OK
    assert not c.crashed(), c.logs_tail()
    log = "".join(n.log_path.read_text() for n in c.nodes.values())
    assert "peer failed authentication" in log and "wrong proof" in log
