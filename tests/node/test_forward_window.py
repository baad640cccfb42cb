"""A follower's forwards: a bounded window in flight, a bounded queue, definite answers.

Attack round 5: a pipeline of EVALs through a follower under load queued 5 s of forwards,
and ~170 that timed out answered -UNKNOWN, though most had never left the follower. A
command that was never sent was certainly not applied: it must say so (-TRYAGAIN); only a
command sent to the leader and not answered in time may say -UNKNOWN.

The forwarder runs here against a stand-in core and transport: no clock, no sockets.
"""

from __future__ import annotations

import types
from typing import Any

from raftkv.node.forwarding import (
    BECAME_LEADER,
    LINK_FULL,
    QUEUE,
    QUEUE_FULL,
    WINDOW,
    WINDOW_BYTES,
    Forwarder,
)
from raftkv.node.pending import Pending
from raftkv.node.requests import NOT_SENT, SHUTTING_DOWN, UNKNOWN_FORWARD, RequestTracker
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from wire.raft import ForwardRequest, ForwardResponse
from wire.resp import encode_reply

DEADLINE = 100.0


class _Transport:
    def __init__(self) -> None:
        self.sent: list[ForwardRequest] = []
        self.full = False

    def send(self, msg: Any) -> bool:
        if self.full:
            return False
        self.sent.append(msg)
        return True


def _forwarder() -> tuple[Forwarder, Any, _Transport, RequestTracker]:
    settings = NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                            cluster={1: "127.0.0.1:2", 2: "127.0.0.1:3", 3: "127.0.0.1:4"},
                            data_dir="unused")
    core = types.SimpleNamespace(role=Role.FOLLOWER, term=4, leader_id=2)
    transport = _Transport()
    stats = {"forwarded": 0, "proposals_failed": 0}
    requests = RequestTracker(stats)
    fwd = Forwarder(1, settings, core, transport, requests, stats)  # type: ignore[arg-type]
    return fwd, core, transport, requests


def _eval(i: int) -> list[bytes]:
    return [b"EVAL", b"return redis.call('INCR', KEYS[1])", b"1", b"k%d" % i]


def _answer(fwd: Forwarder, msg: ForwardRequest) -> None:
    fwd.on_response(ForwardResponse(msg.term, msg.dst, msg.src, msg.req_id,
                                    encode_reply(1, 3)))


def test_commands_never_sent_answer_tryagain_and_only_sent_ones_unknown() -> None:
    fwd, _, transport, requests = _forwarder()
    extra = 50
    pendings = [Pending() for _ in range(WINDOW + extra)]
    for i, p in enumerate(pendings):
        fwd.forward(_eval(i), p, DEADLINE)
    assert len(transport.sent) == WINDOW  # the rest wait, unsent
    requests.sweep(DEADLINE)  # the leader answered none in time
    assert all(p.value is UNKNOWN_FORWARD for p in pendings[:WINDOW])
    assert all(p.value is NOT_SENT for p in pendings[WINDOW:])
    assert NOT_SENT.text.startswith("TRYAGAIN") and "not applied" in NOT_SENT.text
    assert len(transport.sent) == WINDOW  # nothing was sent late, after its deadline
    assert requests.forward_bytes == 0 and requests.unsent_bytes == 0


def test_answers_open_the_window_in_order() -> None:
    fwd, _, transport, requests = _forwarder()
    pendings = [Pending() for _ in range(WINDOW + 3)]
    for i, p in enumerate(pendings):
        fwd.forward(_eval(i), p, DEADLINE)
    for n in range(3):
        _answer(fwd, transport.sent[n])
        assert pendings[n].value == 1
        assert len(transport.sent) == WINDOW + n + 1
        assert list(transport.sent[-1].args) == _eval(WINDOW + n)  # arrival order kept
    assert not requests.unsent


def test_the_queue_is_bounded_with_a_definite_error() -> None:
    fwd, _, transport, requests = _forwarder()
    for i in range(WINDOW + QUEUE):
        fwd.forward(_eval(i), Pending(), DEADLINE)
    assert len(requests.unsent) == QUEUE
    refused = Pending()
    fwd.forward(_eval(-1), refused, DEADLINE)
    assert refused.value is QUEUE_FULL and QUEUE_FULL.text.startswith("TRYAGAIN")
    assert len(transport.sent) == WINDOW


def test_the_window_is_bounded_in_bytes_but_one_big_command_always_goes() -> None:
    fwd, _, transport, requests = _forwarder()
    big = [b"SET", b"k", b"v" * WINDOW_BYTES]  # alone over the window's bytes
    fwd.forward(big, Pending(), DEADLINE)
    fwd.forward([b"SET", b"k2", b"v"], Pending(), DEADLINE)
    assert len(transport.sent) == 1 and len(requests.unsent) == 1
    _answer(fwd, transport.sent[0])
    assert len(transport.sent) == 2 and not requests.unsent


def test_unsent_commands_go_to_a_new_leader() -> None:
    fwd, core, transport, requests = _forwarder()
    pendings = [Pending() for _ in range(WINDOW + 2)]
    for i, p in enumerate(pendings):
        fwd.forward(_eval(i), p, DEADLINE)
    core.leader_id, core.term = 3, 5
    requests.leader_changed(3)
    # Sent to the old leader: fate unknown. Never sent: sent now, to the new one.
    assert all(p.value is UNKNOWN_FORWARD for p in pendings[:WINDOW])
    assert [m.dst for m in transport.sent[WINDOW:]] == [3, 3]
    assert all(not p.done for p in pendings[WINDOW:])


def test_a_follower_that_becomes_leader_parks_its_unsent_commands_to_propose_them() -> None:
    fwd, core, transport, requests = _forwarder()
    pendings = [Pending() for _ in range(WINDOW + 2)]
    for i, p in enumerate(pendings):
        fwd.forward(_eval(i), p, DEADLINE)
    raft = Pending()
    fwd.forward([b"RAFT", b"REMOVENODE", b"3"], raft, DEADLINE)
    core.role, core.leader_id = Role.LEADER, 1
    requests.leader_changed(1)
    # Never sent: parked, for the node (now leader) to propose them itself, in order.
    assert [w.args for w in requests.parked] == [_eval(WINDOW), _eval(WINDOW + 1)]
    assert all(w.write and w.deadline == DEADLINE for w in requests.parked)
    assert not any(p.done for p in pendings[WINDOW:])
    assert raft.value is BECAME_LEADER  # a membership change is not a write: refused
    assert len(transport.sent) == WINDOW and not requests.unsent


def test_unsent_commands_are_answered_at_shutdown() -> None:
    fwd, _, _, requests = _forwarder()
    pendings = [Pending() for _ in range(WINDOW + 1)]
    for i, p in enumerate(pendings):
        fwd.forward(_eval(i), p, DEADLINE)
    requests.fail_all(SHUTTING_DOWN)
    assert pendings[-1].value is SHUTTING_DOWN
    assert pendings[0].value is UNKNOWN_FORWARD


def test_a_command_the_link_refuses_is_answered_as_not_sent() -> None:
    fwd, _, transport, requests = _forwarder()
    transport.full = True  # the peer link's send queue is full
    p = Pending()
    fwd.forward(_eval(0), p, DEADLINE)
    assert p.value is LINK_FULL and LINK_FULL.text.startswith("TRYAGAIN")
    assert not requests.forwards and requests.forward_bytes == 0
