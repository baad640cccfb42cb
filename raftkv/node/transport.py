"""Peer transport: TCP links between nodes carrying length-prefixed msgpack frames.

Model (like etcd's streams): every node dials every peer and *sends* on that outbound
connection; it *receives* on the connections it accepted. Two TCP connections per pair,
so there is no tie-break between simultaneous dials. Each link is kept warm: the dialer
reconnects at once after a loss (backing off only on repeated failures), resolving the
peer's name again on every dial (a container reconnected to its network has a new address).
An idle sender writes a Ping every ``keepalive_interval``; the acceptor answers every
``keepalive_interval`` with an Ack of the bytes it has received. Either side closes a
connection that stays silent for ``stall_timeout``, and the dialer also closes one whose
outstanding bytes see no acknowledgement progress that long: a path that still brings the
peer's packets but takes ours nowhere (issue 20: links to a peer's old address sat in
FIN_WAIT1 while its keepalives still arrived) is abandoned and redialled within about
``stall_timeout``, while a slow link that delivers a large frame bit by bit is not.
Peer sockets also get TCP keepalive and TCP_USER_TIMEOUT (= ``stall_timeout``), so the
kernel gives up on a dead path too. Every peer the node knows has an outbound link: an
inbound connection is accepted only from a configured member, which we dial ourselves.

Structured concurrency: ``run()`` owns one nursery; each peer gets its own nursery (its
dialer, and per connection a sender and a watcher) under a cancel scope that
``update_peers`` cancels to remove the peer. Receivers of inbound connections run under
the listener and are tied to the peer's link, so removing a peer closes them too.

Authentication (``secret``, see raftkv.node.peer_auth): with a peer secret, both sides of
every connection prove they know it right after the Hellos, before any other frame is
read; a connection that fails is closed and logged (rate-limited, with the remote address
and the reason), and since an inbound connection replaces the peer's previous one only
once it has authenticated, a failed one never disturbs an established link.

A connection that misbehaves (garbage, oversized frame, undecodable record, a message
that is not from the authenticated peer) is closed with a WARNING; nothing else is.
``send`` never blocks: a full per-peer queue drops the message (Raft retransmits).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import socket
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import trio

from raftkv.backoff import Backoff
from raftkv.node import peer_auth
from raftkv.node.log_throttle import LogThrottle
from raftkv.node.peer_accept import AcceptGate
from raftkv.node.plain_stream import PlainStream
from raftkv.node.tls import PeerTLS
from raftkv.node.tls_stream import TLSStream
from raftkv.node.tls_stream import handshake as tls_handshake
from wire.addr import parse_addr
from wire.append import AppendEncoder
from wire.errors import ProtocolError
from wire.frames import FrameDecoder, encode_frame
from wire.hello import PROTOCOL_VERSION, Ack, Hello, Ping, Proof, Refused
from wire.raft import AppendEntries, ForwardResponse
from wire.record import BIG_BYTES, decode, encode, encode_pieces, frame_pieces

log = logging.getLogger("raftkv.transport")

RECEIVE_SIZE = 64 * 1024
# While reads come back full (a large frame streaming in), each read asks for twice as
# much, up to this: an 8 MiB entry then takes a dozen loop iterations instead of 128,
# and its frame reaches the core (resetting the follower's election timer) sooner.
MAX_RECEIVE_SIZE = 1024 * 1024

# What ends one connection (and only that connection).
CONNECTION_ERRORS = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    OSError,
    ProtocolError,
)


@attrs.frozen
class TransportLimits:
    """Sizes and timeouts of the peer transport (seconds, bytes, messages)."""

    max_frame_size: int = 16 * 1024 * 1024
    send_queue: int = 1024  # messages queued per peer before send() drops
    stall_timeout: float = 3.0  # silence on a receiver / a blocked send_all closes the link
    keepalive_interval: float = 1.0  # an idle connection pings this often
    hello_timeout: float = 5.0  # connect + handshake must finish within this
    dial_backoff_base: float = 0.05
    dial_backoff_max: float = 1.0
    batch_bytes: int = 256 * 1024  # frames joined into one send_all, at most about this

    def __attrs_post_init__(self) -> None:
        if self.send_queue < 1 or self.max_frame_size < 1 or self.batch_bytes < 1:
            raise ValueError("send_queue, max_frame_size and batch_bytes must be positive")
        if min(self.stall_timeout, self.keepalive_interval, self.hello_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.keepalive_interval >= self.stall_timeout:
            raise ValueError("keepalive_interval must be shorter than stall_timeout")


@attrs.frozen
class LinkStats:
    """One peer's link, as ``PeerTransport.stats()`` reports it."""

    peer_id: int
    addr: str
    connected: bool  # our outbound connection is up (handshake done)
    inbound: bool  # an inbound connection from the peer is up
    queued: int  # messages waiting in the send queue
    sent: int  # messages written to the socket
    dropped: int  # messages dropped (queue full, link stalled or down, unencodable)
    reconnects: int  # outbound connections established after the first
    received: int  # messages received from the peer and delivered
    keepalives: int  # Pings received on the peer's outbound connection, Acks on ours
    refused: int  # handshakes the peer refused (or whose Hello did not match)
    dial_failures: int = 0  # dials that failed (unreachable, refused, bad address)
    # Which link this is: a peer removed and added again (same id) gets a new link whose
    # counters start again at 0, so only this tells it from the old one.
    generation: int = 0


@attrs.frozen
class SendMark:
    """A down link's state when a message was sent to it (``PeerTransport.send_mark``)."""

    link: Any  # the _Link (a peer removed and added again gets a new one)
    ordinal: int  # the message's place in the link's queue (``_Link.puts``)


class _Refused(Exception):
    """The peer refused our Hello, or its Hello was not what we dialled."""


class _TLSFailed(Exception):
    """The TLS handshake failed (certificate not signed by the peer CA, not TLS, ...)."""


class _AuthFailed(Exception):
    """The peer did not prove it knows the peer secret."""


class _BadAddress(Exception):
    """The peer's configured address cannot be dialled (syntax, IDNA, port range)."""


def _decode(frame: bytes) -> Any:
    """Decode an untrusted frame; any failure is the peer's ProtocolError, never a crash."""
    try:
        return decode(frame)
    except ProtocolError:
        raise
    except Exception as exc:  # a codec bug must not let a hostile peer kill the node
        raise ProtocolError(f"undecodable record: {exc!r}") from exc


HELLO_MAX_FRAME = 64 * 1024  # a Hello or Refused: ids, a cluster id, two addresses

# Messages and frames at least this large are encoded or decoded in a worker thread: an
# 8 MiB entry cost a msgpack copy, a frame copy and on a loaded machine tens of ms, which
# on the event loop delays heartbeats and ticks (issue 12: one 8 MiB SET could cost an
# election). A big value is now sent by reference (``encode_pieces``), so encoding one
# costs microseconds; a batch of many small entries is still packed for real, and the
# receive side still decodes, hence the threshold stays. The codec's copies are single C
# calls, so the loop gets the GIL back between them; small messages stay on the loop (a
# thread hop costs more than encoding them).
OFF_LOOP_BYTES = 256 * 1024

# While a large frame from a peer is decoded in a worker thread, ``on_activity`` is called
# this often (seconds): one tick of the default 10 ms, so a follower's election timer never
# runs while its leader's frame is being decoded (issue 12).
ACTIVITY_INTERVAL = 0.01


def _bulk_bytes(msg: Any) -> int:
    """The bytes a message carries in bulk: entries' data, a snapshot chunk, a command's
    arguments, a forwarded reply (the rest of any message is a few dozen bytes)."""
    entries = getattr(msg, "entries", None)
    if entries:
        return sum(len(e.data) for e in entries)
    data = getattr(msg, "data", None) or getattr(msg, "reply", None)
    if isinstance(data, bytes | bytearray):
        return len(data)
    args = getattr(msg, "args", None)
    return sum(map(len, args)) if isinstance(args, tuple) else 0


def heartbeat_ahead_of(big: Any, msg: Any) -> AppendEntries | None:
    """A heartbeat that may reach the follower before ``big`` (an AppendEntries with
    entries, queued before ``msg`` on the same link), or None if ``msg`` is not a heartbeat
    of the same leader and term.

    ``msg`` itself may not overtake ``big``: the core points a heartbeat at the last entry it
    sent (``prev_index`` = next - 1, so that a lost append shows as a rejection), which may be
    in ``big``; arriving first, the follower would reject it and the leader would send the
    entries again. The copy points at ``big``'s own ``prev_index`` instead, an entry of the
    leader's log the follower has got (or will reject ``big`` for anyway): a heartbeat the
    leader's core could itself have sent, so nothing Raft relies on changes. The follower
    hears its leader, takes the commit index up to that entry, answers the read round
    ``seq``; the original still follows ``big`` in order."""
    if (type(big) is not AppendEntries or type(msg) is not AppendEntries or msg.entries
            or not big.entries or (msg.term, msg.src, msg.dst) != (big.term, big.src, big.dst)):
        return None
    if msg.prev_index <= big.prev_index:
        return msg
    return attrs.evolve(msg, prev_index=big.prev_index, prev_term=big.prev_term)


def _heartbeat_of(msg: Any) -> Any:
    """``msg`` without its entries, if it is an AppendEntries (else ``msg``)."""
    return attrs.evolve(msg, entries=()) if type(msg) is AppendEntries else msg


def join_small(pieces: list[bytes]) -> list[bytes]:
    """``pieces`` with every run of small pieces joined into one (fewer writes) and each big
    one (``BIG_BYTES``: a value passed by reference) left alone, uncopied."""
    out: list[bytes] = []
    run: list[bytes] = []
    for piece in pieces:
        if len(piece) < BIG_BYTES:
            run.append(piece)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else b"".join(run))
            run = []
        out.append(piece)
    if run:
        out.append(run[0] if len(run) == 1 else b"".join(run))
    return out


async def _send_pieces(stream: trio.abc.SendStream, pieces: list[bytes]) -> None:
    """Write ``pieces`` in order, each with its own ``send_all``: a plain socket sends a big
    value straight from the caller's buffer (trio slices a memoryview of it); a TLS stream
    copies each piece into its record layer as it would the joined bytes."""
    for piece in pieces:
        await stream.send_all(piece)


async def _decode_off_loop(frame: bytes) -> Any:
    """``_decode``, in a worker thread for a large frame (see OFF_LOOP_BYTES)."""
    if len(frame) >= OFF_LOOP_BYTES:
        return await trio.to_thread.run_sync(_decode, frame)
    return _decode(frame)


class _FrameReader:
    """Frames from a stream; the timeout is per read, so slow-but-flowing data is fine.

    ``on_partial``, if set, is called whenever a read brought bytes of a frame that is not
    complete yet (a large frame streaming in): the peer is alive and talking to us."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame_size: int) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(max_frame_size)
        self._frames: deque[bytes] = deque()
        self.received = 0  # bytes received so far (what an Ack reports)
        self._read_size = RECEIVE_SIZE  # grows while reads come back full (MAX_RECEIVE_SIZE)
        self.on_partial: Callable[[], None] | None = None
        # Since when a ``next(watched=True)`` has been waiting for bytes (None: not waiting).
        self.waiting_since: float | None = None

    def allow(self, max_frame_size: int) -> None:
        self._decoder.max_frame_size = max_frame_size

    async def next(self, idle_timeout: float = math.inf, *, watched: bool = False
                   ) -> bytes | None:
        """The next frame; None at end of stream; TooSlowError after idle_timeout silence.
        ``watched``: no timeout here, ``watch_silence`` (another task) times the waits:
        a deadline per receive (a cancel scope) cost ~6 us, every peer message paid it."""
        while not self._frames:
            if watched:
                self.waiting_since = trio.current_time()
                try:
                    data = await self._stream.receive_some(self._read_size)
                finally:
                    self.waiting_since = None
            else:
                with trio.fail_after(idle_timeout):
                    data = await self._stream.receive_some(self._read_size)
            if not data:
                return None
            self._read_size = (min(2 * self._read_size, MAX_RECEIVE_SIZE)
                               if len(data) == self._read_size else RECEIVE_SIZE)
            self.received += len(data)
            self._frames.extend(self._decoder.feed(data))
            if not self._frames and self.on_partial is not None:
                self.on_partial()
        return self._frames.popleft()

    async def watch_silence(self, silence: float) -> None:
        """Return once a ``next(watched=True)`` has waited ``silence`` seconds for bytes:
        the same silence a ``next(timeout)`` raises TooSlowError for."""
        while True:
            since, now = self.waiting_since, trio.current_time()
            if since is not None and now - since >= silence:
                return
            await trio.sleep_until((now if since is None else since) + silence)


class _Delivery:
    """Bytes sent on one outbound connection, how many the peer has Acked, and since when
    the acknowledgements stopped making progress while some were outstanding.

    Progress, not the age of the oldest unacknowledged byte, is what counts: a large frame
    on a slow link takes long to arrive but is acknowledged piece by piece as it does."""

    def __init__(self, sent: int, at: float) -> None:
        self.sent = sent  # the Hello, written at ``at``
        self.acked = 0
        self._since = at  # the last progress (or the first unacknowledged send)

    def sending(self, n: int, at: float) -> None:
        """Called *before* the bytes are written: the Ack may race ahead of the write."""
        if self.sent == self.acked:
            self._since = at
        self.sent += n

    def ack(self, received: int, at: float) -> None:
        if not self.acked <= received <= self.sent:
            raise ProtocolError(f"Ack of {received} bytes; sent {self.sent}, acked {self.acked}")
        if received > self.acked:
            self.acked = received
            self._since = at

    def stalled_for(self, now: float) -> float:
        """How long bytes have been outstanding without any being acknowledged (0: none)."""
        return now - self._since if self.sent > self.acked else 0.0


def _tune_socket(stream: trio.SocketStream, stall_timeout: float) -> None:
    """TCP keepalive and TCP_USER_TIMEOUT, where the platform has them: the kernel drops a
    connection whose sent data stays unacknowledged for ``stall_timeout`` (Linux)."""
    idle = max(1, math.ceil(stall_timeout))
    options = [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", idle),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", 3),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", max(1, int(stall_timeout * 1000))),
    ]
    for level, name, value in options:
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):  # not supported on this platform
                stream.setsockopt(level, option, value)


@attrs.define(slots=True)
class _Direct:
    """An idle outbound connection ``send`` may write to itself: its non-blocking socket
    (the object, not its descriptor: once closed it raises instead of writing to whatever
    reuses the number), or its TLS stream, and its delivery accounting."""

    sock: socket.socket | None
    delivery: _Delivery
    # On mTLS the stream encrypts and sends (TLSStream.send_nowait); records the socket
    # does not take stay in it, and the sender task's next send (of the tail, empty) sends
    # them first.
    tls: TLSStream | None = None


# Queued after a direct write the socket took only part of: wakes the sender task, which
# writes the link's tail (or a TLS stream's unsent records) first. It encodes to nothing.
_FLUSH = object()

# An AppendEntries of at least this many entries has them packed once for every link
# (wire.append): below it, the generic encoder costs less than the sharing does.
SHARE_ENTRIES = 8

# A message carrying at least this many bulk bytes always goes through the sender task,
# which encodes a large one off the loop and can let heartbeats overtake it.
DIRECT_MAX_BULK = 64 * 1024


class _Link:
    """Mutable state of the link to one peer."""

    def __init__(self, peer_id: int, addr: str, queue_len: int, generation: int = 0) -> None:
        self.peer_id = peer_id
        self.addr = addr
        self.generation = generation  # distinct per link this transport made (LinkStats)
        self.queue_in, self.queue_out = trio.open_memory_channel[Any](queue_len)
        # Taken off the queue while a large message was encoded, to go out after it in order
        # (see PeerTransport._encode_large).
        self.held: deque[Any] = deque()
        # Set while the sender task waits on an empty queue over a plain TCP connection:
        # ``send`` then writes the frame itself (PeerTransport._write_direct).
        self.direct: _Direct | None = None
        # The unsent end of a direct write the socket took only part of: the sender task
        # writes it before anything else (a _FLUSH in the queue wakes it for that).
        self.tail = b""
        self.unsent = False  # a message was queued that the sender task has not written
        # Bytes of forwarded replies in the queue and ``held`` (``PeerTransport.reply_bytes``)
        self.reply_bytes = 0
        self.scope = trio.CancelScope()  # cancelled when the peer is removed
        self.inbound_scope: trio.CancelScope | None = None
        self.connected = False
        self.dial_refused = False  # our last dial was refused (nothing listens there)
        self.down_since = -math.inf  # since when our outbound connection has been down
        self.client_addr = ""
        self.sent = self.dropped = self.received = self.keepalives = 0
        self.connects = self.refused = self.dial_failures = 0
        # Items ever queued (each one's ordinal), and the ordinals ``drop_queued`` last
        # took out of the queue unwritten: the queue holds the latest ``puts`` in order.
        self.puts = 0
        self.last_drop = (0, -1)

    def queued(self) -> int:
        return self.queue_in.statistics().current_buffer_used

    def backlog(self) -> bool:
        """Something is waiting for the sender task (queued, held or a direct write's tail)."""
        return bool(self.unsent or self.held or self.tail
                    or self.queue_in.statistics().current_buffer_used)

    def take_tail(self) -> bytes:
        tail, self.tail = self.tail, b""
        return tail

    def put(self, msg: Any) -> None:
        """Queue ``msg`` for the sender task; trio.WouldBlock if the queue is full."""
        self.queue_in.send_nowait(msg)
        self.puts += 1
        if type(msg) is ForwardResponse:
            self.reply_bytes += len(msg.reply)

    def _taken(self, msg: Any) -> Any:
        if type(msg) is ForwardResponse:
            self.reply_bytes -= len(msg.reply)
        return msg

    def drop_queued(self) -> int:
        """Empty the send queue (its messages are stale once the link failed)."""
        n = len(self.held)
        self.held.clear()
        self.reply_bytes = 0
        removed = 0
        while True:
            try:
                msg = self.queue_out.receive_nowait()
            except trio.WouldBlock:
                break
            removed += 1
            n += msg is not _FLUSH  # (a wake-up for the tail, not a message)
        if removed:
            self.last_drop = (self.puts - removed + 1, self.puts)
        self.tail = b""
        self.dropped += n
        return n

    async def next(self) -> Any:
        """The next message to send: a held one first, else the queue's (waiting for it)."""
        return self._taken(self.held.popleft() if self.held
                           else await self.queue_out.receive())

    def next_nowait(self) -> Any:
        """``next`` without waiting; raises trio.WouldBlock when there is none."""
        return self._taken(self.held.popleft() if self.held
                           else self.queue_out.receive_nowait())


class PeerTransport:
    """TCP links to every other member; see the module docstring for the model.

    ``inbound`` receives every message from a peer: a trio memory channel's send side
    (awaited, so a slow consumer pushes back on the peer's connection) or a plain
    callable. ``message_types``, if given, is what a peer may send after the handshake;
    anything else closes its connection. Every message must carry ``src`` (the
    authenticated peer) and ``dst`` (this node); ``validate``, if given, then checks the
    rest (raising ProtocolError), before the message is delivered.
    """

    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        listen: tuple[str, int],
        advertise_peer_addr: str,
        client_addr: str,
        peers: Mapping[int, str],
        inbound: trio.MemorySendChannel[Any] | Callable[[Any], None],
        limits: TransportLimits | None = None,
        rng: random.Random | None = None,
        message_types: tuple[type, ...] | None = None,
        validate: Callable[[Any], None] | None = None,
        secret: bytes | None = None,
        tls: PeerTLS | None = None,
        on_activity: Callable[[int], None] | None = None,
        on_peer_gone: Callable[[int], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.listen = listen
        self.limits = limits or TransportLimits()
        self.port: int | None = None  # the bound peer port, once run() started
        self._rng = rng or random.Random()
        self._message_types = message_types
        self._validate = validate
        self._secret = secret or None
        self._tls = tls
        # Receive-side signals for the consensus core (RaftCore.leader_activity and
        # leader_unreachable): bytes of a frame from a peer that is still arriving or being
        # decoded; and a peer whose connections closed and whose redial was refused.
        self._on_activity = on_activity
        self._on_peer_gone = on_peer_gone
        if isinstance(inbound, trio.MemorySendChannel):
            channel = inbound

            async def deliver(msg: Any) -> None:
                # A checkpoint per message would cost a trip through the scheduler each;
                # receive_some already yields once per read, so block only when full.
                try:
                    channel.send_nowait(msg)
                except trio.WouldBlock:
                    await channel.send(msg)

            self._deliver = deliver
        else:
            callback = inbound

            async def deliver(msg: Any) -> None:
                callback(msg)

            self._deliver = deliver
        # The callback itself, if it is one: the inbound loop calls it without a coroutine.
        self._deliver_now: Callable[[Any], None] | None = (
            None if isinstance(inbound, trio.MemorySendChannel) else inbound)
        self._hello = Hello(PROTOCOL_VERSION, cluster_id, node_id, advertise_peer_addr,
                            client_addr)
        self._hello_frame = encode_frame(encode(self._hello))
        self._ping_frame = encode_frame(encode(Ping()))
        self._appends = AppendEncoder()  # (small ones only: never used off the loop)
        self._links: dict[int, _Link] = {}
        self._generation = 0  # links made so far: each new _Link takes the next number
        self._nursery: trio.Nursery | None = None
        self._changed: trio.Event | None = None
        self._throttle = LogThrottle(log)
        # Caps connections still in their handshake (peer_accept.py); replaceable before run.
        self.accept_gate = AcceptGate()
        # Transport-wide counters.
        self.unroutable = 0  # send() to an unknown peer
        self.refused_inbound = 0  # inbound handshakes we refused
        self.bad_connections = 0  # connections closed for a protocol error
        self.auth_failures = 0  # connections (either way) whose peer failed authentication
        self.tls_failures = 0  # connections (either way) whose TLS handshake failed
        self.update_peers(peers)

    # -- public API ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the bound port via ``task_status``, then serve until cancelled."""
        host, port = self.listen
        listeners = await trio.open_tcp_listeners(port, host=host)
        try:
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for link in self._links.values():
                    nursery.start_soon(self._run_link, link)
                nursery.start_soon(trio.serve_listeners,
                                   self.accept_gate.wrap(self._handle_inbound), listeners)
                self._debug("transport listening", port=self.port, peers=len(self._links))
                task_status.started(self.port)
        finally:
            self._nursery = None
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def send(self, msg: Any) -> bool:
        """Send ``msg`` to ``msg.dst``; never blocks. False (and counted) if dropped.

        On an idle link (the sender task waits on an empty queue) the frame is written
        here, with one non-blocking ``send`` (TLS: ``TLSStream.send_nowait``): at one
        client every message of a write used to cost a wake-up of the sender task and a
        trip through the scheduler (README "Performance"). Otherwise it is queued for the
        sender task, in order."""
        link = self._links.get(msg.dst)
        if link is None:
            self.unroutable += 1
            return False
        direct = link.direct
        if direct is not None and (bulk := _bulk_bytes(msg)) < DIRECT_MAX_BULK:
            pieces = self._encode(link, msg, bulk)
            if pieces is None:
                return False
            frame = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            return self._write_direct(link, direct, frame, 1, msg)
        return self._queue(link, msg)

    def send_many(self, msgs: Iterable[Any]) -> int:
        """``send`` each message, in order; returns how many were sent or queued. Frames
        for an idle link go out in one write per link (at the end, or before a message
        that must be queued behind them)."""
        pending: dict[int, tuple[_Link, list[bytes], list[Any]]] = {}
        sent = 0
        for msg in msgs:
            link = self._links.get(msg.dst)
            if link is None:
                self.unroutable += 1
                continue
            if link.direct is not None and (bulk := _bulk_bytes(msg)) < DIRECT_MAX_BULK:
                pieces = self._encode(link, msg, bulk)
                if pieces is not None:
                    entry = pending.setdefault(msg.dst, (link, [], []))
                    entry[1].extend(pieces)
                    entry[2].append(msg)
                continue
            entry = pending.pop(msg.dst, None)
            if entry is not None:
                sent += self._flush_direct(*entry)
            sent += self._queue(link, msg)
        for entry in pending.values():
            sent += self._flush_direct(*entry)
        return sent

    def reply_bytes(self) -> int:
        """Bytes of forwarded replies (``ForwardResponse``) queued on every link and not
        yet taken by its sender task: what a leader holds for followers' clients, which
        raftkv.node.forwarding bounds (a reply being written is not counted: one a link)."""
        return sum(link.reply_bytes for link in self._links.values())

    def backlog(self) -> bool:
        """Some link has messages its sender task has not written yet."""
        return any(link.backlog() for link in self._links.values())

    def _queue(self, link: _Link, msg: Any) -> bool:
        link.direct = None  # the sender task is busy from here: later messages queue
        link.unsent = True
        try:
            link.put(msg)
        except trio.WouldBlock:
            link.dropped += 1
            return False
        return True

    def _flush_direct(self, link: _Link, frames: list[bytes], msgs: list[Any]) -> int:
        direct = link.direct
        if direct is None:  # an earlier write of this batch failed: queue the rest
            return sum(self._queue(link, msg) for msg in msgs)
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        return len(msgs) if self._write_direct(link, direct, data, len(msgs), msgs) else 0

    def _write_direct(self, link: _Link, direct: _Direct, data: bytes, count: int,
                      msgs: Any) -> bool:
        """Write ``data`` (``count`` whole frames) on the idle link's socket. What the socket
        does not take now becomes the link's tail for the sender task; an error hands
        ``msgs`` (one message or a list) to the sender task, whose own write then meets the
        error and ends the connection as any failed send does."""
        unsent = False
        try:
            if direct.tls is not None:
                n = len(data)
                unsent = not direct.tls.send_nowait(data)
            else:
                assert direct.sock is not None
                n = direct.sock.send(data)
        except BlockingIOError:
            n = 0
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                trio.BusyResourceError):
            if isinstance(msgs, list):
                return all([self._queue(link, msg) for msg in msgs])
            return self._queue(link, msgs)
        direct.delivery.sending(len(data), trio.current_time())
        if n < len(data) or unsent:
            if n < len(data):
                link.tail = data[n:] if n else data
            self._queue(link, _FLUSH)
        link.sent += count
        self._notify()
        return True

    def update_peers(self, peers: Mapping[int, str]) -> None:
        """Make the links match ``peers`` (id -> "host:port" of every other member).

        A removed peer's nursery is cancelled (its connections close, its queue is lost);
        a peer whose address changed is removed and added again. Addresses are not checked
        here: they come from committed configuration, which must never crash a node, so a
        bad one is a link whose every dial fails and logs (rate-limited).
        """
        if self.node_id in peers:
            raise ValueError(f"peers must not include this node ({self.node_id})")
        for peer_id, link in list(self._links.items()):
            if peers.get(peer_id) != link.addr:
                del self._links[peer_id]
                link.scope.cancel()
                if link.inbound_scope is not None:
                    link.inbound_scope.cancel()
                self._debug("peer removed", peer=peer_id, addr=link.addr)
        for peer_id, addr in peers.items():
            if peer_id not in self._links:
                self._generation += 1
                link = self._links[peer_id] = _Link(peer_id, addr, self.limits.send_queue,
                                                    self._generation)
                if self._nursery is not None:
                    self._nursery.start_soon(self._run_link, link)
        self._notify()

    def peers(self) -> dict[int, str]:
        return {peer_id: link.addr for peer_id, link in self._links.items()}

    def peer_client_addr(self, peer_id: int) -> str | None:
        """The client address the peer advertised in its last Hello, if we have one."""
        link = self._links.get(peer_id)
        return (link.client_addr or None) if link is not None else None

    def stats(self) -> dict[int, LinkStats]:
        return {
            peer_id: LinkStats(
                peer_id=peer_id,
                addr=link.addr,
                connected=link.connected,
                inbound=link.inbound_scope is not None,
                queued=link.queued(),
                sent=link.sent,
                dropped=link.dropped,
                reconnects=max(0, link.connects - 1),
                received=link.received,
                keepalives=link.keepalives,
                refused=link.refused,
                dial_failures=link.dial_failures,
                generation=link.generation,
            )
            for peer_id, link in self._links.items()
        }

    def send_mark(self, peer_id: int) -> SendMark | None:
        """Taken just before ``send`` of a message to ``peer_id``, for ``dropped_since``;
        None while the link is up (``send`` may write the message itself then)."""
        link = self._links.get(peer_id)
        if link is None or link.connected:
            return None
        return SendMark(link, link.puts + 1)  # (``send`` queues it next, as that one)

    def dropped_since(self, peer_id: int, mark: SendMark | None) -> bool:
        """Whether the message sent to ``peer_id`` just after ``send_mark`` gave ``mark``
        was dropped unwritten (a dial failed, or the link stalled, and ``drop_queued``
        emptied the queue with it in it): no answer to it can come. False when it cannot
        tell (another drop since). Changes are seen by ``wait_until``."""
        if mark is None or self._links.get(peer_id) is not mark.link:
            return False
        first, last = mark.link.last_drop
        return first <= mark.ordinal <= last

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked whenever a link's state or counters
        change (connects, disconnects, refusals, drops, messages sent and received, keepalives)."""
        while not predicate():
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    # -- one peer's link -----------------------------------------------------------------

    async def _run_link(self, link: _Link) -> None:
        with link.scope:
            async with trio.open_nursery() as nursery:  # this peer's nursery
                nursery.start_soon(self._dial_loop, link)

    async def _dial_loop(self, link: _Link) -> None:
        lim = self.limits
        link.down_since = trio.current_time()  # not up yet: we have not reached it
        backoff = Backoff(lim.dial_backoff_base, lim.dial_backoff_max, self._rng)
        while True:
            await trio.sleep(backoff.delay())
            try:
                stream, reader, sent = await self._dial(link)
            except _Refused as exc:
                link.refused += 1
                self._warn(("refused-by", link.peer_id), "peer refused handshake",
                           peer=link.peer_id, addr=link.addr, reason=str(exc))
            except _TLSFailed as exc:
                self.tls_failures += 1
                self._warn(("tls-out", link.peer_id), "peer TLS handshake failed",
                           peer=link.peer_id, addr=link.addr, reason=str(exc))
            except _AuthFailed as exc:
                self.auth_failures += 1
                self._warn(("auth-out", link.peer_id), "peer failed authentication",
                           peer=link.peer_id, addr=link.addr, reason=str(exc))
            except _BadAddress as exc:
                self._warn(("bad-address", link.peer_id), "cannot dial peer: bad address",
                           peer=link.peer_id, addr=link.addr, error=str(exc))
            except CONNECTION_ERRORS as exc:
                if isinstance(exc, ProtocolError):
                    self._protocol_error(link.peer_id, link.addr, exc)
                elif isinstance(exc, socket.gaierror):  # a misspelt or gone name: say so
                    self._warn(("unresolvable", link.peer_id), "cannot resolve peer address",
                               peer=link.peer_id, addr=link.addr, error=_describe(exc))
                else:
                    self._debug("dial failed", peer=link.peer_id, addr=link.addr,
                                error=_describe(exc))
                    if _refused(exc):
                        link.dial_refused = True
                        self._maybe_gone(link)
            else:
                up_since = trio.current_time()
                await self._run_outbound(link, stream, reader, sent)
                # Only a connection that lasted counts as a success: a peer that accepts
                # and drops at once must not make us spin.
                if trio.current_time() - up_since >= lim.dial_backoff_max:
                    backoff.reset()
                else:
                    backoff.failed()
                continue
            backoff.failed()
            link.dial_failures += 1
            link.drop_queued()  # stale by the next attempt; Raft retransmits
            self._notify()

    async def _dial(self, link: _Link) -> tuple[trio.abc.Stream, _FrameReader, int]:
        """Connect and handshake; the caller owns the returned stream. Also returns how
        many bytes the handshake sent (the peer's Acks count them).

        The name is resolved again on every dial (a peer's address may change: a container
        reconnected to its network gets a new one)."""
        try:
            host, port = parse_addr(link.addr)
        except ValueError as exc:
            raise _BadAddress(str(exc)) from None
        with trio.fail_after(self.limits.hello_timeout):
            try:
                tcp = await trio.open_tcp_stream(host, port)
            except (ValueError, UnicodeError) as exc:  # what the resolver rejects
                raise _BadAddress(f"{type(exc).__name__}: {exc}") from None
            _tune_socket(tcp, self.limits.stall_timeout)
            stream: trio.abc.Stream = tcp
            try:
                if self._tls is not None:
                    try:
                        stream = await tls_handshake(tcp, self._tls.client, server_side=False,
                                                     server_hostname=host)
                    except trio.BrokenResourceError as exc:
                        raise _TLSFailed(_describe(exc.__cause__ or exc)) from None
                else:
                    stream = PlainStream.adopt(tcp)
                reader = _FrameReader(stream, self.limits.max_frame_size)
                nonce = peer_auth.new_nonce() if self._secret else b""
                hello_frame = self._hello_frame_with(nonce)
                await stream.send_all(hello_frame)
                frame = await reader.next()
                if frame is None:
                    raise trio.BrokenResourceError("closed during the handshake")
                reply = _decode(frame)
                if isinstance(reply, Refused):
                    raise _Refused(reply.reason)
                if not isinstance(reply, Hello):
                    raise ProtocolError(f"expected Hello, got {type(reply).__name__}")
                problem = self._check_hello(reply, expect=link.peer_id)
                if problem:
                    raise _Refused(f"its Hello does not match: {problem}")
                sent = len(hello_frame)
                if self._secret is not None:
                    sent += await self._authenticate_listener(stream, reader, link, nonce,
                                                              reply.nonce)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        link.client_addr = reply.client_addr
        return stream, reader, sent

    async def _authenticate_listener(
        self, stream: trio.abc.Stream, reader: _FrameReader, link: _Link,
        ours: bytes, theirs: bytes,
    ) -> int:
        """Dialer side: check the listener's Proof, then send ours; bytes sent."""
        assert self._secret is not None
        frame = await reader.next()
        if frame is None:
            raise trio.BrokenResourceError("closed during authentication")
        msg = _decode(frame)
        if isinstance(msg, Refused):
            raise _Refused(msg.reason)
        if not isinstance(msg, Proof):
            raise _AuthFailed(f"expected Proof, got {type(msg).__name__}")
        if not peer_auth.verify(self._secret, msg.mac, peer_auth.LISTENER, ours, theirs,
                                link.peer_id, self.cluster_id):
            raise _AuthFailed("wrong proof: it does not know the peer secret")
        mine = peer_auth.proof(self._secret, peer_auth.DIALER, ours, theirs, self.node_id,
                               self.cluster_id)
        frame = encode_frame(encode(Proof(mine)))
        await stream.send_all(frame)
        return len(frame)

    def _hello_frame_with(self, nonce: bytes) -> bytes:
        if not nonce:
            return self._hello_frame
        return encode_frame(encode(attrs.evolve(self._hello, nonce=nonce)))

    async def _run_outbound(
        self, link: _Link, stream: trio.abc.Stream, reader: _FrameReader, sent: int
    ) -> None:
        link.connected = True
        link.dial_refused = False
        link.connects += 1
        self._debug("link up", peer=link.peer_id, addr=link.addr, connects=link.connects)
        self._notify()
        delivery = _Delivery(sent, trio.current_time())
        self._watch_activity(link, reader)  # the peer's messages may come this way too
        try:
            async with trio.open_nursery() as conn:
                conn.start_soon(self._watch_outbound, link, reader, delivery, conn.cancel_scope)
                await self._send_loop(link, stream, delivery)
                conn.cancel_scope.cancel()
        finally:
            link.connected = False
            link.down_since = trio.current_time()
            self._notify()
            # Forcefully: a graceful TLS close would write close_notify, which blocks on
            # the stalled peer we are probably leaving.
            await trio.aclose_forcefully(stream)

    async def _send_loop(
        self, link: _Link, stream: trio.abc.Stream, delivery: _Delivery
    ) -> None:
        """Drain the queue onto the socket, several frames per send_all; ping when idle."""
        lim = self.limits
        nothing = object()
        # The connection may be written by ``send`` itself while this task waits on an
        # empty queue (``link.direct``): a plain socket, or a TLS stream (send_nowait).
        sock = stream.socket if isinstance(stream, PlainStream) else None
        tls = stream if isinstance(stream, TLSStream) else None
        try:
            while True:
                first: Any = nothing
                if not (link.held or link.queued()):
                    link.unsent = False  # all written: about to wait on an empty queue
                    if sock is not None or tls is not None:
                        link.direct = _Direct(sock, delivery, tls)
                try:
                    with trio.move_on_after(lim.keepalive_interval):
                        first = await link.next()
                finally:
                    link.direct = None
                tail = link.take_tail()  # a direct write's unsent end goes before anything
                if ((tail or (tls is not None and tls.unsent))
                        and not await self._send_or_stall(link, stream, tail, 0)):
                    return
                if first is nothing:
                    data, count = [self._ping_frame], 0
                else:
                    data, count = await self._encode_batch(link, first, stream, delivery)
                    if not data:
                        continue
                delivery.sending(sum(map(len, data)), trio.current_time())
                if not await self._send_or_stall(link, stream, data, count):
                    return
                if count:
                    link.sent += count
                    self._notify()
        except CONNECTION_ERRORS as exc:
            self._debug("link down", peer=link.peer_id, error=_describe(exc))
        finally:
            link.tail = b""  # a part of a frame means nothing on the next connection

    async def _send_or_stall(self, link: _Link, stream: trio.abc.Stream,
                             data: bytes | list[bytes], count: int) -> bool:
        """``send_all`` of ``data`` (bytes, or pieces sent in turn: ``_send_pieces``) within
        ``stall_timeout``; False (queue dropped, warned) if it stalled."""
        lim = self.limits
        with trio.move_on_after(lim.stall_timeout) as stall:
            if isinstance(data, bytes):
                await stream.send_all(data)
            else:
                await _send_pieces(stream, data)
        if stall.cancelled_caught:
            dropped = count + link.drop_queued()
            link.dropped += count
            self._warn(("stalled", link.peer_id), "send stalled, closing link",
                       peer=link.peer_id, seconds=lim.stall_timeout, dropped=dropped)
            self._notify()
            return False
        return True

    async def _encode_batch(self, link: _Link, first: Any,
                            stream: trio.abc.Stream | None = None,
                            delivery: _Delivery | None = None) -> tuple[list[bytes], int]:
        """Encode ``first`` and whatever else is queued, up to about ``batch_bytes``; a
        large message in a worker thread (OFF_LOOP_BYTES), letting heartbeats go ahead
        of it on ``stream`` meanwhile if one is given (``_encode_large``).

        Returns the batch as pieces to send in turn (small frames joined, big values by
        reference: ``join_small``) and the number of messages in it."""
        pieces: list[bytes] = []
        count = size = 0
        msg = first
        while True:
            if msg is _FLUSH:  # the sender task has written the link's tail already
                frame = None
            elif (bulk := _bulk_bytes(msg)) < OFF_LOOP_BYTES:
                frame = self._encode(link, msg, bulk)
            elif stream is None or delivery is None:
                frame = await trio.to_thread.run_sync(self._encode, link, msg)
            else:
                frame = await self._encode_large(link, msg, stream, delivery)
            if frame is not None:
                pieces += frame
                count += 1
                size += sum(map(len, frame))
            if size >= self.limits.batch_bytes:
                break
            try:
                msg = link.next_nowait()
            except trio.WouldBlock:
                break
        return join_small(pieces), count

    async def _encode_large(self, link: _Link, big: Any, stream: trio.abc.Stream,
                            delivery: _Delivery) -> list[bytes] | None:
        """Encode ``big`` in a worker thread; meanwhile, every heartbeat queued behind it is
        sent at once in the form ``heartbeat_ahead_of`` gives it (the original stays queued,
        in order, after ``big``).

        Why: encoding an 8 MiB AppendEntries took 25-205 ms per peer on the loaded 2-core
        machine, and a heartbeat queued behind it waited for all of it (and then for the
        frame's transfer and decoding): followers heard nothing from a live leader for up
        to 425 ms, past the 150-300 ms election timeout (issue 12 item 2)."""
        result: list[list[bytes] | None] = []
        stalled = False
        async with trio.open_nursery() as nursery:
            async def encode() -> None:
                result.append(await trio.to_thread.run_sync(self._encode, link, big))
                nursery.cancel_scope.cancel()

            nursery.start_soon(encode)
            while not stalled:
                msg = await link.queue_out.receive()
                link.held.append(msg)
                ahead = heartbeat_ahead_of(big, msg)
                frame = self._encode(link, ahead) if ahead is not None else None
                if frame is None:
                    continue
                delivery.sending(sum(map(len, frame)), trio.current_time())
                # Shielded: a frame cut short by the encoder's cancel would break the stream.
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self.limits.stall_timeout) as send:
                        await _send_pieces(stream, frame)
                stalled = send.cancelled_caught
            await trio.sleep_forever()  # stalled: the encode finishes, then the link closes
        if stalled:
            raise trio.TooSlowError  # as a stalled send_all in _send_loop: the link closes
        # And one right before it: the follower's election timer then starts afresh when the
        # large frame starts to arrive, not up to a heartbeat interval earlier.
        lead = heartbeat_ahead_of(big, _heartbeat_of(big))
        frame = self._encode(link, lead) if lead is not None else None
        if frame is not None:
            delivery.sending(sum(map(len, frame)), trio.current_time())
            with trio.fail_after(self.limits.stall_timeout):
                await _send_pieces(stream, frame)
        return result[0]

    def _encode(self, link: _Link, msg: Any, bulk: int | None = None) -> list[bytes] | None:
        """``msg``'s frame as pieces (``wire.record.encode_pieces``: a big value is a piece
        of its own, by reference; a small message is one piece), or None (counted, logged)
        if it cannot be sent. ``bulk`` is ``_bulk_bytes(msg)`` if the caller has it.

        A message whose bulk is under BIG_BYTES is packed whole by ``encode`` (the same
        bytes): ``encode_pieces`` first walks every field looking for a big value, which
        made a one-entry AppendEntries cost about three times as much to encode."""
        try:
            if bulk is None:
                bulk = _bulk_bytes(msg)
            if bulk >= BIG_BYTES:
                payload = encode_pieces(msg)
            elif type(msg) is AppendEntries and len(msg.entries) >= SHARE_ENTRIES:
                payload = [self._appends.encode(msg)]  # entries packed once for all links
            else:
                payload = [encode(msg)]
        except (ProtocolError, TypeError, ValueError) as exc:
            link.dropped += 1
            self._throttle.log(("unencodable", type(msg).__name__), logging.ERROR,
                               "message not encodable, dropped",
                               peer=link.peer_id, type=type(msg).__name__, error=repr(exc))
            return None
        size = sum(map(len, payload))
        if size > self.limits.max_frame_size:
            link.dropped += 1
            self._warn(("oversized-out", link.peer_id), "message larger than a frame, dropped",
                       peer=link.peer_id, type=type(msg).__name__, size=size)
            return None
        return frame_pieces(payload, self.limits.max_frame_size)

    async def _watch_outbound(
        self,
        link: _Link,
        reader: _FrameReader,
        delivery: _Delivery,
        conn_scope: trio.CancelScope,
    ) -> None:
        """Read the outbound connection: the peer Acks on it, and sends its own messages on
        it while it cannot dial us. EOF, silence, or our frames unacknowledged for
        ``stall_timeout`` end the connection (and so redial)."""
        lim = self.limits
        heard = trio.current_time()
        try:
            while True:
                try:
                    frame: bytes | None = await reader.next(lim.keepalive_interval)
                except trio.TooSlowError:
                    frame = b""  # no frame this interval: check the deadlines below
                if frame is None:
                    self._debug("link closed by peer", peer=link.peer_id)
                    break
                now = trio.current_time()
                if frame:
                    msg = await self._decode_from(link, frame)
                    heard = now
                    if isinstance(msg, Ack):
                        delivery.ack(msg.received, now)
                        link.keepalives += 1
                    else:  # the peer's messages, while it cannot dial us (see _ack_back)
                        self._check_message(link, msg)
                        await self._deliver(msg)
                        link.received += 1
                        self._notify()
                if now - heard >= lim.stall_timeout:
                    self._warn(("silent", link.peer_id), "link silent, closing",
                               peer=link.peer_id, seconds=lim.stall_timeout,
                               dropped=link.drop_queued())  # stale by the next link
                    break
                if delivery.stalled_for(now) >= lim.stall_timeout:
                    self._warn(("unacked", link.peer_id),
                               "sent bytes not acknowledged, closing link", peer=link.peer_id,
                               seconds=lim.stall_timeout, sent=delivery.sent,
                               acked=delivery.acked, dropped=link.drop_queued())
                    break
        except ProtocolError as exc:
            self._protocol_error(link.peer_id, link.addr, exc)
        except CONNECTION_ERRORS as exc:
            self._debug("link down", peer=link.peer_id, error=_describe(exc))
        self._notify()
        conn_scope.cancel()

    # -- inbound connections -------------------------------------------------------------

    async def _handle_inbound(self, tcp: trio.SocketStream) -> None:
        """One accepted connection: TLS and Hello handshakes, then receive until it ends.

        trio.serve_listeners closes the TCP stream when this returns; a TLS stream owns
        the socket once its handshake is done, so it is closed here (forcefully, as an
        outbound link: close_notify could block on a stalled peer)."""
        opened: list[trio.abc.Stream] = []
        try:
            await self._inbound(tcp, opened)
        finally:
            for stream in opened:
                await trio.aclose_forcefully(stream)

    async def _inbound(self, tcp: trio.SocketStream, opened: list[trio.abc.Stream]) -> None:
        remote = _remote(tcp)
        lim = self.limits
        _tune_socket(tcp, lim.stall_timeout)
        stream: trio.abc.Stream = tcp
        phase = "Hello"  # what a timeout interrupted, for the log
        try:
            with trio.fail_after(lim.hello_timeout):
                if self._tls is not None:
                    phase = "TLS handshake"
                    try:
                        stream = await tls_handshake(tcp, self._tls.server, server_side=True)
                        opened.append(stream)
                    except trio.BrokenResourceError as exc:
                        self.tls_failures += 1
                        self._warn(("tls-in", remote[0]), "peer TLS handshake failed",
                                   remote=remote, reason=_describe(exc.__cause__ or exc))
                        self._notify()
                        return
                    phase = "Hello"
                else:
                    stream = PlainStream.adopt(tcp)
                    opened.append(stream)
                # Until its Hello (and Proof) are checked a connection may send only a
                # small frame: a stranger must not make us buffer max_frame_size bytes
                # (17 MiB by default) per connection for the whole handshake timeout.
                reader = _FrameReader(stream, HELLO_MAX_FRAME)
                frame = await reader.next()
                if frame is None:
                    self._debug("closed before Hello", remote=remote)
                    return
                hello = _decode(frame)
                if not isinstance(hello, Hello):
                    raise ProtocolError(f"expected Hello, got {type(hello).__name__}")
                problem = self._check_hello(hello, expect=None)
                if problem:
                    self.refused_inbound += 1
                    self._warn(("refused", remote[0], hello.node_id), "refused peer",
                               remote=remote, node_id=hello.node_id, reason=problem)
                    self._notify()
                    await stream.send_all(encode_frame(encode(Refused(problem))))
                    return
                if self._secret is None:
                    await stream.send_all(self._hello_frame)
                else:
                    phase = "Proof"
                    failure = await self._authenticate_dialer(stream, reader, hello)
                    if failure:
                        self.auth_failures += 1
                        self._warn(("auth-in", remote[0]), "peer failed authentication",
                                   remote=remote, node_id=hello.node_id, reason=failure)
                        self._notify()
                        return
                # Authenticated (or no secret): full-size frames from here on.
                reader.allow(lim.max_frame_size)
        except trio.TooSlowError:
            reason = f"no {phase} within {lim.hello_timeout:g} s"
            if phase == "TLS handshake":
                self.tls_failures += 1
                self._warn(("tls-in", remote[0]), "peer TLS handshake failed",
                           remote=remote, reason=reason)
            elif phase == "Proof":
                self.auth_failures += 1
                self._warn(("auth-in", remote[0]), "peer failed authentication",
                           remote=remote, reason=reason)
            else:
                self._debug("no Hello in time", remote=remote)
            self._notify()
            return
        except ProtocolError as exc:
            self._protocol_error(None, remote, exc)
            return
        except CONNECTION_ERRORS as exc:
            self._debug("inbound handshake failed", remote=remote, error=_describe(exc))
            return
        self.accept_gate.handshaken(tcp)
        link = self._links.get(hello.node_id)
        if link is None:  # removed while we were replying
            return
        await self._serve_inbound(link, hello, stream, reader)

    async def _authenticate_dialer(
        self, stream: trio.abc.Stream, reader: _FrameReader, hello: Hello
    ) -> str:
        """Listener side: answer with our Hello and Proof, then check the dialer's Proof.
        Returns why it failed ("" once the dialer has proved it knows the secret)."""
        assert self._secret is not None
        ours = peer_auth.new_nonce()
        mine = peer_auth.proof(self._secret, peer_auth.LISTENER, hello.nonce, ours,
                               self.node_id, self.cluster_id)
        await stream.send_all(self._hello_frame_with(ours) + encode_frame(encode(Proof(mine))))
        frame = await reader.next()
        if frame is None:
            return "closed before its Proof"
        msg = _decode(frame)
        if not isinstance(msg, Proof):
            return f"expected Proof, got {type(msg).__name__}"
        if not peer_auth.verify(self._secret, msg.mac, peer_auth.DIALER, hello.nonce, ours,
                                hello.node_id, self.cluster_id):
            return "wrong proof: it does not know the peer secret"
        return ""

    async def _serve_inbound(
        self, link: _Link, hello: Hello, stream: trio.abc.Stream, reader: _FrameReader
    ) -> None:
        # The peer has one outbound connection at a time: a newer one means the older is
        # dead, and closing it keeps two receivers from interleaving the peer's messages.
        if link.inbound_scope is not None:
            link.inbound_scope.cancel()
        scope = link.inbound_scope = trio.CancelScope()
        link.client_addr = hello.client_addr
        self._debug("inbound up", peer=link.peer_id)
        self._notify()
        self._watch_activity(link, reader)
        try:
            with scope:
                async with trio.open_nursery() as conn:
                    conn.start_soon(self._ack_back, link, stream, reader, conn.cancel_scope)
                    conn.start_soon(self._close_when_silent, link, reader, conn.cancel_scope)
                    await self._receive_loop(link, reader)
                    conn.cancel_scope.cancel()
        finally:
            if link.inbound_scope is scope:
                link.inbound_scope = None
                self._maybe_gone(link)
            self._notify()

    async def _close_when_silent(self, link: _Link, reader: _FrameReader,
                                 conn_scope: trio.CancelScope) -> None:
        """End the inbound connection once ``_receive_loop`` has waited ``stall_timeout``
        for bytes (its reads are watched, not each given a deadline)."""
        await reader.watch_silence(self.limits.stall_timeout)
        self._debug("inbound silent, closing", peer=link.peer_id,
                    seconds=self.limits.stall_timeout)
        conn_scope.cancel()

    async def _receive_loop(self, link: _Link, reader: _FrameReader) -> None:
        try:
            while True:
                frame = await reader.next(watched=True)  # (_close_when_silent times it)
                if frame is None:
                    self._debug("inbound closed by peer", peer=link.peer_id)
                    return
                # A small frame (nearly all: acks, heartbeats) is decoded and delivered
                # here, without the two coroutines _decode_from and _deliver cost (neither
                # yields for it).
                msg = (_decode(frame) if len(frame) < OFF_LOOP_BYTES
                       else await self._decode_from(link, frame))
                if isinstance(msg, Ping):
                    link.keepalives += 1
                    self._notify()
                    continue
                self._check_message(link, msg)
                if self._deliver_now is not None:
                    self._deliver_now(msg)
                else:
                    await self._deliver(msg)
                link.received += 1
                self._notify()
        except trio.TooSlowError:
            self._debug("inbound silent, closing", peer=link.peer_id,
                        seconds=self.limits.stall_timeout)
        except ProtocolError as exc:
            self._protocol_error(link.peer_id, link.addr, exc)
        except CONNECTION_ERRORS as exc:
            self._debug("inbound down", peer=link.peer_id, error=_describe(exc))

    async def _ack_back(
        self,
        link: _Link,
        stream: trio.abc.Stream,
        reader: _FrameReader,
        conn_scope: trio.CancelScope,
    ) -> None:
        """Ack what arrived, every keepalive_interval: the dialer learns both that we live
        and that its frames reach us, and closes the link within stall_timeout otherwise.

        While our own link to this peer is down, our messages to it go out here too. A peer
        can reach us when we cannot reach it: a container reconnected to its network has a
        new address and may have lost the name we dial (issue 20: the others' answers had no
        way back, and the old leader stayed out for good). The connection it opened is then
        the one path that works; the dialer delivers what it reads on it (_watch_outbound).
        """
        lim = self.limits
        nothing = object()
        next_ack = trio.current_time() + lim.keepalive_interval
        try:
            while True:
                first: Any = nothing
                # Only once our own link has been down for a while (a redial usually
                # succeeds at once): messages split over two connections may overtake
                # each other, which Raft tolerates but needs no more often than this.
                reachable = trio.current_time() - link.down_since < lim.stall_timeout
                if link.connected or reachable:
                    await trio.sleep_until(next_ack)
                else:
                    with trio.move_on_at(next_ack):
                        first = await link.next()
                data: list[bytes] = []
                count = 0
                if first is not nothing:
                    data, count = await self._encode_batch(link, first)
                now = trio.current_time()
                if now >= next_ack:
                    data.append(encode_frame(encode(Ack(reader.received))))
                    next_ack = now + lim.keepalive_interval
                if data:
                    with trio.fail_after(lim.stall_timeout):
                        await _send_pieces(stream, data)
                if count:
                    link.sent += count
                    self._notify()
        except CONNECTION_ERRORS as exc:
            self._debug("inbound ping failed", peer=link.peer_id, error=_describe(exc))
        conn_scope.cancel()

    # -- signals for the core: a peer's frame in progress, a peer gone ----------------------

    def _watch_activity(self, link: _Link, reader: _FrameReader) -> None:
        """Report bytes of an incomplete frame from ``link``'s peer as its activity."""
        if self._on_activity is not None:
            activity, peer = self._on_activity, link.peer_id
            reader.on_partial = lambda: activity(peer)

    async def _decode_from(self, link: _Link, frame: bytes) -> Any:
        """Decode a frame from ``link``'s peer (``_decode_off_loop``); while a large one is
        decoded in its worker thread (tens of ms for 8 MiB on a loaded machine), report the
        peer's activity every ACTIVITY_INTERVAL."""
        activity = self._on_activity
        if activity is None or len(frame) < OFF_LOOP_BYTES:
            return await _decode_off_loop(frame)
        result: list[Any] = []
        async with trio.open_nursery() as nursery:
            async def decode() -> None:
                try:
                    result.append(await trio.to_thread.run_sync(_decode, frame))
                except ProtocolError as exc:
                    result.append(exc)
                nursery.cancel_scope.cancel()

            nursery.start_soon(decode)
            while True:
                activity(link.peer_id)
                await trio.sleep(ACTIVITY_INTERVAL)
        if isinstance(result[0], ProtocolError):
            raise result[0]
        activity(link.peer_id)  # and once more now that it is decoded
        return result[0]

    def _maybe_gone(self, link: _Link) -> None:
        """Tell the core the peer's process is gone when the evidence says so: no inbound
        connection from it, ours down, and our last dial refused (a live node listens on its
        peer port; a killed one's kernel refuses at once)."""
        if (self._on_peer_gone is not None and link.dial_refused and not link.connected
                and link.inbound_scope is None and self._links.get(link.peer_id) is link):
            self._on_peer_gone(link.peer_id)

    def _check_hello(self, hello: Hello, *, expect: int | None) -> str:
        """Why ``hello`` is unacceptable ("" if it is fine). ``expect``: the id we dialled."""
        if hello.version != PROTOCOL_VERSION:
            return f"protocol version {hello.version} is not {PROTOCOL_VERSION}"
        if hello.cluster_id != self.cluster_id:
            return (f"cluster id {hello.cluster_id!r} is not {self.cluster_id!r} (another "
                    f"cluster, or members bootstrapped from different --cluster lists: give "
                    f"them one --cluster-id)")
        if expect is not None:
            if hello.node_id != expect:
                return f"dialled node {expect}, reached node {hello.node_id}"
        elif hello.node_id == self.node_id:
            return f"node id {hello.node_id} is this node's own"
        elif hello.node_id not in self._links:
            return f"node id {hello.node_id} is not a member"
        if self._secret is not None and len(hello.nonce) != peer_auth.NONCE_BYTES:
            return ("peer authentication required: the peer sent no nonce "
                    "(is its --peer-secret-file set?)")
        if self._secret is None and hello.nonce:
            return "the peer wants peer authentication; this node has no --peer-secret-file"
        return ""

    def _check_message(self, link: _Link, msg: Any) -> None:
        if isinstance(msg, Hello | Refused | Proof) or (
            self._message_types is not None and not isinstance(msg, self._message_types)
        ):
            raise ProtocolError(f"unexpected {type(msg).__name__} after the handshake")
        src, dst = getattr(msg, "src", None), getattr(msg, "dst", None)
        if src != link.peer_id:
            raise ProtocolError(f"message from src {src!r} on node {link.peer_id}'s link")
        if dst != self.node_id:
            raise ProtocolError(f"message for dst {dst!r} reached node {self.node_id}")
        if self._validate is not None:
            self._validate(msg)

    # -- logging and notification --------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _protocol_error(self, peer_id: int | None, where: Any, exc: Exception) -> None:
        self.bad_connections += 1
        self._notify()
        host = where[0] if isinstance(where, tuple) else where
        self._warn(("protocol", peer_id, host),
                   "protocol error, connection closed", peer=peer_id, remote=where,
                   error=str(exc))

    def _warn(self, key: Any, name: str, **fields: Any) -> None:
        self._throttle.log(key, logging.WARNING, name, node=self.node_id, **fields)

    def _debug(self, name: str, **fields: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(name, extra={"fields": {"node": self.node_id, **fields}})


def _remote(stream: trio.SocketStream) -> tuple[str, int]:
    try:
        host, port, *_ = stream.socket.getpeername()
        return host, port
    except OSError:
        return "?", 0


def _refused(exc: BaseException) -> bool:
    """A dial refused by the peer's host (ECONNREFUSED: nothing listens at that port), as
    trio reports it: the error itself or, for ``open_tcp_stream``, every attempt's."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    cause = exc.__cause__
    return (isinstance(cause, BaseExceptionGroup) and bool(cause.exceptions)
            and all(isinstance(e, ConnectionRefusedError) for e in cause.exceptions))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
