"""attack19: a leader refuses a follower's forwarded write with the new ``TRYAGAIN`` and
then runs the same connection's next write, forwarded right behind it.

A follower F forwards two pipelined writes of one client, W1 then W2, to the leader L
(the forwarding window sends both at once). W1 arrives while L is handing leadership over
(``RAFT TRANSFER``): ``_run_forwarded`` now answers it ``-TRYAGAIN ... not applied``. The
transfer then ends without a change (the target did not take over in time: the core clears
``transferee`` on a tick) and W2 arrives: L proposes it. The client's writes reached the
log as [W2], not a prefix of [W1, W2]. With the client library's sessions this is a lost
order, not just a failed write: ``client.pipeline()`` resends the suffix from the first
``TryAgain`` (both are ``RAFT ONCE`` tagged, so "safe"), W1 (seq n) now applies after W2
(seq n+1), and W2's resend is a duplicate answered from the session table: ``APPEND k a;
APPEND k b`` ends as ``"ba"``, and ``SET k 1; SET k 2`` (every write is tagged; sessions are
on by default) leaves ``k`` at 1, both answered ``OK``: attack18's symptom, back through
the client's retry. A fix keeps a follower's forwarded
writes in the order it sent them: what the leader proposes of them is a prefix (it refuses
everything behind a refused one, or holds them in order until it can run or refuse all).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.node.forwarding import Forwarder, decode_reply
from raftkv.node.requests import NOT_LEADER_NOW
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


async def test_a_refused_forward_is_not_overtaken_by_the_next_one_from_the_same_follower(
) -> None:
    core = Core(role=Role.LEADER, leader_id=1, term=3, transferee=2, proposed=[],
                cluster_config=SimpleNamespace(members=[]))
    leader = idle_node()
    leader.core = core
    leader.driver = SimpleNamespace(wake=lambda: None, proposed=lambda: None)
    sent: list[Any] = []
    transport = SimpleNamespace(send=lambda msg: sent.append(msg) or True)
    leader.forwarder = Forwarder(1, leader.settings, core, transport, leader.requests,
                                 leader.stats)

    def forwarded(req_id: int, args: list[bytes]) -> ForwardRequest:
        return ForwardRequest(term=3, src=3, dst=1, req_id=req_id, args=tuple(args))

    leader.on_forward_request(forwarded(1, W1))  # during the hand-over
    # (Today: answered -TRYAGAIN at once. A fix may instead hold it, in order.)
    assert [decode_reply(m.reply) for m in sent] in ([NOT_LEADER_NOW], []), sent
    core.transferee = 0  # the transfer timed out: L leads on, as before
    leader.on_forward_request(forwarded(2, W2))  # the connection's next write, right behind

    # What L proposes of F's [W1, W2] must be a prefix of them: not W2 without W1.
    assert core.proposed == [] or len(core.proposed) == 2, core.proposed
