"""attack18: a connection's writes through a follower reach a new leader out of order.

A follower F forwards a client's ``SET k 1`` to the leader L. L is handing leadership to
node 2 (``RAFT TRANSFER``, or a shutdown's hand-over), so it parks the forwarded write
(``_run_forwarded`` -> ``_dispatch`` -> ``NotLeader`` -> park, until its sweep, up to 50 ms
later). Node 2 takes over; F hears from it first and forwards the same connection's next
write, ``SET k 2``, straight to node 2. Then L hears from node 2, unparks, and forwards its
parked ``SET k 1`` to node 2 as well ("the leader ... never forwarding it again",
forwarding.py): node 2 proposes ``SET k 2`` before ``SET k 1``, both answered ``+OK``, and
``k`` ends at 1 although the client wrote 1 then 2 (the reordering ``park`` fixed for one
node, across two). Either fix passes: L answers a forwarded write it cannot run with a
definite ``TRYAGAIN`` instead of sending it on, or F holds a write for a new leader until
its forwards to the old one are answered.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.node.forwarding import Forwarder
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.raft.errors import NotLeader
from wire.raft import ForwardRequest

K1, K2 = [b"SET", b"k", b"1"], [b"SET", b"k", b"2"]


class Net:
    """Every ForwardRequest sent, in the order sent."""

    def __init__(self) -> None:
        self.sent: list[ForwardRequest] = []

    def transport(self) -> Any:
        def send(msg: Any) -> bool:
            if isinstance(msg, ForwardRequest):
                self.sent.append(msg)
            return True
        return SimpleNamespace(send=send, reply_bytes=lambda: 0)

    def arrived_at(self, node: int) -> list[list[bytes]]:
        return [list(m.args) for m in self.sent if m.dst == node]


def _node(node_id: int, core: Any, net: Net) -> Node:
    s = NodeSettings(node_id=node_id, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                     cluster={1: "127.0.0.1:2", 2: "127.0.0.1:3", 3: "127.0.0.1:4"},
                     data_dir="unused")
    n = Node(s, admin=Pending.of)
    n.core = core
    n.forwarder = Forwarder(node_id, s, core, net.transport(), n.requests, n.stats)
    n.driver = SimpleNamespace(wake=lambda: None, proposed=lambda: None)  # type: ignore[assignment]
    return n


def _refuse(_data: bytes) -> Any:
    raise NotLeader(0, "leadership transfer in progress")


async def test_writes_forwarded_across_a_transfer_keep_the_connection_order() -> None:
    net = Net()
    f_core = SimpleNamespace(role=Role.FOLLOWER, leader_id=1, term=3, id=3)
    l_core = SimpleNamespace(role=Role.LEADER, leader_id=1, term=3, transferee=2,
                             propose=_refuse, cluster_config=SimpleNamespace(members=[]))
    follower, leader = _node(3, f_core, net), _node(1, l_core, net)

    # The client's first write, through the follower, to the leader (handing over).
    follower._dispatch(K1, True, Pending(), park_until=10.0, now=0.0)
    (to_leader,) = net.sent
    leader.on_forward_request(to_leader)

    # Node 2 took over; the follower hears from it first, and the next write comes.
    f_core.leader_id = 2
    follower._dispatch(K2, True, Pending(), park_until=10.0, now=0.0)

    # Then the old leader hears from node 2: it follows it, and its driver unparks.
    l_core.role, l_core.leader_id, l_core.transferee = Role.FOLLOWER, 2, 0
    leader._unpark()

    at_new_leader = net.arrived_at(2)
    if K1 in at_new_leader and K2 in at_new_leader:
        assert at_new_leader.index(K1) < at_new_leader.index(K2), at_new_leader
