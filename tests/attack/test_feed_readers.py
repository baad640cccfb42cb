"""Readers of the whole change feed that do not read their replies (issue 12).

``XRANGE __raftkv:changes - +`` answers up to 16 MiB. Each such reply was encoded whole as
soon as the read finished, and weighed 16 bytes in the output buffer (a finished sliced
read was never weighed again): 300 connections asking and not reading took a leader to
5.3 GB of RSS and cost it its term (tests/bench/attack_xrange_readers.py). Now a large
range reply is encoded as the client reads it and weighed at what it will send, so the
output-buffer limits hold: past ``--client-buffer-total`` the largest are disconnected,
and the node's memory stays where it was.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(120)]

READERS = 40
VALUE = b"v" * 16384  # 1,000 of them: a 16 MB feed, one reply of nearly the 16 MiB cap


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_readers_that_do_not_read_are_bounded_by_the_buffer_limits(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, nodes=1, fsync="never",
                     extra_args=["--client-buffer-total", str(48 << 20)])
    c.start()
    socks: list[socket.socket] = []
    try:
        leader = c.wait_for_leader()
        host, port = c.client_addr(leader)
        r = redis.Redis(host=host, port=port, socket_timeout=30)
        pipe = r.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(b"k%04d" % i, VALUE)
        pipe.execute()
        pid = c.nodes[leader].proc.pid  # type: ignore[union-attr]
        before = _rss(pid)
        for _ in range(READERS):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((host, port))
            s.sendall(_resp(b"XRANGE", b"__raftkv:changes", b"-", b"+")
                      + _resp(b"XREVRANGE", b"__raftkv:changes", b"+", b"-"))
            socks.append(s)
        # The node reads them in turns; poll it (another process: no event to wait on).
        deadline = time.monotonic() + 60
        while int(r.info("stats")["client_buffer_total_disconnects"]) < READERS - 4:
            assert time.monotonic() < deadline, r.info("stats")
            time.sleep(0.1)
        grown = _rss(pid) - before
        # Before: 40 replies of 16 MiB encoded and held (640 MiB and more), none weighed.
        assert grown < 100 << 20, grown
        fresh = redis.Redis(host=host, port=port, socket_timeout=10)
        assert fresh.set(b"after", b"1") and fresh.get(b"after") == b"1"
        assert c.nodes[leader].alive
    finally:
        for s in socks:
            s.close()
        c.close()
