"""The ops port answers while the node is still opening its storage (it starts first):
/readyz says "starting" and /livez waits for a tick up to its limit, never an exception
(which would end the HTTP port's nursery, and the process with it)."""

from __future__ import annotations

from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.server.health import liveness, readiness


def unopened() -> Node:
    return Node(NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                             cluster={1: "127.0.0.1:2"}, data_dir="/nonexistent"),
                admin=Pending.of)


def test_readyz_before_the_storage_is_open() -> None:
    assert readiness(unopened()) == (False, "starting")


async def test_livez_before_the_ticker_runs_waits_and_says_so() -> None:
    ok, why = await liveness(unopened(), limit=0.01)
    assert not ok and "did not tick" in why
