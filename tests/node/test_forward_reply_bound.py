"""The replies a leader holds for followers' clients are bounded in bytes (attack20).

A 70-byte forwarded write may return a 15 MiB value, and the peer link's queue counts
messages: 128 pipelined through a paused follower held 520 MiB on the leader. The
transport counts the forwarded replies queued on its links; past ``--client-buffer-total``
the leader sends ``REPLY_DROPPED`` instead, which the follower's client port answers by
disconnecting the client (tests/server/test_forward_reply_dropped.py). The forwarder and
the transport run here without sockets or a clock.
"""

from __future__ import annotations

import types
from typing import Any

import attrs

from raftkv.node.forwarding import (
    DROPPED_BYTES,
    DROPPED_MARK,
    REPLY_DROPPED,
    Forwarder,
    decode_reply,
)
from raftkv.node.pending import Pending
from raftkv.node.requests import RequestTracker
from raftkv.node.settings import NodeSettings
from raftkv.node.sizes import forward_reply_limit
from raftkv.node.transport import PeerTransport
from raftkv.raft import Role
from wire.raft import AppendEntries, ForwardRequest, ForwardResponse
from wire.record import decode, encode
from wire.reply import ErrorReply
from wire.resp import encode_reply
from wire.resp_reply import ReplyParser

LIMIT = 1_000_000  # --client-buffer-total
VALUE = 400_000


def settings(**kw: Any) -> NodeSettings:
    return NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                        cluster={1: "127.0.0.1:2", 2: "127.0.0.1:3"}, data_dir="unused",
                        **kw)


class _Transport:
    """Holds what is sent, as a link whose sender task takes nothing."""

    def __init__(self) -> None:
        self.sent: list[ForwardResponse] = []

    def send(self, msg: ForwardResponse) -> bool:
        self.sent.append(msg)
        return True

    def reply_bytes(self) -> int:
        return sum(len(m.reply) for m in self.sent)


def leader() -> tuple[Forwarder, _Transport, dict[str, int]]:
    core = types.SimpleNamespace(role=Role.LEADER, term=4, leader_id=1)
    transport = _Transport()
    stats = {"forwarded": 0, "forward_replies_dropped": 0}
    fwd = Forwarder(1, settings(client_buffer_total=LIMIT), core, transport,  # type: ignore[arg-type]
                    RequestTracker(stats), stats)
    return fwd, transport, stats


def decoded(reply: bytes) -> Any:
    parser = ReplyParser()
    parser.feed(reply)
    return parser.next_reply()


def run_forwarded(fwd: Forwarder, value: Any, req_id: int) -> None:
    msg = ForwardRequest(term=4, src=2, dst=1, req_id=req_id, args=(b"EVAL", b"x", b"0"))
    fwd.on_request(msg, lambda args: None, lambda args: Pending.of(value), Pending.of)


def test_the_limit_is_the_client_buffer_total() -> None:
    assert forward_reply_limit(settings(client_buffer_total=LIMIT)) == LIMIT
    assert forward_reply_limit(settings(maxmemory=400 << 20)) == 100 << 20
    assert forward_reply_limit(settings()) == 1 << 30


def test_replies_past_the_limit_are_dropped_and_say_the_command_was_applied() -> None:
    fwd, transport, stats = leader()
    big = b"x" * VALUE
    for i in range(4):
        run_forwarded(fwd, big, i)
    values = [decoded(m.reply) for m in transport.sent]
    assert values[:2] == [big, big]  # 2 x 400 kB held: the third would pass 1 MB
    assert values[2:] == [REPLY_DROPPED, REPLY_DROPPED]
    assert [m.reply for m in transport.sent[2:]] == [DROPPED_BYTES, DROPPED_BYTES]  # marked
    assert stats["forward_replies_dropped"] == 2
    assert "was applied" in REPLY_DROPPED.text and "not applied" not in REPLY_DROPPED.text
    run_forwarded(fwd, b"small", 9)  # a reply that still fits is sent
    assert decoded(transport.sent[-1].reply) == b"small"


def test_one_reply_larger_than_the_limit_goes_alone_and_small_ones_always() -> None:
    fwd, transport, stats = leader()
    run_forwarded(fwd, b"x" * (2 * LIMIT), 1)
    assert decoded(transport.sent[0].reply) == b"x" * (2 * LIMIT)
    assert stats["forward_replies_dropped"] == 0
    # Over the limit now: a refusal still reaches its client as it is (it must not turn
    # into a reply saying the command was applied), and so does any small reply.
    refused = ErrorReply("TRYAGAIN no leader known; the command was not applied, retry")
    run_forwarded(fwd, refused, 2)
    run_forwarded(fwd, 7, 3)
    run_forwarded(fwd, b"x" * VALUE, 4)
    assert [decoded(m.reply) for m in transport.sent[1:]] == [refused, 7, REPLY_DROPPED]


def test_the_follower_hands_its_client_port_the_one_dropped_instance() -> None:
    core = types.SimpleNamespace(role=Role.FOLLOWER, term=4, leader_id=2)
    sent: list[ForwardRequest] = []
    transport = types.SimpleNamespace(send=lambda m: sent.append(m) or True)
    stats = {"forwarded": 0, "proposals_failed": 0}
    fwd = Forwarder(1, settings(), core, transport, RequestTracker(stats),  # type: ignore[arg-type]
                    stats)
    pending = Pending()
    fwd.forward([b"SET", b"k", b"v"], pending, 100.0)
    (msg,) = sent
    fwd.on_response(ForwardResponse(4, 2, 1, msg.req_id, DROPPED_BYTES))
    assert pending.value is REPLY_DROPPED


def test_only_the_mark_makes_a_reply_dropped_not_its_text() -> None:
    """(attack22) A script's error with REPLY_DROPPED's text, or a previous release's
    unmarked drop, is an error for the client, not the instance it is disconnected on."""
    same_text = encode_reply(ErrorReply(REPLY_DROPPED.text), 3)
    assert decode_reply(same_text) == REPLY_DROPPED
    assert decode_reply(same_text) is not REPLY_DROPPED
    assert decode_reply(DROPPED_BYTES) is REPLY_DROPPED
    # The mark must follow exactly one reply.
    assert decode_reply(same_text + DROPPED_MARK + DROPPED_MARK) is not REPLY_DROPPED
    # A previous release's follower reads the first reply only: REPLY_DROPPED's text, on
    # which it disconnects as before; the record is the same (its codec is strict).
    assert decoded(DROPPED_BYTES) == REPLY_DROPPED
    frame = ForwardResponse(4, 2, 1, 7, DROPPED_BYTES)
    assert decode(encode(frame)) == frame and len(attrs.fields(ForwardResponse)) == 5


def test_the_transport_counts_the_replies_queued_until_taken_or_dropped() -> None:
    t = PeerTransport(node_id=1, cluster_id="c", listen=("127.0.0.1", 0),
                      advertise_peer_addr="127.0.0.1:1", client_addr="127.0.0.1:2",
                      peers={2: "127.0.0.1:3", 3: "127.0.0.1:4"}, inbound=lambda msg: None)
    reply = ForwardResponse(4, 1, 2, 7, b"r" * 1000)
    assert t.send(reply) and t.send(ForwardResponse(4, 1, 3, 8, b"s" * 500))
    assert t.send(AppendEntries(4, 1, 2, 0, 0, (), 0, 0))  # not a reply: not counted
    assert t.reply_bytes() == 1500
    link = t._links[2]
    assert link.next_nowait() == reply  # taken by the sender task
    assert t.reply_bytes() == 500
    t.send(ForwardResponse(4, 1, 2, 9, b"q" * 300))
    assert t.reply_bytes() == 800
    link.drop_queued()  # the link failed: its queue is gone
    assert t.reply_bytes() == 500
