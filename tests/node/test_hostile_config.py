"""Apply is total: a log full of hostile entries (CONFIG entries with garbage addresses,
undecodable CONFIG data, garbage NORMAL payloads) goes through the runtime's apply and the
transport's update_peers (tests/node/test_transport.py, with HOSTILE_ADDRS from here)
without a single raise, and the node keeps serving its good peers.

Issue 12: ``RAFT ADDNODE 9 a..b:7000 LEARNER`` used to commit, then kill every node on every
restart (UnicodeError in the dial loop); ``127.0.0.1:99999`` killed the leader (ValueError in
update_peers).
"""

from __future__ import annotations

import random

from raftkv.kv import encode_entry
from raftkv.node.forwarding import Forwarder, decode_reply
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import MemoryStorage, RaftConfig, RaftCore
from raftkv.raft.membership import decode_config, encode_config
from raftkv.server.admin import membership_command
from wire.raft import (
    CONFIG,
    NOOP,
    NORMAL,
    ClusterConfig,
    Entry,
    ForwardRequest,
    ForwardResponse,
    Member,
)
from wire.reply import ErrorReply

HOSTILE_ADDRS = [  # also in tests/node/test_transport.py
    "a..b:7000", "127.0.0.1:99999", "127.0.0.1:0", "", ":", "host", "[zz]:1", "a\x00b:1",
    "\u200b:7000", "x" * 300 + ":1", "::1:7000", "-:1", "999.999.999.999:1", "h:\u0667",
]


def hostile_entries() -> list[Entry]:
    rng = random.Random(12)
    entries: list[Entry] = []
    for addr in HOSTILE_ADDRS:
        config = ClusterConfig((Member(1, "127.0.0.1:1"), Member(9, addr, learner=True)))
        entries.append(Entry(1, 0, CONFIG, encode_config(config)))
    garbage = [b"", b"\x00", b"\xc1", b"\x93\x01\x02", b"\xff" * 64, encode_entry([b"GET"])]
    garbage += [rng.randbytes(rng.randrange(1, 200)) for _ in range(200)]
    entries += [Entry(1, 0, NORMAL, data) for data in garbage]
    entries += [Entry(1, 0, CONFIG, data) for data in garbage]  # undecodable configs
    entries += [Entry(1, 0, kind, b"junk") for kind in (NOOP, 3, 2**64 - 1)]
    entries.append(Entry(1, 0, NORMAL, encode_entry([b"SET", b"k", b"v"])))
    return [Entry(e.term, i, e.kind, e.data) for i, e in enumerate(entries, start=1)]


def test_runtime_apply_of_a_hostile_log_never_raises() -> None:
    node = Node(NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                             cluster={1: "127.0.0.1:2"}, data_dir="/nonexistent"),
                admin=Pending.of)
    entries = hostile_entries()
    node.applier.apply(entries)  # must not raise
    assert node.applied == len(entries)
    # The last decodable configuration is in force; the garbage ones were skipped.
    last_good = [e for e in entries if e.kind == CONFIG][len(HOSTILE_ADDRS) - 1]
    assert node.applier.applied_config == decode_config(last_good.data)
    assert node.kv.read([b"GET", b"k"]) == b"v"  # and it still applies good commands


class _Sent:
    """A transport stand-in that records what the node sends."""

    def __init__(self) -> None:
        self.messages: list[object] = []

    def send(self, msg: object) -> bool:
        self.messages.append(msg)
        return True

    def reply_bytes(self) -> int:  # (forwarded replies queued: none is held here)
        return 0


def test_hostile_forwarded_commands_and_replies_never_raise() -> None:
    """ForwardRequest/ForwardResponse come from peers: their contents are hostile too. A
    bare ``RAFT`` (IndexError in the membership parser) or a reply the RESP parser rejects
    (``:abc``) used to raise in the inbound loop, which stops the node."""
    settings = NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                            cluster={1: "127.0.0.1:2", 2: "127.0.0.1:3"}, data_dir="/x")
    n = Node(settings, admin=lambda args: membership_command(n, args, forwarded=True))
    n.core = RaftCore(1, MemoryStorage(ClusterConfig((Member(1, "127.0.0.1:2"),
                                                      Member(2, "127.0.0.1:3")))),
                      RaftConfig(), random.Random(1))
    n.transport = _Sent()  # type: ignore[assignment]
    n.forwarder = Forwarder(1, settings, n.core, n.transport, n.requests, n.stats)
    hostile_args: list[tuple[bytes, ...]] = [
        (), (b"",), (b"RAFT",), (b"raft", b"addnode"), (b"RAFT", b"ADDNODE", b"9", b"a..b:7"),
        (b"RAFT", b"REMOVENODE", b"99999999999999999999999"), (b"RAFT", b"\xff"),
        (b"SET",), (b"\x00" * 100,), (b"GET", b"k", b"extra"),
    ]
    for req_id, args in enumerate(hostile_args):
        n.on_forward_request(ForwardRequest(1, 2, 1, req_id, args))
    replies = [m for m in n.transport.messages if isinstance(m, ForwardResponse)]
    assert len(replies) == len(hostile_args)
    assert all(decode_reply(r.reply).text.split()[0] in ("ERR", "TRYAGAIN") for r in replies)
    for req_id, data in enumerate([b":abc\r\n", b"$-5\r\n", b"\xff", b"", b"*9\r\n"]):
        pending = Pending()
        n.requests.track_forward(req_id, pending, 1e9, 2)
        n.forwarder.on_response(ForwardResponse(1, 2, 1, req_id, data))
        assert isinstance(pending.value, ErrorReply), (data, pending.value)
