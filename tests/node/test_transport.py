"""PeerTransport over real loopback sockets: delivery, order, handshake, bad peers, stalls.

Every test is bounded by ``trio.fail_after``; waits are on transport state
(``wait_until``) and channels, never sleeps. The short timeouts below are I/O timeouts
under test, not synchronisation.
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import attrs
import pytest
import trio

from raftkv.backoff import Backoff
from raftkv.node.log_throttle import LogThrottle
from raftkv.node.tls import PeerTLS
from raftkv.node.transport import PeerTransport, TransportLimits, _Delivery, _tune_socket
from raftkv.raft.validation import check_peer_message
from wire.errors import ProtocolError
from wire.frames import FrameDecoder, encode_frame
from wire.hello import PROTOCOL_VERSION, Ack, Hello, Ping, Refused
from wire.raft import RequestVote
from wire.record import decode, encode, record

CLUSTER = "test-cluster"
LIMITS = TransportLimits(
    stall_timeout=2.0,
    keepalive_interval=0.5,
    hello_timeout=2.0,
    dial_backoff_base=0.01,
    dial_backoff_max=0.1,
)
# A link that must notice silence fast (keepalive and stall tests).
FAST = attrs.evolve(LIMITS, stall_timeout=0.3, keepalive_interval=0.05)


@record(tag=60_001)
@attrs.frozen
class Note:
    """A stand-in peer message: the transport only needs ``src`` and ``dst``."""

    src: int
    dst: int
    seq: int
    data: bytes = b""


@attrs.define
class Peer:
    t: PeerTransport
    inbox: trio.MemoryReceiveChannel[Note]
    port: int
    scope: trio.CancelScope
    stopped: trio.Event

    @property
    def id(self) -> int:
        return self.t.node_id

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


async def start(
    nursery: trio.Nursery,
    node_id: int,
    peers: dict[int, str] | None = None,
    *,
    cluster: str = CLUSTER,
    port: int = 0,
    limits: TransportLimits = LIMITS,
    inbox_size: int = 4096,
    validate: Callable[[object], None] | None = None,
    secret: bytes | None = None,
    tls: PeerTLS | None = None,
    **extra: Any,
) -> Peer:
    send, recv = trio.open_memory_channel[Note](inbox_size)
    t = PeerTransport(
        node_id=node_id,
        cluster_id=cluster,
        listen=("127.0.0.1", port),
        advertise_peer_addr=f"127.0.0.1:{port}",
        client_addr=f"client-of-{node_id}",
        peers=peers or {},
        inbound=send,
        limits=limits,
        rng=random.Random(node_id),
        validate=validate,
        secret=secret,
        tls=tls,
        **extra,
    )
    scope, stopped = trio.CancelScope(), trio.Event()

    async def run(task_status: trio.TaskStatus[int]) -> None:
        try:
            with scope:
                await t.run(task_status=task_status)
        finally:
            stopped.set()

    bound = await nursery.start(run)
    return Peer(t, recv, bound, scope, stopped)


def connected(p: Peer, *peer_ids: int) -> Callable[[], bool]:
    return lambda: all(p.t.stats()[i].connected for i in peer_ids)


async def mesh(nursery: trio.Nursery, n: int, limits: TransportLimits = LIMITS) -> list[Peer]:
    """n transports, every one a peer of every other, all links up."""
    nodes = [await start(nursery, i, limits=limits) for i in range(1, n + 1)]
    for p in nodes:
        p.t.update_peers({q.id: q.addr for q in nodes if q is not p})
    for p in nodes:
        await p.t.wait_until(connected(p, *(q.id for q in nodes if q is not p)))
    return nodes


async def receive(p: Peer, count: int) -> list[Note]:
    return [await p.inbox.receive() for _ in range(count)]


@pytest.fixture
def warnings() -> Iterator[list[logging.LogRecord]]:
    """WARNING records of raftkv.transport (own handler: works whatever propagate is)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("raftkv.transport")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def logged(records: list[logging.LogRecord], message: str) -> list[dict]:
    return [r.fields for r in records if r.getMessage() == message]  # type: ignore[attr-defined]


# -- raw sockets playing a peer ------------------------------------------------------------


class RawPeer:
    """A hand-driven peer connection, to send what a real transport never would."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(1 << 20)
        self.frames: list[bytes] = []

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def hello(self, node_id: int, cluster: str = CLUSTER) -> object:
        await self.stream.send_all(encode_frame(encode(
            Hello(PROTOCOL_VERSION, cluster, node_id, "127.0.0.1:1", "client"))))
        return await self.next()

    async def next(self) -> object:
        while not self.frames:
            data = await self.stream.receive_some()
            assert data, "closed while waiting for a frame"
            self.frames.extend(self.decoder.feed(data))
        return decode(self.frames.pop(0))

    async def read_until_closed(self) -> bytes:
        """Everything the other side sent until it closed the connection."""
        data = b""
        while True:
            try:
                chunk = await self.stream.receive_some()
            except trio.BrokenResourceError:  # reset: closed with our bytes unread
                return data
            if not chunk:
                return data
            data += chunk


def frames_of(data: bytes) -> list[object]:
    return [decode(f) for f in FrameDecoder(1 << 20).feed(data)]


# -- delivery ------------------------------------------------------------------------------


async def test_two_transports_exchange_in_both_directions_in_order(nursery) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2)
        for seq in range(300):
            assert a.t.send(Note(1, 2, seq))
            assert b.t.send(Note(2, 1, seq, b"x" * seq))
        got_b, got_a = await receive(b, 300), await receive(a, 300)
    assert got_b == [Note(1, 2, seq) for seq in range(300)]
    assert got_a == [Note(2, 1, seq, b"x" * seq) for seq in range(300)]
    assert a.t.stats()[2].sent == 300 and b.t.stats()[1].received == 300
    assert a.t.peer_client_addr(2) == "client-of-2"
    assert b.t.peer_client_addr(1) == "client-of-1"


async def test_three_transports_all_pairs_in_order(nursery) -> None:
    with trio.fail_after(10):
        nodes = await mesh(nursery, 3)
        for p in nodes:
            for q in nodes:
                if q is not p:
                    assert p.t.send_many(Note(p.id, q.id, seq) for seq in range(100)) == 100
        for p in nodes:
            got = await receive(p, 200)
            for q in nodes:
                if q is not p:
                    assert [m.seq for m in got if m.src == q.id] == list(range(100))
            assert all(m.dst == p.id for m in got)


async def test_reconnects_after_the_receiver_restarts_without_reordering(nursery) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2)
        a.t.send_many(Note(1, 2, seq) for seq in range(50))
        first = await receive(b, 50)
        await b.stop()
        await a.t.wait_until(lambda: not a.t.stats()[2].connected)
        sent_while_down = a.t.send_many(Note(1, 2, seq) for seq in range(50, 100))
        b2 = await start(nursery, 2, {1: a.addr}, port=b.port)
        await a.t.wait_until(connected(a, 2))
        a.t.send_many(Note(1, 2, seq) for seq in range(100, 150))
        second = []
        while not second or second[-1].seq != 149:
            second.append(await b2.inbox.receive())
    assert [m.seq for m in first] == list(range(50))
    seqs = [m.seq for m in second]
    assert len(seqs) == len(set(seqs)) and min(seqs) >= 50  # no duplicates, none old
    # Had the redial taken longer than stall_timeout, what waited for it could have come
    # back over b2's own connection to us and interleaved with the new link's messages.
    assert seqs == sorted(seqs)
    assert set(range(100, 150)) <= set(seqs)  # everything sent on the new link arrived
    assert sent_while_down > 0
    assert a.t.stats()[2].reconnects >= 1



async def test_inbound_may_be_a_plain_callback(nursery) -> None:
    got: list[Note] = []
    all_in = trio.Event()

    def on_message(msg: Note) -> None:
        got.append(msg)
        if len(got) == 20:
            all_in.set()

    with trio.fail_after(5):
        a = await start(nursery, 1)
        b = PeerTransport(
            node_id=2, cluster_id=CLUSTER, listen=("127.0.0.1", 0), advertise_peer_addr="",
            client_addr="", peers={1: a.addr}, inbound=on_message, limits=LIMITS,
        )
        b_port = await nursery.start(b.run)
        a.t.update_peers({2: f"127.0.0.1:{b_port}"})
        await a.t.wait_until(connected(a, 2))
        a.t.send_many(Note(1, 2, seq) for seq in range(20))
        await all_in.wait()
    assert got == [Note(1, 2, seq) for seq in range(20)]

# -- handshake -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node_id", "cluster", "reason"),
    [(3, "another-cluster", "cluster id"), (9, CLUSTER, "not a member")],
)
async def test_handshake_refused_and_the_node_keeps_serving(
    nursery, warnings, node_id: int, cluster: str, reason: str
) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2)
        a.t.update_peers({2: b.addr, 3: "127.0.0.1:9"})  # 3 is a member, 9 is not
        x = await start(nursery, node_id, {1: a.addr}, cluster=cluster)
        await x.t.wait_until(lambda: x.t.stats()[1].refused >= 2)  # it retries, refused again
        a.t.send(Note(1, 2, 7))
        b.t.send(Note(2, 1, 8))
        assert await b.inbox.receive() == Note(1, 2, 7)
        assert await a.inbox.receive() == Note(2, 1, 8)
    assert not x.t.stats()[1].connected
    assert a.t.refused_inbound >= 2
    refusals = logged(warnings, "refused peer")
    assert refusals and reason in refusals[0]["reason"] and refusals[0]["node_id"] == node_id
    assert reason in logged(warnings, "peer refused handshake")[0]["reason"]
    # Rate-limited: the repeated refusals of the same peer logged once.
    assert len(refusals) == 1


async def test_refused_reply_is_sent_before_closing(nursery) -> None:
    with trio.fail_after(5):
        a = await start(nursery, 1, {2: "127.0.0.1:9"})
        raw = await RawPeer.connect(a.port)
        reply = await raw.hello(9)
        assert isinstance(reply, Refused) and "not a member" in reply.reason
        assert await raw.read_until_closed() == b""
        raw = await RawPeer.connect(a.port)
        assert isinstance(await raw.hello(1), Refused)  # our own id is not a peer either


async def test_dialer_checks_the_acceptors_hello(nursery, warnings) -> None:
    with trio.fail_after(10):
        wrong = await start(nursery, 3, {1: "127.0.0.1:9"})
        # Node 1 thinks node 2 lives at wrong's address; node 3 answers there.
        a = await start(nursery, 1, {2: wrong.addr})
        await a.t.wait_until(lambda: a.t.stats()[2].refused >= 1)
    assert not a.t.stats()[2].connected
    assert "reached node 3" in logged(warnings, "peer refused handshake")[0]["reason"]


# -- misbehaving peers ---------------------------------------------------------------------


def bad_inputs() -> dict[str, tuple[bool, bytes]]:
    """name -> (handshake first as member 9?, bytes to send)."""
    return {
        "garbage-before-hello": (False, encode_frame(b"\xc1 not msgpack")),
        "oversized-length": (False, b"\xff\xff\xff\xff" + b"x" * 100),
        "zero-length": (False, b"\x00\x00\x00\x00"),
        "garbage-after-hello": (True, encode_frame(b"\x93\x01\x02")),
        "oversized-after-hello": (True, (LIMITS.max_frame_size + 1).to_bytes(4, "big")),
        "wrong-src": (True, encode_frame(encode(Note(2, 1, 0)))),
        "wrong-dst": (True, encode_frame(encode(Note(9, 2, 0)))),
        "hello-again": (True, encode_frame(encode(
            Hello(PROTOCOL_VERSION, CLUSTER, 9, "127.0.0.1:1", "c")))),
        "unknown-tag": (True, encode_frame(b"\x92\xcd\xff\xff\x01")),
    }


@pytest.mark.parametrize("case", sorted(bad_inputs()))
async def test_bad_input_closes_only_that_connection(nursery, warnings, case: str) -> None:
    handshake, payload = bad_inputs()[case]
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2)
        a.t.update_peers({2: b.addr, 9: "127.0.0.1:9"})
        raw = await RawPeer.connect(a.port)
        if handshake:
            assert isinstance(await raw.hello(9), Hello)
            await a.t.wait_until(lambda: a.t.stats()[9].inbound)
        await raw.stream.send_all(payload)
        rest = await raw.read_until_closed()
        assert all(isinstance(m, Ack) for m in frames_of(rest))
        await a.t.wait_until(lambda: not a.t.stats()[9].inbound)
        # The legitimate link was untouched and still carries messages both ways.
        a.t.send(Note(1, 2, 1))
        b.t.send(Note(2, 1, 2))
        assert await b.inbox.receive() == Note(1, 2, 1)
        assert await a.inbox.receive() == Note(2, 1, 2)
    assert a.t.bad_connections == 1
    assert a.t.stats()[2].reconnects == 0 and b.t.stats()[1].reconnects == 0
    assert len(logged(warnings, "protocol error, connection closed")) == 1


async def test_stalled_peer_is_dropped_without_blocking_other_peers(nursery, warnings) -> None:
    limits = attrs.evolve(LIMITS, stall_timeout=0.5, keepalive_interval=0.1, send_queue=64)
    big = b"x" * (256 * 1024)

    async def keep_queue_to_c_full() -> None:
        # Top the queue up after every write until the socket buffers (whatever their
        # size) are full and send_all blocks.
        seq = 0
        while True:
            while a.t.send(Note(1, 3, seq, big)):
                seq += 1
            sent = a.t.stats()[3].sent
            await a.t.wait_until(lambda sent=sent: a.t.stats()[3].sent != sent)

    with trio.fail_after(15):
        a, b = await mesh(nursery, 2, limits)
        # c never reads its inbox: its receiver blocks, so it stops reading the socket,
        # while it still answers keepalives (a live process whose reader is stuck).
        c = await start(nursery, 3, {1: a.addr}, limits=limits, inbox_size=0)
        a.t.update_peers({2: b.addr, 3: c.addr})
        await a.t.wait_until(connected(a, 3))
        async with trio.open_nursery() as feeding:
            feeding.start_soon(keep_queue_to_c_full)
            assert a.t.send_many(Note(1, 2, seq) for seq in range(50)) == 50
            assert [m.seq for m in await receive(b, 50)] == list(range(50))
            # The blocked link is closed (and at once redialled): c was dropped.
            await a.t.wait_until(lambda: a.t.stats()[3].reconnects >= 1)
            feeding.cancel_scope.cancel()
    # Whichever notices first: our send_all blocked, or c stopped acknowledging frames.
    stalls = (logged(warnings, "send stalled, closing link")
              + logged(warnings, "sent bytes not acknowledged, closing link"))
    assert stalls and {s["peer"] for s in stalls} == {3}
    assert a.t.stats()[3].queued == 0  # what was queued for the stalled link was dropped
    assert a.t.stats()[2].reconnects == 0


def test_send_queue_is_bounded_and_drops() -> None:
    send, _ = trio.open_memory_channel[Note](1)
    t = PeerTransport(
        node_id=1, cluster_id=CLUSTER, listen=("127.0.0.1", 0), advertise_peer_addr="",
        client_addr="", peers={2: "127.0.0.1:9"}, inbound=send,
        limits=attrs.evolve(LIMITS, send_queue=8),
    )
    assert [t.send(Note(1, 2, i)) for i in range(10)] == [True] * 8 + [False] * 2
    assert t.send(Note(1, 5, 0)) is False  # unknown peer
    stats = t.stats()[2]
    assert (stats.queued, stats.dropped, stats.sent, t.unroutable) == (8, 2, 0, 1)



async def test_failed_dial_drops_what_was_queued(nursery) -> None:
    with trio.fail_after(5):
        a = await start(nursery, 1)
        gone = await start(nursery, 2)
        await gone.stop()  # a port nothing listens on any more
        assert a.t.send_many(Note(1, 2, seq) for seq in range(5)) == 0  # not a peer yet
        a.t.update_peers({2: gone.addr})
        assert a.t.send_many(Note(1, 2, seq) for seq in range(5)) == 5
        await a.t.wait_until(lambda: a.t.stats()[2].dropped == 5)
    assert a.t.stats()[2].queued == 0 and a.t.unroutable == 5


async def test_a_message_sent_while_the_link_is_down_is_known_dropped_or_delivered(
        nursery) -> None:
    """``send_mark``/``dropped_since`` (the founder probe's early end): a message queued
    while the link is down is dropped when the next dial fails, and said so; one queued
    before a dial that succeeds is delivered, and never said dropped."""
    with trio.fail_after(5):
        a = await start(nursery, 1)
        gone = await start(nursery, 2)
        await gone.stop()  # a port nothing listens on any more
        b = await start(nursery, 3, {1: a.addr})
        a.t.update_peers({2: gone.addr, 3: b.addr})  # neither link is up yet
        marks = {peer: a.t.send_mark(peer) for peer in (2, 3)}
        assert None not in marks.values()
        assert a.t.send(Note(1, 2, 0)) and a.t.send(Note(1, 3, 0))
        await a.t.wait_until(lambda: a.t.dropped_since(2, marks[2]))
        assert await b.inbox.receive() == Note(1, 3, 0)
        await a.t.wait_until(connected(a, 3))
        assert not a.t.dropped_since(3, marks[3])
        assert a.t.send_mark(3) is None  # up: a message written may be answered


async def test_a_newer_inbound_connection_replaces_the_older(nursery) -> None:
    with trio.fail_after(5):
        a = await start(nursery, 1, {9: "127.0.0.1:9"})
        old, new = await RawPeer.connect(a.port), await RawPeer.connect(a.port)
        assert isinstance(await old.hello(9), Hello)
        assert isinstance(await new.hello(9), Hello)
        # The peer dials one connection at a time: the old one is dead, so a closes it.
        assert all(isinstance(m, Ack) for m in frames_of(await old.read_until_closed()))
        await new.stream.send_all(encode_frame(encode(Note(9, 1, 42))))
        assert await a.inbox.receive() == Note(9, 1, 42)
    assert a.t.stats()[9].inbound

# -- keepalives ----------------------------------------------------------------------------


async def test_keepalives_keep_an_idle_link_up(nursery) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2, FAST)
        # 15 keepalives span 0.75 s, well past the 0.3 s stall timeout.
        await b.t.wait_until(lambda: b.t.stats()[1].keepalives >= 15)
        await a.t.wait_until(lambda: a.t.stats()[2].keepalives >= 15)
    for p, other in ((a, 2), (b, 1)):
        s = p.t.stats()[other]
        assert s.connected and s.inbound and s.reconnects == 0


async def test_silent_inbound_connection_is_closed_after_stall_timeout(nursery) -> None:
    with trio.fail_after(5):
        a = await start(nursery, 1, {9: "127.0.0.1:9"}, limits=FAST)
        raw = await RawPeer.connect(a.port)
        assert isinstance(await raw.hello(9), Hello)
        rest = await raw.read_until_closed()  # we never ping: a must give up on us
    # a kept acking us until it gave up, so it was alive and closed the link on purpose.
    assert frames_of(rest) and all(isinstance(m, Ack) for m in frames_of(rest))
    assert not a.t.stats()[9].inbound


async def test_silent_outbound_connection_is_closed_and_redialled(nursery) -> None:
    """A peer that handshakes but never pings back is dropped and dialled again."""
    accepted: list[bytes] = []
    done = trio.Event()

    async def silent_peer(stream: trio.SocketStream) -> None:
        raw = RawPeer(stream)
        hello = await raw.next()
        assert isinstance(hello, Hello) and hello.node_id == 1
        await stream.send_all(encode_frame(encode(
            Hello(PROTOCOL_VERSION, CLUSTER, 9, "127.0.0.1:1", "c"))))
        accepted.append(await raw.read_until_closed())
        if len(accepted) == 2:
            done.set()

    with trio.fail_after(5):
        listeners = await nursery.start(partial(trio.serve_tcp, silent_peer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        a = await start(nursery, 1, {9: f"127.0.0.1:{port}"}, limits=FAST)
        await done.wait()
    assert all(frames_of(data) and all(isinstance(m, Ping) for m in frames_of(data))
               for data in accepted)
    assert a.t.stats()[9].reconnects >= 1


# -- membership and shutdown ---------------------------------------------------------------


async def test_update_peers_adds_and_removes_links(nursery) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2)
        c = await start(nursery, 3, {1: a.addr})
        a.t.update_peers({2: b.addr, 3: c.addr})
        await a.t.wait_until(connected(a, 2, 3))
        await c.t.wait_until(connected(c, 1))
        assert a.t.send(Note(1, 3, 1)) and c.t.send(Note(3, 1, 2))
        assert await c.inbox.receive() == Note(1, 3, 1)
        assert await a.inbox.receive() == Note(3, 1, 2)

        a.t.update_peers({2: b.addr})
        assert set(a.t.stats()) == {2}
        assert a.t.send(Note(1, 3, 3)) is False
        # a's outbound link to c closed, and c's link to a is now refused.
        await c.t.wait_until(lambda: not c.t.stats()[1].inbound)
        await c.t.wait_until(lambda: c.t.stats()[1].refused >= 1)
        assert a.t.send(Note(1, 2, 4))
        assert await b.inbox.receive() == Note(1, 2, 4)
    assert not c.t.stats()[1].connected
    with pytest.raises(ValueError):
        a.t.update_peers({1: b.addr})  # never a peer of itself


async def test_cancelling_run_closes_the_port_and_every_link(nursery) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2)
        await a.stop()
        await b.t.wait_until(lambda: not (b.t.stats()[1].connected or b.t.stats()[1].inbound))
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", a.port)
    assert a.t.stats()[2].connected is False and a.t.stats()[2].inbound is False


# -- helpers -------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(0.1, 1.0, random.Random(7))
    assert b.delay() == 0.0  # first try after a working link: at once
    delays = []
    for _ in range(8):
        b.failed()
        delays.append(b.delay())
    for n, d in enumerate(delays):
        ceiling = min(1.0, 0.1 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert len(set(delays[-3:])) == 3  # jittered, not lock-step
    assert Backoff(0.1, 1.0, random.Random(7)).rng.random() == random.Random(7).random()
    b.reset()
    assert b.delay() == 0.0


def test_log_throttle_suppresses_repeats_per_key() -> None:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("raftkv.test-throttle")
    logger.setLevel(logging.WARNING)
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    now = [0.0]
    throttle = LogThrottle(logger, interval=10.0, clock=lambda: now[0])
    try:
        assert throttle.log("k", logging.WARNING, "event", n=1)
        assert not throttle.log("k", logging.WARNING, "event", n=2)
        assert not throttle.log("k", logging.WARNING, "event", n=3)
        assert throttle.log("other", logging.WARNING, "event", n=4)
        now[0] = 10.0
        assert throttle.log("k", logging.WARNING, "event", n=5)
    finally:
        logger.removeHandler(handler)
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert fields == [{"n": 1}, {"n": 4}, {"n": 5, "suppressed": 2}]


def test_log_throttle_caps_the_lines_of_all_keys_and_says_how_many_it_dropped() -> None:
    """attack17: one guesser may own many keys (the /64s of a /48): ``max_lines`` bounds
    every key's lines together per interval, and the next line says what it dropped."""
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("raftkv.test-throttle-cap")
    logger.setLevel(logging.WARNING)
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    now = [0.0]
    throttle = LogThrottle(logger, interval=10.0, clock=lambda: now[0], max_lines=2)
    try:
        logged = [throttle.log(("auth", n), logging.WARNING, "event", n=n) for n in range(50)]
        assert logged == [True, True] + [False] * 48
        now[0] = 10.0
        assert throttle.log(("auth", 99), logging.WARNING, "event", n=99)
    finally:
        logger.removeHandler(handler)
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert fields == [{"n": 0}, {"n": 1}, {"n": 99, "others_suppressed": 48}]


# -- hostile configuration -----------------------------------------------------------

# What committed CONFIG entries may hold (tests/node/test_hostile_config.py replays them
# through the runtime's apply).
HOSTILE_ADDRS = [
    "a..b:7000", "127.0.0.1:99999", "127.0.0.1:0", "", ":", "host", "[zz]:1", "a\x00b:1",
    "\u200b:7000", "x" * 300 + ":1", "::1:7000", "-:1", "999.999.999.999:1", "h:\u0667",
]


async def test_update_peers_with_hostile_addresses_never_raises(nursery, warnings) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2)
        for n, addr in enumerate(HOSTILE_ADDRS):
            a.t.update_peers({2: b.addr, 9: addr})  # a new bad address for peer 9 each time
            assert a.t.peers()[9] == addr
            await a.t.wait_until(lambda: a.t.stats()[9].dial_failures >= 1)
            # The good link is untouched and keeps carrying traffic both ways.
            assert a.t.send(Note(1, 2, n)) and b.t.send(Note(2, 1, n))
            assert await b.inbox.receive() == Note(1, 2, n)
            assert await a.inbox.receive() == Note(2, 1, n)
        a.t.update_peers({2: b.addr, 9: "a..b:7000"})
        await a.t.wait_until(lambda: a.t.stats()[9].dial_failures >= 5)
    bad = logged(warnings, "cannot dial peer: bad address")
    assert bad and all(f["peer"] == 9 for f in bad)
    # Rate-limited: one line per peer per interval, not one per dial.
    assert len(bad) < sum(1 for _ in HOSTILE_ADDRS) + 5
    assert a.t.stats()[2].connected and b.t.stats()[1].connected


# -- hostile peers: validation and the handshake ---------------------------------------


async def test_a_malformed_message_is_refused_before_delivery(nursery, warnings) -> None:
    """The runtime's validator (raftkv.raft.validation) runs on receipt: a RequestVote
    at term 2**64 - 1 (issue 12: it left every node a candidate there for good) closes the
    connection and never reaches the inbox; the next good message from the peer does."""
    with trio.fail_after(10):
        a = await start(nursery, 1, {9: "127.0.0.1:9"}, validate=check_peer_message)
        bad, good = await RawPeer.connect(a.port), await RawPeer.connect(a.port)
        assert isinstance(await bad.hello(9), Hello)
        await bad.stream.send_all(encode_frame(encode(
            RequestVote(2**64 - 1, 9, 1, 0, 0, transfer=True))))
        assert all(isinstance(m, Ack) for m in frames_of(await bad.read_until_closed()))
        assert isinstance(await good.hello(9), Hello)
        await good.stream.send_all(encode_frame(encode(RequestVote(3, 9, 1, 0, 0))))
        assert await a.inbox.receive() == RequestVote(3, 9, 1, 0, 0)
    assert a.t.bad_connections == 1
    assert "out of range" in logged(warnings, "protocol error, connection closed")[0]["error"]


async def test_a_connection_replaces_the_link_only_after_a_checked_hello(nursery) -> None:
    """Silent, refused and garbled newcomers leave the established inbound link alone; a
    silent one is closed after hello_timeout."""
    fast_hello = attrs.evolve(LIMITS, hello_timeout=0.3)
    with trio.fail_after(10):
        a = await start(nursery, 1, {9: "127.0.0.1:9"}, limits=fast_hello)
        real = await RawPeer.connect(a.port)
        assert isinstance(await real.hello(9), Hello)
        await a.t.wait_until(lambda: a.t.stats()[9].inbound)
        silent = await RawPeer.connect(a.port)
        assert await silent.read_until_closed() == b""  # closed after hello_timeout
        wrong = await RawPeer.connect(a.port)
        assert isinstance(await wrong.hello(9, cluster="other"), Refused)
        garbled = await RawPeer.connect(a.port)
        await garbled.stream.send_all(encode_frame(b"\xc1"))
        assert await garbled.read_until_closed() == b""
        # The real link still delivers (it was never replaced or closed).
        await real.stream.send_all(encode_frame(encode(Note(9, 1, 7))))
        assert await a.inbox.receive() == Note(9, 1, 7)
    assert a.t.stats()[9].inbound


# -- dead paths (issue 20) -----------------------------------------------------------------


async def test_a_link_whose_frames_are_never_acknowledged_is_redialled(nursery, warnings) -> None:
    """A blackhole peer: it handshakes and keeps sending keepalives (so the connection looks
    alive from our side) but never reads what we send, like a peer that moved to a new
    address while its old connection still delivers its packets to us and ours nowhere.
    The link is abandoned and redialled within about stall_timeout."""
    accepted = 0
    second = trio.Event()

    async def blackhole(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        if accepted == 2:
            second.set()
        raw = RawPeer(stream)
        assert isinstance(await raw.next(), Hello)
        await stream.send_all(encode_frame(encode(
            Hello(PROTOCOL_VERSION, CLUSTER, 9, "127.0.0.1:1", "c"))))
        while True:  # alive, acknowledging the Hello and nothing after it, never reading
            await stream.send_all(encode_frame(encode(Ack(1))))
            await trio.sleep(FAST.keepalive_interval / 2)

    with trio.fail_after(10):
        listeners = await nursery.start(partial(trio.serve_tcp, blackhole, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        a = await start(nursery, 1, {9: f"127.0.0.1:{port}"}, limits=FAST)
        await a.t.wait_until(connected(a, 9))
        for seq in range(20):  # traffic that is never acknowledged
            a.t.send(Note(1, 9, seq))
        with trio.fail_after(FAST.stall_timeout + 2 * FAST.keepalive_interval + 1.0):
            await second.wait()
    closed = logged(warnings, "sent bytes not acknowledged, closing link")
    assert closed and closed[0]["peer"] == 9 and closed[0]["acked"] == 1


async def test_a_peer_that_accepts_and_never_answers_is_redialled(nursery) -> None:
    """A blackhole that accepts TCP and sends nothing: each dial gives up at hello_timeout
    and the next one follows (bounded, never stuck on the first)."""
    limits = attrs.evolve(FAST, hello_timeout=0.2)
    accepted = 0
    third = trio.Event()

    async def mute(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        if accepted == 3:
            third.set()
        await trio.sleep_forever()

    with trio.fail_after(10):
        listeners = await nursery.start(partial(trio.serve_tcp, mute, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        a = await start(nursery, 1, {9: f"127.0.0.1:{port}"}, limits=limits)
        await third.wait()
    assert a.t.stats()[9].dial_failures >= 2 and not a.t.stats()[9].connected


def test_delivery_measures_how_long_acknowledgements_made_no_progress() -> None:
    d = _Delivery(sent=10, at=0.0)  # the Hello
    assert d.stalled_for(0.4) == 0.4
    d.ack(10, 0.5)
    assert d.stalled_for(100.0) == 0.0  # nothing outstanding
    d.sending(1000, 1.0)
    assert d.stalled_for(3.5) == 2.5
    d.ack(400, 3.0)  # a large frame arriving piece by piece is progress
    assert d.stalled_for(3.5) == 0.5
    d.sending(5, 3.2)  # more bytes while some are outstanding: no reset
    assert d.stalled_for(3.5) == 0.5
    d.ack(1015, 4.0)
    assert d.stalled_for(9.0) == 0.0
    with pytest.raises(ProtocolError):
        d.ack(1016, 9.0)  # more than was sent
    with pytest.raises(ProtocolError):
        d.ack(900, 9.0)  # going back


async def test_peer_sockets_get_keepalive_and_user_timeout(nursery) -> None:
    """Both ends of a link: the kernel, too, gives up on a dead path (TCP_USER_TIMEOUT =
    stall_timeout) and probes an idle one (keepalive)."""
    streams: list[trio.SocketStream] = []
    got = trio.Event()

    async def keep(stream: trio.SocketStream) -> None:
        streams.append(stream)
        got.set()
        await trio.sleep_forever()

    with trio.fail_after(5):
        listeners = await nursery.start(partial(trio.serve_tcp, keep, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await got.wait()
    for stream in (client, streams[0]):
        _tune_socket(stream, 2.5)
        assert stream.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2500
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 3
    await client.aclose()


async def test_a_peer_we_cannot_dial_gets_our_messages_on_the_link_it_opened() -> None:
    # Issue 20: a container reconnected to its network had a new address and no longer the
    # name the others dialled; its own links to them were up, but their answers had no way
    # back, and it stayed out of the cluster for good.
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a = await start(nursery, 1)
            b = await start(nursery, 2)
            a.t.update_peers({2: b.addr})
            b.t.update_peers({1: "nowhere.invalid:1"})  # b cannot reach a's address
            await a.t.wait_until(connected(a, 2))
            assert not b.t.stats()[1].connected

            async def retransmit() -> None:  # as Raft does: each failed dial drops the queue
                for seq in range(1000):
                    b.t.send(Note(2, 1, seq=seq))
                    await trio.sleep(0.1)

            nursery.start_soon(retransmit)
            a.t.send(Note(1, 2, seq=8))
            got = (await receive(a, 1))[0]  # once b's link has been down stall_timeout
            assert got.src == 2 and not b.t.stats()[1].connected
            assert (await receive(b, 1))[0].seq == 8
            nursery.cancel_scope.cancel()


# Acks every 50 ms; a stall timeout long enough that only the Ack bookkeeping can close it.
QUICK_ACKS = attrs.evolve(LIMITS, stall_timeout=5.0, keepalive_interval=0.05)


async def test_ack_arriving_before_send_all_returns_is_not_a_protocol_error(
        nursery, warnings) -> None:
    """The sender records a batch as sent only after ``send_all`` returns, but the peer may
    decode and Ack the batch's first frames while the rest is still being written (a large
    batch, a slow or busy receiver). The Ack then counts more frames than "sent" and the
    healthy link is closed as a protocol error ("Ack of N frames; sent N-1"), dropping what
    was queued. Seen on an idle 3-node cluster and on every 8 MiB SET: the links flap and
    the leader loses its followers. Here: a batch of a small frame and a 15 MB one to a
    receiver whose inbox is full, so the first frame is counted and Acked while the
    second cannot be written in full."""
    with trio.fail_after(15):
        a = await start(nursery, 1, limits=QUICK_ACKS)
        b = await start(nursery, 2, limits=QUICK_ACKS, inbox_size=0)
        a.t.update_peers({2: b.addr})
        b.t.update_peers({1: a.addr})
        await a.t.wait_until(connected(a, 2))
        assert a.t.send(Note(1, 2, 0))
        assert a.t.send(Note(1, 2, 1, b"x" * (15 * 1024 * 1024)))
        start_acks = a.t.stats()[2].keepalives
        # Several Acks from b reach a while the large frame is stuck in the socket.
        await a.t.wait_until(lambda: a.t.stats()[2].keepalives >= start_acks + 5
                             or a.t.bad_connections > 0)
    errors = [r.getMessage() + str(getattr(r, "fields", "")) for r in warnings
              if r.getMessage() == "protocol error, connection closed"]
    assert errors == []
    assert a.t.bad_connections == 0


async def test_a_connection_before_its_hello_cannot_make_the_node_buffer_a_full_frame(
        nursery) -> None:
    """Found by the attacker: before its Hello a stranger's connection could announce a
    frame up to max_frame_size (17 MiB in a node) and be buffered for the handshake
    timeout; 30 such connections took a node from 104 to 590 MB RSS. A Hello is a few
    hundred bytes: a larger first frame is refused at its header."""
    slow_hello = attrs.evolve(LIMITS, hello_timeout=30.0)
    a = await start(nursery, 1, limits=slow_hello)
    stream = await trio.open_tcp_stream("127.0.0.1", a.port)
    size = 8 * 1024 * 1024
    closed = False
    with trio.move_on_after(5):
        try:
            await stream.send_all(size.to_bytes(4, "big") + b"\x00" * (size - 1))
            closed = await stream.receive_some() == b""
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            closed = True
    await stream.aclose()
    assert closed, "the node kept buffering an 8 MiB 'Hello' from an unknown connection"
