"""A SUBSCRIBE receives the message its own connection PUBLISHed before it (attack6:
pipelined batches and program order).

``PUBLISH ch m`` then ``SUBSCRIBE ch`` on one connection: in Redis the message goes out
before the subscription exists, so PUBLISH answers 0 and the subscriber never sees it.
Here PUBLISH goes through the log and SUBSCRIBE is a local command the client port runs
at once, unordered (``is_write`` gives None): the subscription was in place before the
PUBLISH was applied, and the connection got its own earlier message, 10 times out of 10
on the leader and on a follower (pipelined, RESP3). A ``GET`` after the SUBSCRIBE bounds
the wait: on any node it is answered once the PUBLISH is applied there, and the message
is queued in that apply; a ``PING`` sent after the GET's reply is queued behind the
message, so a message that is coming has arrived before the PING's reply.
"""

from __future__ import annotations

import socket

import hiredis
import pytest

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(60)]

ROUNDS = 5


def _enc(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _replies(addr: tuple[str, int], channel: str) -> list:
    """HELLO 3, PUBLISH, SUBSCRIBE, GET in one pipeline; every reply and push up to the
    GET's reply."""
    commands = [("HELLO", "3"), ("PUBLISH", channel, "before"), ("SUBSCRIBE", channel),
                ("GET", "after-subscribe")]
    with socket.create_connection(addr, timeout=15) as sock:
        sock.sendall(b"".join(_enc(*c) for c in commands))
        reader = hiredis.Reader()
        out: list = []

        def read_until(last: object) -> None:
            while last not in out:
                data = sock.recv(65536)
                assert data, f"connection closed after {out}"
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    out.append(reply)

        read_until(None)  # the GET's reply (a missing key)
        sock.sendall(_enc("PING", "sync"))
        read_until(b"sync")  # (RESP3: PING answers as usual when subscribed)
        return out


def test_a_subscription_gets_no_message_published_before_it(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    got = {}
    for name, node in (("leader", leader), ("follower", follower)):
        got[name] = 0
        for n in range(ROUNDS):
            replies = _replies(cluster.client_addr(node), f"order-{name}-{n}")
            got[name] += sum(1 for r in replies if isinstance(r, list) and r[:1] == [b"message"])
    assert got == {"leader": 0, "follower": 0}, (
        f"of {ROUNDS} pipelines PUBLISH ch; SUBSCRIBE ch, this many delivered the "
        f"connection's own earlier message to its later subscription: {got}")
