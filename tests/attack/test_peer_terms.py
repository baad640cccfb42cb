"""Forged terms from the peer port (the attacker's test_peer_cluster.py, issue 12 item 7).

One forged heartbeat at MAX_TERM (2**62 - 1, the largest the receipt check accepted) made
every node adopt a term from which no election can start (term + 1 does not encode): no
leader, ever, and the term persisted. Two protections, tested here on real processes:

- with ``--peer-secret-file`` (required beyond loopback, see README Security) a forged
  Hello never gets a message to the core at all;
- on loopback without peer authentication (the only configuration that allows it
  without ``--insecure``), a term more than MAX_TERM_AHEAD above the receiver's is
  malformed (raftkv.raft.validation.check_term_ahead), and one within the margin still
  leaves room for 2**62 - 2**32 elections.

Each test ends by killing the leader and waiting for a new one: the cluster still elects.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster, retry_call
from raftkv.raft.validation import MAX_TERM_AHEAD, check_term_ahead, checker
from wire.addr import parse_addr
from wire.errors import ProtocolError
from wire.frames import encode_frame
from wire.hello import PROTOCOL_VERSION, Hello
from wire.raft import MAX_TERM, AppendEntries, RequestVote, RequestVoteResponse
from wire.record import encode
from wire.reply import OK


def test_a_term_more_than_the_margin_ahead_is_malformed() -> None:
    check_term_ahead(AppendEntries(5 + MAX_TERM_AHEAD, 1, 2, 0, 0, (), 0), 5)
    for msg in (AppendEntries(6 + MAX_TERM_AHEAD, 1, 2, 0, 0, (), 0),
                RequestVote(MAX_TERM, 1, 2, 0, 0),
                RequestVoteResponse(MAX_TERM, 1, 2, True)):
        with pytest.raises(ProtocolError, match="above this node's term 5"):
            check_term_ahead(msg, 5)


def test_the_transport_check_reads_the_current_term_at_each_message() -> None:
    term = [0]
    check = checker(lambda: term[0])
    msg = AppendEntries(MAX_TERM_AHEAD + 10, 1, 2, 0, 0, (), 0)
    with pytest.raises(ProtocolError):
        check(msg)
    term[0] = 10
    check(msg)
    with pytest.raises(ProtocolError, match="out of range"):  # the receipt check still runs
        checker(lambda: MAX_TERM)(AppendEntries(MAX_TERM + 1, 1, 2, 0, 0, (), 0))


def forge_heartbeats(c: LocalCluster, leader: int, term: int) -> None:
    """A raw connection to each follower's peer port, claiming to be ``leader``, sending
    one heartbeat at ``term`` (no secret: a secured node refuses the Hello)."""
    for node in c.nodes:
        if node == leader:
            continue
        cluster_id = (c.info(node, timeout=2.0) or {})["cluster_id"]
        hello = encode_frame(encode(Hello(PROTOCOL_VERSION, cluster_id, leader,
                                          "127.0.0.1:1", "x")))
        forged = AppendEntries(term, leader, node, 0, 0, (), 0)
        host, port = parse_addr(c.nodes[node].peer_addr)
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(hello + encode_frame(encode(forged)))
            sock.settimeout(2)
            with contextlib.suppress(TimeoutError, OSError):
                while sock.recv(65536):  # until the node closes it (or 2 s of silence)
                    pass


def terms(c: LocalCluster) -> dict[int, int]:
    return {i: int((c.info(i, timeout=2.0) or {}).get("term", -1)) for i in c.nodes}


def still_elects(c: LocalCluster) -> None:
    """Every node takes a write, and after the leader is killed the others elect."""
    for node in c.nodes:
        assert retry_call(c.nodes[node].client_addr, "SET", f"after-{node}", "v",
                          timeout=30.0) == OK
    leader = c.wait_for_leader()
    c.kill(leader)
    new = c.wait_for_leader(timeout=30.0, among=[i for i in c.nodes if i != leader])
    assert retry_call(c.nodes[new].client_addr, "SET", "after-election", "v",
                      timeout=30.0) == OK
    c.start(leader)
    assert not c.crashed(), c.logs_tail()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path) as c:
        c.wait_for_leader()
        yield c


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, peer_secret=True) as c:
        c.wait_for_leader()
        yield c


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_heartbeat_at_max_term_without_peer_auth_is_refused(cluster: LocalCluster) -> None:
    c = cluster
    forge_heartbeats(c, c.wait_for_leader(), MAX_TERM)
    assert max(terms(c).values()) < MAX_TERM_AHEAD, terms(c)
    still_elects(c)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_heartbeat_within_the_margin_leaves_elections_working(cluster: LocalCluster) -> None:
    """The margin is what an unauthenticated loopback cluster accepts: the nodes adopt it
    (that is the documented limit), and still elect above it."""
    c = cluster
    leader = c.wait_for_leader()
    forged = max(terms(c).values()) + MAX_TERM_AHEAD
    forge_heartbeats(c, leader, forged)
    still_elects(c)
    assert min(t for t in terms(c).values() if t >= 0) >= forged, terms(c)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_with_a_peer_secret_a_forged_heartbeat_never_reaches_the_core(
        secured: LocalCluster) -> None:
    c = secured
    before = max(terms(c).values())
    forge_heartbeats(c, c.wait_for_leader(), before + 1000)
    assert max(terms(c).values()) < before + 1000, terms(c)
    still_elects(c)
