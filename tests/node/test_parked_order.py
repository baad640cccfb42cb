"""Commands parked while no leader is known run as soon as the core would take them, and
in arrival order: a write that comes after them waits behind them.

attack16 suspected (not reproduced) that a batch parked while a follower was a candidate
waited out its parking deadline when the same leader came back before the ready loop
looked: the driver unparked only on a leader, role or transfer change it had seen. And a
write arriving in that window went to the log ahead of the parked ones, so a connection's
pipelined ``SET k 1``, ``SET k 2`` could leave ``k`` at 1."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from raftkv.node.driver import CoreDriver
from raftkv.node.pending import Pending
from raftkv.raft import Role
from raftkv.testing import idle_node


def _nothing(*_: Any, **__: Any) -> None:
    return None


class Driven:
    """A driver over a stub core, and how often it unparked."""

    def __init__(self) -> None:
        self.core = SimpleNamespace(leader_id=2, term=3, role=Role.FOLLOWER, transferee=0)
        self.requests = SimpleNamespace(parked=[], leader_changed=_nothing)
        self.unparked = 0
        stub = SimpleNamespace()
        self.driver = CoreDriver(self.core, stub, stub, stub, stub, stub,  # type: ignore[arg-type]
                                 self.requests, stub, stub, stub, stub, {"leader_changes": 0},
                                 _nothing, self._unpark)

    def _unpark(self) -> None:
        self.unparked += 1
        self.requests.parked = []

    def look(self, **core: Any) -> int:
        """The driver's look after a pass of its loop, with the core as given: unparks."""
        vars(self.core).update(core)
        before = self.unparked
        self.driver._observe_leadership()
        return self.unparked - before


def test_parked_commands_run_when_the_same_leader_is_back_between_two_looks() -> None:
    d = Driven()
    assert d.look() == 0  # a follower of 2, nothing parked
    # It turned candidate, parked a command, and heard from 2 again, all between two looks.
    d.requests.parked = ["parked"]
    assert d.look() == 1


def test_parked_commands_run_when_a_transfer_ends_without_a_change() -> None:
    d = Driven()
    assert d.look(leader_id=1, role=Role.LEADER, transferee=3) == 0
    d.requests.parked = ["parked"]
    assert d.look() == 0  # still handing over: the core refuses proposals
    assert d.look(transferee=0) == 1


@pytest.mark.parametrize("core", [
    {"leader_id": 0, "role": Role.FOLLOWER},
    {"leader_id": 0, "role": Role.CANDIDATE},
    {"leader_id": 0, "role": Role.PRE_CANDIDATE},
    {"leader_id": 2, "role": Role.PRE_CANDIDATE},  # (the core would refuse its reads)
    {"leader_id": 1, "role": Role.LEADER, "transferee": 3},
], ids=["follower-no-leader", "candidate", "pre-candidate", "pre-candidate-leader",
        "transferring"])
def test_parked_commands_wait_while_the_core_would_refuse_them(core: dict[str, Any]) -> None:
    d = Driven()
    d.requests.parked = ["parked"]
    assert d.look(**core) == 0
    assert d.requests.parked == ["parked"]


class Forwards:
    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def forward(self, args: list[bytes], _pending: Pending, _deadline: float) -> None:
        self.sent.append(args)


async def test_a_write_after_parked_ones_reaches_the_log_behind_them() -> None:
    n = idle_node()
    core = SimpleNamespace(role=Role.FOLLOWER, leader_id=0)
    n.core = core  # type: ignore[assignment]
    n.forwarder = forwards = Forwards()  # type: ignore[assignment]
    wakes: list[int] = []
    n.driver = SimpleNamespace(wake=lambda: wakes.append(1))  # type: ignore[assignment]
    first, second = [b"SET", b"k", b"1"], [b"SET", b"k", b"2"]
    n._dispatch(first, True, Pending(), park_until=10.0, now=0.0)
    assert [w.args for w in n.requests.parked] == [first]
    core.leader_id = 2  # known again; the driver has not looked yet
    n._dispatch(second, True, Pending(), park_until=10.0, now=0.0)
    assert forwards.sent == []  # not ahead of the parked one
    assert wakes  # the driver looks, and unparks both
    n._unpark()
    assert forwards.sent == [first, second]
