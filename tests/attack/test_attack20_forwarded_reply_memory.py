"""attack20: the leader holds forwarded replies without any bound but the forwarding window.

A follower forwards a client's write to the leader, which runs it and sends the reply back
in a ``ForwardResponse``. The follower's window bounds forwards in flight to 128 commands
and 32 MiB of their *arguments*; nothing bounds their *replies*, which the leader encodes
(up to the 15 MiB forwarded-reply limit each) and queues on the peer link (1,024 messages,
no byte bound). A write can return a large value: ``EVAL "return
redis.call('GET',KEYS[1])" 1 big`` (scripts are on by default) is a 70-byte write whose
reply is the whole value. None of it is weighed in ``--client-output-buffer-limit`` or
``--client-buffer-total`` on the leader, as the same replies to its own clients are.

Live (3 nodes, an 8 MiB value, 4 connections to each follower pipelining 128 such EVALs,
never reading): the leader's RSS went 157 -> 2,069 MB, and the term changed (an event-loop
stall of 151 ms), twice in two runs; with 4 connections to one follower, 84 -> 1,132 MB.
Here, more gently: a 4 MiB value, 4 connections to one follower, and the follower paused
(SIGSTOP) once its window is full, so the leader cannot hand the replies over: its RSS
grows by the window's replies, 128 x 4 MiB (measured: +524 MB), although every client
buffer on the cluster is bounded by ``--client-buffer-total 64 MiB``.

Right: what the leader holds for followers' clients is bounded like what it holds for its
own (weighed into ``--client-buffer-total``, or a byte bound per link whose excess is
answered with an error saying the command was applied), so a few small pipelined writes
through a follower cannot cost the leader gigabytes and its term.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call, parse_info
from wire.reply import OK

pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20
TOTAL = 64 * MIB  # --client-buffer-total on every node
VALUE = 4 * MIB - 100
CONNECTIONS, PIPELINE = 4, 128
EVAL = (b"*4\r\n$4\r\nEVAL\r\n$32\r\nreturn redis.call('GET',KEYS[1])\r\n"
        b"$1\r\n1\r\n$3\r\nbig\r\n")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, fsync="never",
                      extra_args=["--client-buffer-total", str(TOTAL)]) as c:
        c.wait_for_leader()
        yield c


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _stat(cluster: LocalCluster, node: int, name: str) -> int:
    """One field of the node's ``INFO`` (every section)."""
    host, port = cluster.client_addr(node)
    return int(parse_info(call(f"{host}:{port}", "INFO", "all", timeout=2.0))[name])


def _until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():  # polling other processes: there is no event to wait on
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_forwarded_replies_held_by_the_leader_are_bounded(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    pid = cluster.nodes[leader].proc.pid  # type: ignore[union-attr]
    host, port = cluster.client_addr(leader)
    assert call(f"{host}:{port}", "SET", "big", b"x" * VALUE, timeout=10) == OK
    before = _rss(pid)
    applied = _stat(cluster, leader, "last_applied")

    socks = []
    try:
        for _ in range(CONNECTIONS):  # clients of the follower that never read
            s = socket.create_connection(cluster.client_addr(follower))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(EVAL * PIPELINE)
            socks.append(s)
        # The follower's window is full (128 forwards sent): pause it, so the leader keeps
        # what it owes it; then wait until the leader has run them.
        _until(lambda: _stat(cluster, follower, "raft_forwarded") >= PIPELINE)
        cluster.pause(follower)
        try:
            _until(lambda: _stat(cluster, leader, "last_applied") >= applied + PIPELINE)
            grown = _rss(pid) - before
        finally:
            cluster.resume(follower)
    finally:
        for s in socks:
            s.close()

    assert grown < 4 * TOTAL, (
        f"the leader grew {grown // MIB} MiB holding forwarded replies "
        f"(--client-buffer-total {TOTAL // MIB} MiB)")
