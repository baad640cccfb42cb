"""Peer authentication against real processes (issue 13): a 3-node cluster with a peer
secret; raw sockets without the secret (one speaking an old-style Hello, one that knows the
Hello format and sends a forged Proof) push a forged AppendEntries and RequestVote at a
high term at every node. No node changes term, log or data, and the cluster keeps serving."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster, free_ports
from raftkv.kv import encode_entry
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
    entry = Entry(FORGED_TERM, last + 1, NORMAL, encode_entry([b"SET", b"forged", b"x"]))
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


def _get(addr: str, key: str) -> object:
    try:
        return call(addr, "GET", key, timeout=10.0)
    except (OSError, ConnectionError):
        return None  # not listening yet


def test_a_joining_node_learns_the_cluster_id_and_a_foreign_node_is_refused(
    tmp_path: Path,
) -> None:
    """Node 4 starts empty with --join (and the secret): it learns the cluster id from a
    member's INFO raft, keeps it in its data directory and catches up. A node of another
    cluster (same secret, --cluster-id other, listing the members' peer addresses) is
    refused by every member: no term changes, nothing of it reaches a core."""
    with LocalCluster(tmp_path / "c", peer_secret=True) as c:
        leader = c.wait_for_leader()
        cluster_id = (c.info(leader, timeout=10) or {})["cluster_id"]
        assert call(c.nodes[leader].client_addr, "SET", "k", "v", timeout=10.0) == OK
        c.add_node(4, learner=True)
        deadline = time.monotonic() + 20
        while _get(c.nodes[4].client_addr, "k") != b"v":
            assert time.monotonic() < deadline, c.logs_tail()
            time.sleep(0.1)  # polling another process: no event to wait on
        assert (c.info(4, timeout=10) or {})["cluster_id"] == cluster_id
        meta = json.loads((c.nodes[4].data_dir / "meta.json").read_text())
        assert meta["cluster_id"] == cluster_id
        assert "learnt from the cluster" in c.nodes[4].log_path.read_text()
        # What the node reports elsewhere (a backup's header) is that id too.
        backup = subprocess.run(
            [sys.executable, "-m", "raftkv", "backup", "--endpoints", c.nodes[4].client_addr,
             str(tmp_path / "b.bak")], capture_output=True, text=True, timeout=60)
        assert f"backup of cluster {cluster_id!r}" in backup.stdout, backup

        terms = {i: (c.info(i, timeout=10) or {})["term"] for i in c.nodes}
        client, peer = free_ports(2)
        members = ",".join(f"{i}={n.peer_addr}" for i, n in c.nodes.items())
        log_path = tmp_path / "foreign.log"
        with open(log_path, "wb") as log:
            foreign = subprocess.Popen(
                [sys.executable, "-m", "raftkv", "serve", "--id", "9",
                 "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
                 "--cluster", f"{members},9=127.0.0.1:{peer}", "--cluster-id", "other",
                 "--data-dir", str(tmp_path / "foreign"), "--fsync", "never",
                 "--election-ticks", "2", "--heartbeat-ticks", "1",
                 "--peer-secret-file", str(c.secret_file), "-v"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            # Both sides say so (the foreign node logs once the Refused reaches it).
            while "cluster id 'other' is not" not in "".join(
                    n.log_path.read_text() for n in c.nodes.values()) or (
                    "peer refused handshake" not in log_path.read_text()):
                assert time.monotonic() < deadline, (c.logs_tail(), log_path.read_text())
                time.sleep(0.1)  # polling other processes' logs
            assert {i: (c.info(i, timeout=10) or {})["term"] for i in c.nodes} == terms
            assert call(c.nodes[leader].client_addr, "SET", "k2", "v", timeout=10.0) == OK
            assert not c.crashed(), c.logs_tail()
        finally:
            os.killpg(foreign.pid, signal.SIGKILL)
            foreign.wait(timeout=15)
