"""Attacker round 14: the original RaftKV's ``set key=value`` inside ``RAFT ONCE``.

The client port takes ``set k=v`` (README: "The original RaftKV's ``set key=value`` works
too"), and the trio client tags every write with its session, so ``kv.execute("set",
"k=v")`` went out as ``RAFT ONCE id seq set k=v``, which answered ``ERR wrong number of
arguments for 'set' command``: the legacy form worked only without a session (the CLI
rewrites it itself; the library does not).
"""

from __future__ import annotations

from pathlib import Path

import trio

import client
from chaos.cluster import free_ports
from raftkv.testing import one_node_leader


async def test_the_legacy_set_form_works_through_a_session(tmp_path: Path) -> None:
    peer, port = free_ports(2)
    async with one_node_leader(tmp_path / "data", peer, port, fsync="never"):
        with trio.fail_after(20):
            async with client.connect([f"127.0.0.1:{port}"]) as kv:  # sessions: the default
                await kv.execute("set", "k=v")  # raised ERR wrong number of arguments
                assert await kv.get("k") == b"v"
