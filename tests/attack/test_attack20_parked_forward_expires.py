"""attack20: a forwarded write parked behind a transfer expires, the next one is proposed.

Round 19's fix parks a follower's forwarded writes at a leader that is handing over, in
order, "proposes them if it still leads, and refuses them only if it hands over". But each
parked write keeps its own deadline, ``leader_wait`` (2 s) after it arrived, and the sweep
answers the oldest ``-TRYAGAIN no leader known`` when it passes, while the transfer still
runs: a transfer lasts one election timeout (``--election-ticks`` x ``--tick-ms``; up to
50 s is accepted, etcd's default is 1 s, and a starved leader's ticks come late). With
``--election-ticks 300`` (3 s): the follower's ``W1`` arrives at t=0, ``W2`` at t=0.5; at
t=2 the sweep refuses ``W1``; at t=3 the transfer times out without a leader change, the
leader leads on and proposes ``W2``. The log holds ``[W2]``, not a prefix of ``[W1, W2]``:
round 19's symptom (the client's session retry of the pipeline then applies ``W1`` after
``W2``: ``SET k 1; SET k 2`` ends at 1, both ``OK``). A local client's pipelined writes
parked at the leader expire the same way.

Live (3 nodes, ``--election-ticks 300``, the transfer's target SIGSTOPped, ``RAFT
TRANSFER`` to it): one raw connection to a follower sends ``APPEND k a,``, then 1.5 s later
``APPEND k b,`` without reading: 2.04 s ``-TRYAGAIN no leader known; the command was not
applied``, 3.10 s ``:2``; ``k`` is ``b,``.

Right: what the leader proposes of one follower's forwarded writes is a prefix of them in
the order sent. Refusing a parked write refuses every write parked behind it (from that
follower, or all of them), or parked writes wait as long as the transfer can last.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.node.forwarding import Forwarder
from raftkv.raft import Role
from raftkv.raft.errors import NotLeader
from raftkv.testing import idle_node
from wire.raft import ForwardRequest

W1, W2 = [b"APPEND", b"k", b"a"], [b"APPEND", b"k", b"b"]


class Core(SimpleNamespace):
    def propose(self, data: bytes) -> tuple[int, int]:
        if self.transferee:
            raise NotLeader(0, "leadership transfer in progress")
        self.proposed.append(data)
        return len(self.proposed), 3


async def test_a_parked_forward_that_expires_does_not_let_the_next_one_run() -> None:
    core = Core(role=Role.LEADER, leader_id=1, term=3, transferee=2, proposed=[],
                cluster_config=SimpleNamespace(members=[]))
    leader = idle_node(election_ticks=300)  # a 3 s election timeout: the transfer's
    leader.core = core
    leader.driver = SimpleNamespace(wake=lambda: None, proposed=lambda: None)
    sent: list[Any] = []
    transport = SimpleNamespace(send=lambda msg: sent.append(msg) or True)
    leader.forwarder = Forwarder(1, leader.settings, core, transport, leader.requests,
                                 leader.stats)
    clock = [0.0]
    leader._now = lambda: clock[0]

    def forwarded(req_id: int, args: list[bytes]) -> None:
        leader.on_forward_request(
            ForwardRequest(term=3, src=3, dst=1, req_id=req_id, args=tuple(args)))

    forwarded(1, W1)  # t=0: during the hand-over (parked)
    clock[0] = 0.5
    forwarded(2, W2)  # t=0.5: the same connection's next write (parked behind it)
    assert core.proposed == [] and sent == []

    leader.requests.sweep(2.05)  # the sweep at t=2.05, the transfer still running
    core.transferee = 0  # t=3: the transfer timed out; L leads on, as before
    clock[0] = 3.0
    leader._unpark()  # (the driver's look once it leads and does not hand over)

    # What L proposes of the follower's [W1, W2] must be a prefix: not W2 without W1.
    assert len(core.proposed) != 1, (
        f"proposed {len(core.proposed)} of [W1, W2] (W2 alone): replies {sent}")
