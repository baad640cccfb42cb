"""Stand-ins for tests and benchmarks, like ``trio.testing``: an in-process one-node
cluster, a client connection to it that has been answered, a node that is never run, and a
leader's level learner on stand-ins.

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
from types import SimpleNamespace
from typing import Any

import trio

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.features import FEATURE_LEVEL
from raftkv.node.features import LevelLearner
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients


def idle_node(level: int = FEATURE_LEVEL, **settings: Any) -> Node:
    """Node 1 of a one-node cluster, built and never run (no data directory, no sockets):
    what it checks and submits before its driver; ``settings`` override NodeSettings'."""
    return Node(NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                             cluster={1: "127.0.0.1:2"}, data_dir="unused", **settings),
                admin=Pending.of, level=level)


@asynccontextmanager
async def one_node_leader(data_dir: Path, peer_port: int, client_port: int,
                          **settings: Any) -> AsyncIterator[Node]:
    """Node 1 alone on 127.0.0.1, leading, its client port open; ``settings`` override
    NodeSettings' defaults (snapshots are off unless asked for). Stopped on exit."""
    async with one_node_port(data_dir, peer_port, client_port, **settings) as (node, _):
        yield node


@asynccontextmanager
async def one_node_port(data_dir: Path, peer_port: int, client_port: int, *,
                        max_clients: int | None = None,
                        **settings: Any) -> AsyncIterator[tuple[Node, ClientServer]]:
    """``one_node_leader``, and the ClientServer of its client port (``max_clients``:
    its connection cap, else the settings')."""
    peer_addr = f"127.0.0.1:{peer_port}"
    settings.setdefault("snapshot_entries", 0)
    node = Node(NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client_port}",
                             peer_addr=peer_addr, cluster={1: peer_addr},
                             data_dir=str(data_dir), **settings),
                admin=Pending.of)
    server = ClientServer(node, max_clients=max_clients)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, server))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
            # (and its own feature level recorded: no entry of its own comes later)
            while not node.kv.is_published(1) or node.kv.cluster_level != node.level:
                await node.next_tick()
        yield node, server
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def in_process_cluster(tmp: Path, levels: list[int], ports: list[int],
                             **settings: Any) -> AsyncIterator[list[Node]]:
    """``len(levels)`` nodes on 127.0.0.1 in this trio run (node ``i + 1`` at feature level
    ``levels[i]``), each with its client port; ``ports``: ``2 * len(levels)`` free ones,
    peers' first. fsync off and 5 ms ticks unless ``settings`` say otherwise."""
    n = len(levels)
    peers = {i + 1: f"127.0.0.1:{ports[i]}" for i in range(n)}
    settings = {"snapshot_entries": 0, "fsync": "never", "tick_ms": 5.0, **settings}
    nodes = [Node(NodeSettings(node_id=i, client_addr=f"127.0.0.1:{ports[n + i - 1]}",
                               peer_addr=peers[i], cluster=peers,
                               data_dir=str(tmp / str(i)), **settings),
                  admin=Pending.of, level=level)
             for i, level in zip(peers, levels, strict=True)]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(partial(node.run, partial(serve_clients, ClientServer(node))))
        yield nodes
        nursery.cancel_scope.cancel()


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    """What ``stream`` receives up to the end of a line: one simple reply (less if the
    other side closes first, b"" if at once)."""
    data = b""
    while not data.endswith(b"\r\n"):
        more = await stream.receive_some(4096)
        if not more:
            break
        data += more
    return data


async def connect_and_ping(client_port: int) -> trio.SocketStream:
    """A connection to 127.0.0.1's ``client_port`` that has been answered a PING: accepted
    and served, its reader waiting for the next command. AssertionError with what came
    back if not ``+PONG``."""
    stream = await trio.open_tcp_stream("127.0.0.1", client_port)
    await stream.send_all(b"PING\r\n")
    reply = await read_line(stream)
    if reply != b"+PONG\r\n":
        await stream.aclose()
        raise AssertionError(f"PING got {reply!r}")
    return stream


class LeaderLevels:
    """A leader's ``LevelLearner`` (node 1 at level 1, term 5) on stand-ins, without a
    node: ``members`` in its configuration (``config.members``) and applied
    (``applied``), a link per peer (``links``: each its own generation, connected), peers
    that answer RAFT FEATURES from ``levels`` (who each look asked: ``asked``), and
    proposals applied to ``kv`` at once (``proposed``)."""

    def __init__(self, levels: dict[int, object], members: tuple[int, ...] = (1, 2, 3)) -> None:
        self.levels = levels
        self.kv = KVStateMachine()
        self.kv.keep_members(list(members))
        self.applied = list(members)
        self.links = {peer: link(generation) for generation, peer
                      in enumerate((m for m in members if m != 1), start=1)}
        self.config = SimpleNamespace(members=[SimpleNamespace(id=m) for m in members])
        self.core = SimpleNamespace(role=Role.LEADER, term=5, cluster_config=self.config)
        self.asked: list[list[int]] = []
        self.proposed: list[list[bytes]] = []
        transport = SimpleNamespace(stats=lambda: self.links)
        self.learner = LevelLearner(1, 1, self.core, self.kv, transport,  # type: ignore
                                    None, self._submit,  # type: ignore[arg-type]
                                    lambda: list(self.applied))
        self.learner._ask = self._ask  # type: ignore[method-assign]

    async def steps(self, n: int) -> None:
        """``n`` of the leader's looks."""
        for _ in range(n):
            await self.learner.step()

    def _submit(self, args: list[bytes]) -> Pending:
        self.proposed.append(args)
        return Pending.of(self.kv.apply(encode_entry(args, 1)))

    async def _ask(self, peers: list[int]) -> dict[int, object]:
        self.asked.append(sorted(peers))
        return {p: self.levels[p] for p in peers}


def link(generation: int, reconnects: int = 0) -> SimpleNamespace:
    """A connected peer link's stats as ``PeerTransport.stats`` gives them."""
    return SimpleNamespace(generation=generation, reconnects=reconnects, connected=True)
