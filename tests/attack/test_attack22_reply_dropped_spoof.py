"""A forwarded command whose reply is an error with ``REPLY_DROPPED``'s text closes the
follower's client connection: the follower recognises the leader's "reply dropped" by its
text, and a script can return any text (attack22).

``Forwarder.on_response`` turns every forwarded reply *equal* to ``REPLY_DROPPED`` (an
``ErrorReply``: equal texts are equal) into the one instance the client port disconnects
on (``Slot.weigh`` / ``send_direct`` compare identity). A script's own error reply
(``redis.error_reply(...)``, ``{err=...}``) with that text is such a reply. Live (3 nodes)::

    $ redis-cli -p <follower> EVAL "redis.call('INCR','n'); return redis.error_reply(ARGV[1])" 0 \\
        "ERR the command was applied, but its reply was dropped: ..."
    Error: Server closed the connection                      # on either follower
    $ redis-cli -p <leader> EVAL ...                         # the same on the leader
    (error) ERR the command was applied, but its reply was dropped: ...

The script ran each time; through a follower the client never gets its reply, and every
command pipelined behind it on that connection is lost too (the PING below), while the
leader answers the same script with its error. One command, two behaviours by the node
the client happens to be on.

Right: the leader's "dropped" is told apart from a reply out of band (a flag of the
``ForwardResponse``, or a reply type no command can return), so a follower returns a
script's error as the leader does (Redis returns whatever the script returned).
"""

from __future__ import annotations

import socket

import pytest

from chaos.cluster import LocalCluster
from raftkv.node.forwarding import REPLY_DROPPED
from wire.resp import encode_command

pytestmark = pytest.mark.timeout(120)

SCRIPT = "redis.call('INCR', KEYS[1]); return redis.error_reply(ARGV[1])"


def _exchange(addr: tuple[str, int], data: bytes, expect: bytes) -> bytes:
    """Send ``data`` and read until ``expect``'s length arrived or the node closes."""
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(expect):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_a_scripts_error_reply_reaches_a_followers_client(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    text = REPLY_DROPPED.text
    request = (encode_command("EVAL", SCRIPT, "1", "n", text)
               + encode_command("PING", "after"))
    expect = b"-" + text.encode() + b"\r\n" + b"$5\r\nafter\r\n"

    # The leader answers the script's error, then the PING.
    assert _exchange(cluster.client_addr(leader), request, expect) == expect
    # A follower must answer the same.
    got = _exchange(cluster.client_addr(follower), request, expect)
    assert got == expect, f"through follower {follower}, got {got!r} (connection closed)"
