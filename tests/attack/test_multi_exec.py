"""Attacks on MULTI/EXEC's memory (attack2 branch, round 2). Each test fails today.

1. What a connection queues inside MULTI is bounded by ``--max-request-bytes`` and
   MAX_TRANSACTION_COMMANDS, except the commands the port answers itself at EXEC (PING,
   ECHO): their arguments are kept in the queue uncounted. Live, one connection queued 200
   ``ECHO <4 MB>`` and the node held +730 MB, and nothing stops it at 2,000.
2. A follower forwards EXEC to the leader, which encodes the whole reply before checking
   it against the frame limit. ``MULTI``, 100 x ``GETEX v8`` (an 8 MB value), ``EXEC``
   sent to a follower (a 3 KB request) took the leader to 1.4 GB RSS and a 5 s stall (it
   lost its term); 100,000 of them fit in one request and ask for 800 GB.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

from raftkv.server.transaction import Transaction, enqueue, multi

MAX_REQUEST = 1024 * 1024


def test_echo_inside_multi_counts_towards_the_transaction_size() -> None:
    """Queuing ``ECHO <arg>`` (or ``PING <arg>``) keeps ``arg`` until EXEC without
    counting it: 64 x 64 KiB (4 MiB) queue fine under a 1 MiB max request, and so would
    any number. Some queued command past the limit must be refused (``TOO_BIG``)."""
    node = SimpleNamespace(settings=SimpleNamespace(max_request_bytes=MAX_REQUEST))
    tx = Transaction()
    multi(tx)
    arg = b"e" * (64 * 1024)
    replies = [enqueue(node, tx, [b"ECHO", arg], True).value for _ in range(64)]
    refused = [r for r in replies if getattr(r, "text", "").startswith("ERR")]
    assert refused or tx.dirty, (
        f"64 ECHO of 64 KiB ({64 * len(arg)} bytes) all queued under a "
        f"{MAX_REQUEST}-byte max request: the MULTI queue has no bound")


FORWARD_CHILD = """
    import resource
    from types import SimpleNamespace
    from raftkv.node.forwarding import Forwarder
    from raftkv.node.requests import RequestTracker
    from raftkv.node.settings import NodeSettings
    from wire.raft import ForwardRequest, ForwardResponse

    sent = []
    settings = NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                            cluster={1: "127.0.0.1:2"}, data_dir="/nonexistent",
                            max_request_bytes=1024 * 1024)
    forwarder = Forwarder(1, settings, SimpleNamespace(term=1),
                          SimpleNamespace(send=sent.append), RequestTracker({}), {})
    msg = ForwardRequest(term=1, src=2, dst=1, req_id=7, args=(b"EXEC", b"..."))
    reply = forwarder._replier(msg)
    # EXEC's reply: 3,000 references to one 1 MiB value (the state machine holds one
    # copy); encoded, 3 GB. The process may use 1.5 GB.
    value = b"v" * (1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024 * 1024, resource.RLIM_INFINITY))
    reply([value] * 3000)
    assert len(sent) == 1 and isinstance(sent[0], ForwardResponse), sent
    assert sent[0].reply.startswith(b"-ERR"), sent[0].reply[:80]
    print("bounded")
"""

def test_forwarded_reply_is_not_encoded_whole_before_its_size_is_checked() -> None:
    """The leader's forward replier (``Forwarder._replier``) ran ``encode_reply(value)``
    and only then compared the length with the frame limit: an EXEC (or any reply) far
    larger than a frame cost its whole encoding in memory on the leader. Here, in a child
    limited to 1.5 GB of address space, a 3 GB reply must answer the too-large error."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORWARD_CHILD)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0 and "bounded" in done.stdout, done.stderr[-2000:]
