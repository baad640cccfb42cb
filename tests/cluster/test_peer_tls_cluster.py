"""Mutual TLS between real processes (issue 13), certificates made by the test: a peer with
a certificate from another CA (one that trusts the cluster's CA, so only the cluster's check
can stop it), and a plain-text peer, each pushing forged Raft messages at every node, get
nowhere; the cluster keeps its term, log and data and keeps serving. A node with a rogue
certificate that tries to --join never gets a byte of the log, while one with a good
certificate joins and catches up by snapshot over TLS (forwarded writes travel TLS too)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv import certs
from raftkv.kv import encode_entry
from raftkv.probe import call
from wire.addr import parse_addr
from wire.frames import encode_frame
from wire.hello import PROTOCOL_VERSION, Hello
from wire.raft import NORMAL, AppendEntries, Entry, RequestVote
from wire.record import encode
from wire.reply import OK

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

FORGED_TERM = 10_000


def _forged(cluster_id: str, node: int, sender: int, last: int) -> bytes:
    entry = Entry(FORGED_TERM, last + 1, NORMAL, encode_entry([b"SET", b"forged", b"x"]))
    return b"".join(encode_frame(encode(m)) for m in (
        Hello(PROTOCOL_VERSION, cluster_id, sender, "127.0.0.1:1", "x"),
        AppendEntries(FORGED_TERM, sender, node, last, 0, (entry,), last + 1),
        RequestVote(FORGED_TERM, sender, node, 2**40, FORGED_TERM, transfer=True),
    ))


def _rogue_tls(sock: socket.socket, rogue: Path, good: Path, forged: bytes) -> bytes:
    """A TLS client with the rogue CA's certificate, trusting the cluster's CA: the node
    must refuse the handshake; returns what it could read (nothing, or an error)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_cert_chain(rogue / "node.crt", rogue / "node.key")
    ctx.load_verify_locations(good / "ca.crt")
    try:
        with ctx.wrap_socket(sock) as tls:
            tls.sendall(forged)
            return tls.recv(65536)
    except (ssl.SSLError, OSError) as exc:
        return repr(exc).encode()


def _get(addr: str, key: str) -> object:
    try:
        return call(addr, "GET", key, timeout=10.0)
    except (OSError, ConnectionError):
        return None  # not listening yet


def test_rogue_ca_and_plain_text_peers_change_nothing(tmp_path: Path) -> None:
    good, rogue = tmp_path / "good", tmp_path / "rogue"
    certs.create(good)
    certs.create(rogue)
    with LocalCluster(tmp_path / "c", peer_tls=good,
                      extra_args=["--snapshot-entries", "40",
                                  # the leader on schedule: a new member installs
                                  "--snapshot-leader-defer", "1"]) as c:
        leader = c.wait_for_leader()
        assert call(c.nodes[leader].client_addr, "SET", "before", "1", timeout=10.0) == OK
        for n in range(60):  # past --snapshot-entries: a new member catches up by snapshot
            assert call(c.nodes[leader].client_addr, "SET", f"k{n}", n, timeout=10.0) == OK
        infos = {i: c.info(i, timeout=10) or {} for i in c.nodes}
        for node in c.nodes:
            sender = 3 if node == 2 else 2
            addr = parse_addr(c.nodes[node].peer_addr)
            forged = _forged(infos[node]["cluster_id"], node, sender,
                             int(infos[node]["last_log_index"]))
            with socket.create_connection(addr, timeout=10) as sock:
                got = _rogue_tls(sock, rogue, good, forged)
                # Refused: the node's TLS alert (decrypt_error: the rogue CA has our CA's
                # name, its signature does not verify) or just the close.
                assert (b"CERTIFICATE" in got.upper() or b"ALERT" in got.upper()
                        or got in (b"", b"EOF")), got
            with socket.create_connection(addr, timeout=10) as sock:
                sock.sendall(forged)
                sock.settimeout(10)
                with contextlib.suppress(ConnectionResetError):
                    while sock.recv(65536):  # at most a TLS alert, then the close
                        pass

        # A node with a rogue certificate (that trusts our CA) trying to join as node 4.
        # (The client port is not authenticated yet, so its ADDNODE may be accepted: it
        # then sits in the configuration as a learner that never gets a byte of the log.)
        c.node_args[4] = ["--peer-tls-cert", str(rogue / "node.crt"),
                          "--peer-tls-key", str(rogue / "node.key"),
                          "--peer-tls-ca", str(good / "ca.crt")]
        c.add_node(4, learner=True)
        deadline = time.monotonic() + 10
        while "peer TLS handshake failed" not in c.nodes[4].log_path.read_text():
            assert time.monotonic() < deadline, c.logs_tail()
            time.sleep(0.1)  # polling another process's log
        after = {i: c.info(i, timeout=10) or {} for i in (1, 2, 3)}
        for i in (1, 2, 3):
            assert after[i]["term"] == infos[leader]["term"], after
            assert call(c.nodes[i].client_addr, "GET", "forged", timeout=10.0) is None
            assert call(c.nodes[i].client_addr, "GET", "before", timeout=10.0) == b"1"
            assert call(c.nodes[i].client_addr, "SET", f"after-{i}", "v", timeout=10.0) == OK
        log = "".join(c.nodes[i].log_path.read_text() for i in (1, 2, 3))
        assert "peer TLS handshake failed" in log and "CERTIFICATE_VERIFY_FAILED" in log
        four = c.info(4, timeout=10) or {}
        assert four.get("last_applied") == "0" and four.get("commit_index") == "0", four

        # A node with a good certificate joins over TLS and gets the snapshot and the log.
        c.add_node(5, learner=True)
        deadline = time.monotonic() + 20
        while _get(c.nodes[5].client_addr, "k59") != b"59":
            assert time.monotonic() < deadline, c.logs_tail()
            time.sleep(0.1)  # polling another process
        assert "snapshot installed" in c.nodes[5].log_path.read_text()
        assert not c.crashed(), c.logs_tail()
