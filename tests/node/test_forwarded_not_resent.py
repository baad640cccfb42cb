"""A write forwarded to this node runs here as leader (at once, or parked in order until a
transfer ends) or is refused for good: never forwarded again. The follower that sent it
may already have sent the same connection's next write to a newer leader (attack18), so
a second hop could overtake it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.node.requests import NOT_LEADER_NOW
from raftkv.raft import Role
from raftkv.raft.errors import NotLeader
from raftkv.testing import idle_node

WRITE = [b"SET", b"k", b"1"]


def _refuse(_data: bytes) -> Any:
    raise NotLeader(0, "leadership transfer in progress")


def _stand_in(core: Any) -> tuple[Any, list[list[bytes]]]:
    n = idle_node()
    n.core = core
    sent: list[list[bytes]] = []
    n.forwarder = SimpleNamespace(forward=lambda args, *_: sent.append(args))
    n.driver = SimpleNamespace(wake=lambda: None, proposed=lambda: None)
    return n, sent


async def test_a_node_that_stepped_down_refuses_a_forwarded_write_instead_of_sending_it_on(
) -> None:
    n, sent = _stand_in(SimpleNamespace(role=Role.FOLLOWER, leader_id=2))
    reply = n._run_forwarded(WRITE)
    assert reply.done and reply.value == NOT_LEADER_NOW
    assert sent == [] and not n.requests.parked


async def test_a_leader_handing_over_parks_a_forwarded_write_and_refuses_it_once_gone(
) -> None:
    core = SimpleNamespace(role=Role.LEADER, leader_id=1, transferee=2, propose=_refuse,
                           cluster_config=SimpleNamespace(members=[]))
    n, sent = _stand_in(core)
    reply = n._run_forwarded(WRITE)
    assert not reply.done and [w.forwarded for w in n.requests.parked] == [True]
    core.role, core.leader_id, core.transferee = Role.FOLLOWER, 2, 0  # handed over
    n._unpark()
    assert reply.done and reply.value == NOT_LEADER_NOW
    assert sent == [] and not n.requests.parked  # never sent on to the new leader
