"""An in-process one-node cluster for tests and benchmarks, like ``trio.testing``.

A test that needs a real leader (its driver, applier and client port on real sockets) but
not separate processes runs it here: ``Node.run`` with the client port served, the node
elected and its own ``publish_member`` entry applied, so the first proposal a test counts
is its own. It sits with the programs because it composes the runtime the way
``raftkv.serve`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients


@asynccontextmanager
async def one_node_leader(data_dir: Path, peer_port: int, client_port: int,
                          **settings: Any) -> AsyncIterator[Node]:
    """Node 1 alone on 127.0.0.1, leading, its client port open; ``settings`` override
    NodeSettings' defaults (snapshots are off unless asked for). Stopped on exit."""
    peer_addr = f"127.0.0.1:{peer_port}"
    settings.setdefault("snapshot_entries", 0)
    node = Node(NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client_port}",
                             peer_addr=peer_addr, cluster={1: peer_addr},
                             data_dir=str(data_dir), **settings),
                admin=Pending.of)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, ClientServer(node)))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
            # (and its own feature level recorded: no entry of its own comes later)
            while not node.kv.is_published(1) or node.kv.cluster_level != node.level:
                await node.next_tick()
        yield node
        nursery.cancel_scope.cancel()
