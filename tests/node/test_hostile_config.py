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

from raftkv.kv import encode_command
from raftkv.node.node import Node
from raftkv.node.settings import NodeSettings
from raftkv.raft.membership import decode_config, encode_config
from wire.raft import CONFIG, NOOP, NORMAL, ClusterConfig, Entry, Member

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
    garbage = [b"", b"\x00", b"\xc1", b"\x93\x01\x02", b"\xff" * 64, encode_command([b"GET"])]
    garbage += [rng.randbytes(rng.randrange(1, 200)) for _ in range(200)]
    entries += [Entry(1, 0, NORMAL, data) for data in garbage]
    entries += [Entry(1, 0, CONFIG, data) for data in garbage]  # undecodable configs
    entries += [Entry(1, 0, kind, b"junk") for kind in (NOOP, 3, 2**64 - 1)]
    entries.append(Entry(1, 0, NORMAL, encode_command([b"SET", b"k", b"v"])))
    return [Entry(e.term, i, e.kind, e.data) for i, e in enumerate(entries, start=1)]


def test_runtime_apply_of_a_hostile_log_never_raises() -> None:
    node = Node(NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                             cluster={1: "127.0.0.1:2"}, data_dir="/nonexistent"))
    entries = hostile_entries()
    node._apply(entries)  # must not raise
    assert node.applied == len(entries)
    # The last decodable configuration is in force; the garbage ones were skipped.
    last_good = [e for e in entries if e.kind == CONFIG][len(HOSTILE_ADDRS) - 1]
    assert node._applied_config == decode_config(last_good.data)
    assert node.kv.read([b"GET", b"k"]) == b"v"  # and it still applies good commands
