"""The client port: RESP2/RESP3/inline on one TCP port, pipelined and answered in order.

Each connection is two tasks in its own nursery: a reader that parses commands and turns
each into a ``Pending`` (without waiting for earlier ones, so a pipeline of writes is
proposed at once and shares fsyncs), and a writer that awaits the Pendings in order and
sends the replies as they come, coalescing small ready ones into pieces of about 64 KiB
(a large reply is encoded and sent a piece at a time, never whole).

Every buffer is bounded (README "Limits", raftkv.server.limits): a command larger than
``max_request_bytes`` is a protocol error; the reader stops reading while the commands it
has read and not yet seen answered exceed the query-buffer limit, or while the output
buffer is half full; replies ready and not yet sent count against the output-buffer limit,
past which the client is disconnected (a client that pipelines and never reads).

Pub/Sub messages (raftkv.server.pubsub) join the same reply queue as pushes, weighed into
the output buffer the same way, so a subscriber that does not read is disconnected at the
output-buffer limit (Redis's ``client-output-buffer-limit pubsub``); the queue holds up to
``PUSH_BACKLOG`` messages beyond the pipeline window, and a subscriber that lets more pile
up is disconnected too.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import socket
from collections import deque
from functools import partial
from typing import Any

import trio

from raftkv.kv.notify import parse_flags
from raftkv.kv.sliced import SlicedRead
from raftkv.log import event
from raftkv.node.forwarding import REPLY_DROPPED
from raftkv.node.gathered import run_bytes
from raftkv.node.log_throttle import LogThrottle
from raftkv.node.node import REMOVED, Node
from raftkv.node.pending import Pending
from raftkv.node.plain_stream import PlainStream
from raftkv.node.read_poller import ReadPoller
from raftkv.node.tls_stream import TLSStream
from raftkv.server.acl import AccessControl
from raftkv.server.auth import limit_unauthenticated, restore_limits
from raftkv.server.auth_limit import machine_of
from raftkv.server.blocked_readers import BlockedReaders
from raftkv.server.client_buffers import ClientBuffers
from raftkv.server.client_tls import ClientTLS
from raftkv.server.commands import AFTER_APPLY, KINDS, execute, is_write, run_member
from raftkv.server.connection import Connection
from raftkv.server.copy_turn import CANDIDATES as COPY_CANDIDATES
from raftkv.server.copy_turn import copies_big
from raftkv.server.gc_watch import GcWatch
from raftkv.server.limits import ClientLimits, cap_max_clients
from raftkv.server.loop_lag import LoopLagMonitor
from raftkv.server.output_buffer import reply_size
from raftkv.server.pubsub import PubSub
from raftkv.server.write_runs import RUN_WRITES, answer_run, may_join
from wire.addr import parse_addr
from wire.errors import ProtocolError
from wire.reply import Encoded, ErrorReply, SimpleString
from wire.resp import CommandParser, encode_reply, encode_reply_chunks

log = logging.getLogger("raftkv.server")

PIPELINE_WINDOW = 1024  # replies owed per connection before the reader stops reading
PUSH_BACKLOG = 10_000  # Pub/Sub messages queued for a connection on top of that
READ_CHUNK = 64 * 1024
MAX_READ_CHUNK = 1024 * 1024  # a full read left unparsed (a large argument) doubles, up to this
SEND_CHUNK = 64 * 1024  # ready replies are coalesced up to about this many bytes
# A reply already encoded (Encoded) answered later (a blocked XREAD's, from the blocked
# readers' pass) is sent directly up to this size (DirectReply): a watcher's reply on a
# busy node is 64-200 KB, and the writer-task hop cost it a task switch a round trip.
# (What the socket does not take goes through the writer.) One answered at once keeps
# SEND_CHUNK: 100 raw readers of the whole feed without BLOCK (bench_watch.py --drain
# 100) saw a slower PING, 4 runs of 4, with those sent from their readers' tasks.
DIRECT_ENCODED = 256 * 1024
# The reader and the writer pass a pipeline's commands and replies without a trip through
# the scheduler each (a trio checkpoint per command cost more than parsing it, and let the
# ready loop take a 16-command pipeline one proposal at a time); each yields at least this
# often, so one connection's long pipeline cannot hold the loop.
YIELD_EVERY = 64
# Reads done in slices (KEYS, SCAN, XRANGE, ...) that step at once on a node; the others
# wait their turn. trio runs every ready task before it looks at the network again, so 300
# connections each stepping a 1-2 ms slice held the loop 300-600 ms between two looks, past
# the election timeout (tests/bench/attack_xrange_readers.py: the leader lost its term).
SLICED_AT_ONCE = 2
# Replies encode_reply_chunks encodes in one piece anyway: the writer encodes them itself,
# without a generator per reply (a pipelined SET's +OK; issue 15).
ONE_PIECE = frozenset({SimpleString, ErrorReply, int, bool, float, type(None)})
# A plain connection accepted while at most this many are open (itself included) waits for
# its bytes with trio's own ``wait_readable``, not on the shared poller: the poller's task
# takes a step of its own (a poll and trio's re-arm of its epoll) each time the poller's
# epoll turns readable, which pays off when many connections are read in one pass, not for
# one or two clients (at one client, one of a SET's ~5.8 task steps on the leader,
# count_task_steps.py). Every later connection uses the poller, as before.
OWN_WAITS_UP_TO = 2
MAX_CLIENTS_REACHED = b"-ERR max number of clients reached\r\n"
TOO_MANY_NEW = b"-ERR too many connections that have not sent a command yet\r\n"
# Of --max-new-clients, what one source address may hold: a quarter (256 of the default
# 1,024), at least 8 (attack3: one host's 1,024 silent sockets, or TLS handshakes it never
# starts, refused every other client). A quarter, not less: clients leave the count with
# their first command, but a benchmark or a pool may open a few hundred at once from one
# host (or one NAT address), each waiting out a TLS handshake on a loaded node.
NEW_PER_SOURCE_SHARE = 4
MIN_NEW_PER_SOURCE = 8


def new_per_source(max_new_clients: int) -> int:
    """How many of ``max_new_clients`` one source address may hold."""
    return max(min(max_new_clients, MIN_NEW_PER_SOURCE), max_new_clients // NEW_PER_SOURCE_SHARE)


# The source a connection's slots count against: an IPv4 address, an IPv6 address's /64
# (one host usually owns a whole /64: counted per address, one machine would be any number
# of sources; attack4), an IPv4-mapped IPv6 address as its IPv4 address.
source_key = machine_of


# errno values that mean "out of descriptors or buffers" on accept: back off, not spin.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_BACKOFF = (0.01, 1.0)  # first and longest pause after such a failure
AFTER_ERROR_DRAIN = 1.0  # seconds to read and drop input after a protocol error

_connection_ids = itertools.count(1)


class Slot:
    """A reply owed to the client, encoded with the protocol in force when it was asked;
    ``size`` is its weight in the output buffer once ready (``weigh``)."""

    __slots__ = ("close_after", "conn", "direct", "extra", "pending", "proto", "push",
                 "server", "size")

    def __init__(self, pending: Pending, proto: int, server: ClientServer, conn: Connection,
                 close_after: bool = False, push: bool = False,
                 direct: DirectReply | None = None, extra: int = 0) -> None:
        self.pending = pending
        self.proto = proto
        self.server = server
        self.conn = conn
        self.close_after = close_after
        self.size = 0
        self.push = push  # a Pub/Sub message, not the reply to a command
        self.direct = direct  # sent by the task that answers it (``send_direct``), if it can
        self.extra = extra  # a write run's replies past the first (``Connection.run_extra``)

    def weigh(self, value: Any) -> None:
        """The callback for when the reply is ready: weigh it into the output buffer and
        disconnect the client if the buffer passes its limit. (A method of the slot, not a
        closure built for each: ~120 ns less per command, the closure's cells and the call
        that built it; p16.)"""
        size = self.size = reply_size(value)
        conn = self.conn
        conn.out_bytes += size
        server = self.server
        if value is REPLY_DROPPED:
            server.disconnect_for_dropped(conn)
        limit = server.limits.output_buffer_bytes
        if limit and conn.out_bytes > limit:
            server.disconnect_for_output(conn)
        server.buffers.add_output(conn, size)

    def send_direct(self, value: Any) -> None:
        """The callback of a reply owed with nothing before it while the writer was idle
        (``ClientServer._reply_when_ready``): send it from the task that answers it (a
        ReadIndex GET: the node's), without waking the writer. If the writer got a later
        slot first, it took this one and writes it first (DirectReply.take); if the socket
        does not take the whole reply, what is left is owed and weighed like any unsent
        reply. Runs inside ``Pending.set``: it never raises. (A method, not a closure
        built per command: ~150 ns less per unpipelined command.)"""
        direct = self.direct
        if direct is None or direct.waiting is not self:  # (None: not sent directly)
            return  # the writer took it
        if value is REPLY_DROPPED:
            self.server.disconnect_for_dropped(self.conn)
            return
        try:
            sent, rest = direct.try_send(value, self.proto, DIRECT_ENCODED)
        except Exception:  # (broken socket...): the writer meets it in its own task
            sent, rest = False, None
        conn = self.conn
        if sent:
            direct.waiting = None
            conn.owed -= 1
            conn.run_extra -= self.extra
            return
        owed = (self if rest is None
                else Slot(Pending.of(Encoded(rest)), self.proto, self.server, conn,
                          extra=self.extra))
        if conn.owed > 1:  # the writer has a later slot: it takes (and weighs) this first
            direct.waiting = owed
            return
        direct.waiting = None
        owed.weigh(owed.pending.value)
        send = direct.send  # (set by ClientServer.handle before any command is read)
        if send is not None:
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError,
                                     trio.BrokenResourceError):
                send.send_nowait(owed)  # (closed: the connection is gone)


class DirectReply:
    """A reply sent without the connection's writer task (plain TCP or TLS).

    Handing each reply to the writer task cost a task switch (a scheduler pass) per round
    trip; a client that waits for each reply (PING, GET, a watcher's XREAD) paid it on
    every command. When the writer is ``idle`` (waiting for a slot with nothing unsent)
    and the connection owes no earlier reply, a reply answered at once is sent by the
    reader that parsed it, and one answered later (``waiting``) by the task that answers
    it (ClientServer._reply_when_ready), each with one non-blocking ``send``; replies stay
    in order. A reply too large for one piece (over ``DIRECT_ENCODED`` if already
    encoded and answered later), or a read done in slices, goes through the writer as
    before; so does what the socket did not take (``try_send``'s rest), weighed into the
    output buffer like any unsent reply, so the output-buffer limits see every byte not
    yet written.
    """

    __slots__ = ("idle", "send", "socket", "tls", "waiting")

    def __init__(self, sock: socket.socket | None, tls: TLSStream | None = None,
                 send: trio.MemorySendChannel[Slot] | None = None) -> None:
        self.socket = sock
        # The writer's queue, for what the socket does not take (ClientServer.handle).
        self.send = send
        # On a TLS connection the stream encrypts and sends (TLSStream.send_nowait); the
        # records it could not send wait in it, and an empty rest (weighed as nothing, at
        # most one reply) makes the writer send them.
        self.tls = tls
        self.idle = False  # the writer waits for a slot, with nothing left to send
        # A reply owed (counted in ``owed``) and not in the writer's queue: sent when it is
        # ready unless the writer gets a later slot first, which makes it take this one
        # (``take``) and write it before that slot, in order.
        self.waiting: Slot | None = None

    def take(self) -> Slot | None:
        """The writer's: the reply owed ahead of the slot it just got, now its to write."""
        slot, self.waiting = self.waiting, None
        return slot

    def try_send(self, value: Any, proto: int, encoded: int = SEND_CHUNK
                 ) -> tuple[bool, bytes | None]:
        """(True, None): ``value`` was sent whole; (False, rest): the socket took only
        part of it (``rest`` is owed); (False, None): not tried, the writer sends it.
        ``encoded``: the largest reply already encoded to try (``DIRECT_ENCODED`` from
        the blocked readers' pass, which yields to the loop every few ms)."""
        t = type(value)
        if t is Encoded:  # (nothing to encode: a watcher's shared XREAD reply)
            if len(value.data) > encoded:
                return False, None
            data = value.data
        elif t in ONE_PIECE:  # (+OK, an int...: encoded, not weighed first)
            data = encode_reply(value, proto)
            if len(data) > SEND_CHUNK:  # (a script's {ok=...} or {err=...} can be large)
                return False, None
        elif isinstance(value, SlicedRead) or reply_size(value) > SEND_CHUNK:
            return False, None
        else:
            data = encode_reply(value, proto)
        if self.tls is not None:
            return (True, None) if self.tls.send_nowait(data) else (False, b"")
        assert self.socket is not None
        try:
            sent = self.socket.send(data)
        except BlockingIOError:
            return False, data
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket error: {exc}") from exc
        return (True, None) if sent == len(data) else (False, data[sent:])


class ProgramOrder:
    """Per-connection order between writes and reads, as a Redis user expects.

    Consecutive writes are proposed at once (the log orders them) and consecutive reads
    share read-index rounds; but a read after a write waits until the write is answered
    (so it sees it), and a write after a read waits for the read (so the read cannot see
    a later command's effect). Only the switch between the two costs a round trip.
    """

    __slots__ = ("kind", "outstanding")

    def __init__(self) -> None:
        self.kind: bool | None = None
        self.outstanding: deque[Pending] = deque()

    async def before(self, write: bool | None) -> None:
        if write is None:
            return
        if write is not self.kind:
            for pending in self.outstanding:
                await pending.wait()
            self.outstanding.clear()
            self.kind = write

    async def settle_writes(self) -> bool:
        """Before a local command that must see this connection's writes (``AFTER_APPLY``):
        wait for the writes outstanding; whether any came since the last read. The
        command is not tracked itself (later commands do not wait for it)."""
        if self.kind is not True:
            return False
        for pending in self.outstanding:
            await pending.wait()
        self.outstanding.clear()
        self.kind = None  # answered: the next command need not wait for them again
        return True

    def track(self, pending: Pending) -> None:
        if self.kind is not None and not pending.done:
            outstanding = self.outstanding
            while outstanding and outstanding[0].done:  # answers come back mostly in order
                outstanding.popleft()
            outstanding.append(pending)


class ClientServer:
    def __init__(self, node: Node, max_clients: int | None = None) -> None:
        self.node = node
        settings = node.settings
        if max_clients is None:
            max_clients = cap_max_clients(settings.max_clients)
        self.limits = ClientLimits.from_settings(settings, max_clients)
        self.connections: dict[int, Connection] = {}
        self.acl = AccessControl.configure(settings.requirepass, settings.acl_file)
        # This node's subscriptions; applied entries' messages and keyspace events reach
        # them through the applier (the CLI checked the flags).
        self.pubsub = PubSub(parse_flags(settings.notify_keyspace_events) or 0,
                             gone=lambda: REMOVED if node.removed else None,
                             on_listening=node.applier.listen)
        node.applier.observe(self.pubsub.applied, listening=False)
        self.tls = ClientTLS.from_settings(settings)  # None: plain text (client_tls.py)
        # XREAD BLOCK (streams.py); its window grows with the readers waiting.
        self.blocked = BlockedReaders(settings.watch_max_blocked,
                                      gone=lambda: REMOVED if node.removed else None)
        node.applier.on_changes.append(self.blocked.changes_applied)
        self.new_clients = 0  # connections that have not sent a complete command yet
        # The same per source (source_key), oldest first, each with the scope that evicts it.
        self._new_by_source: dict[str, dict[int, trio.CancelScope]] = {}
        self.loop_lag = LoopLagMonitor()
        self.sliced = trio.CapacityLimiter(SLICED_AT_ONCE)  # (FIFO: each gets its turn)
        self.copy_turn = trio.Semaphore(1)  # one large APPEND/SETRANGE at a time (FIFO)
        self.gc_watch = GcWatch()  # full collections: a cause of loop stalls
        self.stats = {"rejected_connections": 0, "client_output_buffer_disconnects": 0,
                      "client_protocol_errors": 0, "client_timeouts": 0,
                      "accept_capacity_errors": 0, "client_buffer_total_disconnects": 0,
                      "client_reply_dropped_disconnects": 0}
        self._throttle = LogThrottle(log, 10.0)
        self.buffers = ClientBuffers(self.limits.buffer_total_bytes, self._disconnect_for_total)
        node.metrics.add_client_port(lambda: len(self.connections))

    def info(self) -> dict[str, Any]:
        tls = {"client_tls_handshake_failures": self.tls.failures} if self.tls else {}
        return {**self.stats, **self.loop_lag.info(), **self.gc_watch.info(),
                **self.blocked.info(),
                **self.acl.stats,
                **self.pubsub.info(), **tls}

    def clients_info(self) -> dict[str, Any]:
        """INFO's clients section."""
        return {"connected_clients": len(self.connections),
                "blocked_clients": len(self.blocked),  # XREAD ... BLOCK (Redis's field)
                "clients_without_command": self.new_clients,
                "maxclients": self.limits.max_clients,
                "client_buffers_bytes": self.buffers.total,
                "client_buffer_total_limit": self.buffers.limit}

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT: the client-port counters and the loop-lag maximum."""
        self.stats = dict.fromkeys(self.stats, 0)
        self.pubsub.reset_stats()
        self.blocked.reset_stats()
        self.loop_lag.reset()
        self.gc_watch.reset()

    async def handle(self, stream: Any) -> None:
        """Serve one connection (a trio.SocketStream; TLS is layered on here)."""
        limits = self.limits
        if len(self.connections) >= limits.max_clients:
            await self._refuse(stream, MAX_CLIENTS_REACHED)
            return
        try:
            peer = stream.socket.getpeername()
            addr, source = f"{peer[0]}:{peer[1]}", source_key(str(peer[0]))
            _enable_keepalive(stream.socket)
        except OSError:
            addr, source = "?", "?"
        from_source = len(self._new_by_source.get(source, ()))
        if (from_source >= new_per_source(limits.max_new_clients)
                or (self.new_clients >= limits.max_new_clients
                    and not self._evict_for(from_source))):
            await self._refuse(stream, TOO_MANY_NEW)
            return
        conn = Connection(next(_connection_ids), addr, server=self,
                          user=self.acl.initial_user())
        conn.source = source
        self.connections[conn.id] = conn
        self.buffers.open(conn)
        self.new_clients += 1
        evict = trio.CancelScope()
        self._new_by_source.setdefault(source, {})[conn.id] = evict
        try:
            with evict:
                if self.tls is not None:
                    stream = await self.tls.accept(stream, addr)  # within the handshake deadline
                    if stream is None:
                        return
                else:  # a command and its reply without a scheduler pass each (plain_stream)
                    stream = PlainStream.adopt(
                        stream, ReadPoller.current()
                        if len(self.connections) > OWN_WAITS_UP_TO else None)
                async with stream, trio.open_nursery() as nursery:
                    conn.scope = nursery.cancel_scope
                    send, recv = trio.open_memory_channel[Slot](PIPELINE_WINDOW + PUSH_BACKLOG)
                    conn.subs.push = self._pusher(conn, send)
                    direct = (DirectReply(stream.socket, send=send)
                              if type(stream) is PlainStream
                              else DirectReply(None, stream, send) if type(stream) is TLSStream
                              else None)
                    nursery.start_soon(self._writer, stream, conn, recv, nursery.cancel_scope,
                                       direct)
                    try:
                        await self._reader(stream, conn, send, direct)
                    finally:
                        conn.input_ended()  # no more commands: blocked XREADs stop waiting
            if evict.cancelled_caught:
                await trio.aclose_forcefully(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            # A client that resets or vanishes (trio wraps it in an ExceptionGroup).
            event(log, logging.DEBUG, "client connection lost", conn=conn.id,
                  error=group.exceptions[0])
        except* Exception:
            # A bug in serving one connection must not take the node down with it.
            log.exception("client connection failed", extra={"fields": {"conn": conn.id}})
        finally:
            conn.subs.push = None
            self.pubsub.drop(conn)
            del self.connections[conn.id]
            self.buffers.close(conn)
            if not conn.registered:
                self._not_new(conn)

    async def _refuse(self, stream: trio.SocketStream, reply: bytes) -> None:
        """Answer a connection we cannot take, as Redis does, and close it at once. On a TLS
        port it is only closed, as Redis does too: no handshake was made, and a refusal in
        plain text reached a TLS client as a garbled record ('wrong version number')."""
        self.stats["rejected_connections"] += 1
        self._throttle.log(("refused", reply), logging.WARNING, "client connection refused",
                           reason=reply[5:-2].decode(), clients=len(self.connections),
                           new_clients=self.new_clients)
        if self.tls is None:
            with (trio.move_on_after(0.1),
                  contextlib.suppress(trio.BrokenResourceError, OSError)):
                await stream.send_all(reply)
        with contextlib.suppress(trio.BrokenResourceError, OSError):
            await stream.aclose()

    def _register(self, conn: Connection) -> None:
        conn.registered = True
        self._not_new(conn)

    def _not_new(self, conn: Connection) -> None:
        """``conn`` leaves the count of connections without a first command (once: an
        evicted connection left it when it was evicted)."""
        pending = self._new_by_source.get(conn.source)
        if pending is None or pending.pop(conn.id, None) is None:
            return
        self.new_clients -= 1
        if not pending:
            del self._new_by_source[conn.source]

    def _evict_for(self, holding: int) -> bool:
        """The slots are all taken and a newcomer's source holds ``holding`` of them: close
        the oldest silent connection of the source that holds the most, if that is more
        than the newcomer's would hold once admitted (fair shares: sources flooding the
        port evict each other, never a source with fewer; attack4: four sources at their
        quarter refused every other client). False if no source holds more."""
        largest = max(self._new_by_source.items(), key=lambda item: len(item[1]), default=None)
        if largest is None or len(largest[1]) <= holding + 1:
            return False
        source, pending = largest
        conn_id = next(iter(pending))
        pending.pop(conn_id).cancel()
        if not pending:
            del self._new_by_source[source]
        self.new_clients -= 1
        victim = self.connections.get(conn_id)
        self._throttle.log(("evicted", source), logging.WARNING,
                           "client connection without a command closed for a newcomer from "
                           "a source holding fewer", addr=victim.addr if victim else "?")
        return True

    async def _reader(
        self, stream: trio.SocketStream, conn: Connection, send: trio.MemorySendChannel[Slot],
        direct: DirectReply | None = None,
    ) -> None:
        limits = self.limits
        parser = CommandParser(max_bulk_len=limits.max_bulk_len,
                               max_request_len=limits.max_request_bytes)
        anonymous = limit_unauthenticated(parser, conn)  # small commands until AUTH
        idle = limits.idle_timeout or math.inf
        order = ProgramOrder()
        # Commands read and not yet answered, with their size: the query buffer.
        inflight: deque[tuple[Pending, int]] = deque()
        inflight_bytes = 0
        query_limit = limits.query_buffer_bytes
        read_size = READ_CHUNK
        burst = 0  # commands handled since the reader last yielded
        out_limit = limits.output_buffer_bytes  # _wait_for_output_room's, checked inline
        node = self.node
        # (Per connection, not per command: a call less for each when metrics are off.)
        track = node.metrics.track if node.metrics.enabled else None
        # Pipelined plain writes proposed together (write_runs.py): at most this many.
        run_limit = min(node.settings.write_run, node.settings.max_keys_per_command)
        async with send:
            while not conn.closing:
                if out_limit and conn.out_bytes > out_limit // 2:  # (else: no coroutine)
                    await self._wait_for_output_room(conn)
                timeout = idle if conn.registered else limits.first_command_timeout
                if timeout == math.inf:  # no idle timeout: no cancel scope per read either
                    data = await stream.receive_some(read_size)
                    timed_out = False
                else:
                    with trio.move_on_after(timeout) as idle_scope:
                        data = await stream.receive_some(read_size)
                    timed_out = idle_scope.cancelled_caught
                burst = 0
                if timed_out:
                    if conn.registered and (conn.owed or conn.subs.count):
                        continue  # waiting for replies or messages: not idle (Redis too)
                    self.stats["client_timeouts"] += 1
                    event(log, logging.DEBUG, "closing idle client", conn=conn.id,
                          registered=conn.registered)
                    return
                if not data:
                    return
                try:
                    parser.feed(data)
                    self.buffers.set_query(conn, parser.buffered + inflight_bytes
                                           + conn.tx.held + conn.subs.name_bytes)
                    carried: tuple[list[bytes], ErrorReply | None] | None = None
                    while True:
                        if carried is None:
                            args = parser.next_command()
                            if args is None:
                                break
                            answer = None
                        else:  # the command a run stopped at, refused (answer) or not
                            args, answer = carried
                            carried = None
                        if not conn.registered:
                            self._register(conn)
                        size = sum(map(len, args))
                        while inflight and (inflight[0][0].done
                                            or inflight_bytes + size > query_limit):
                            pending, n = inflight.popleft()
                            if not pending.done:  # (a done one: no coroutine to await)
                                await pending.wait()
                            inflight_bytes -= n
                        barrier = None
                        name = args[0].lower()
                        if name in AFTER_APPLY and await order.settle_writes():
                            barrier = await self._applied_barrier()
                        write = KINDS.get(name) if name != b"raft" else is_write(args, name)
                        if write is not None and write is not order.kind:
                            await order.before(write)  # (else: nothing to wait for)
                        while conn.owed - conn.pushes + conn.run_extra >= PIPELINE_WINDOW:
                            await conn.drained().wait()  # the writer sent one more
                        turn = None  # a large copy waits for its turn (copy_turn.py)
                        if name in COPY_CANDIDATES and copies_big(node.kv, name, args,
                                                                  conn.tx.queue or ()):
                            turn = self.copy_turn
                            await turn.acquire()
                        # (From here to send() nothing yields, so a SUBSCRIBE's
                        # confirmation is queued before any message it lets in.)
                        run = None
                        if answer is not None:  # (a write: no barrier, no turn)
                            pending = Pending.of(answer)
                        elif turn is None:
                            # (A write that may join a run: never a barrier, AFTER_APPLY's.)
                            if (name in RUN_WRITES and anonymous is None
                                    and conn.tx.queue is None and may_join(args, name)):
                                answer = run_member(node, conn, args, name)
                                if answer is not None:
                                    pending = Pending.of(answer)
                                elif run_limit == 1 or (after := _next_or_none(parser)) is None:
                                    pending = node.submit_run([args], size)  # (alone)
                                else:
                                    run, size, carried = self._gather_run(
                                        parser, conn, args, after, size, run_limit,
                                        query_limit - inflight_bytes)
                                    pending = node.submit_run(run, size)
                                    if len(run) > 1:
                                        reply = Pending()
                                        pending.add_callback(
                                            partial(answer_run, reply, len(run), conn.proto))
                                        pending = reply
                            else:
                                pending = (execute(node, conn, args, name) if barrier is None
                                           else Pending.of(barrier))
                        else:  # (never a barrier: no AFTER_APPLY command copies)
                            try:
                                pending = execute(node, conn, args, name)
                            except BaseException:
                                turn.release()
                                raise
                            pending.add_callback(partial(_release, turn))  # once answered
                        if anonymous is not None:
                            anonymous = restore_limits(parser, conn, anonymous)
                        if track is not None:
                            if run is None:
                                track(args[0], pending)
                            else:
                                for command in run:
                                    track(command[0], pending)
                        order.track(pending)
                        if not pending.done:
                            inflight.append((pending, size))
                            inflight_bytes += size
                        # With the writer idle and nothing owed before it, the reply is
                        # sent without the writer task: from here if answered at once,
                        # else when it is (_reply_when_ready); only what the socket does
                        # not take goes through the writer.
                        sent = rest = None
                        extra = 0 if run is None else len(run) - 1
                        if (direct is not None and direct.idle and not conn.owed
                                and not conn.closing):
                            if pending.done:
                                # (A drop answered before this look goes the writer's way:
                                # Slot.weigh disconnects the client; sent here, the client
                                # got the drop's text and stayed connected.)
                                if pending.value is not REPLY_DROPPED:
                                    sent, rest = direct.try_send(pending.value, conn.proto)
                            else:
                                self._reply_when_ready(
                                    conn, direct,
                                    Slot(pending, conn.proto, self, conn, direct=direct,
                                         extra=extra))
                                conn.run_extra += extra
                                sent = True
                        if not sent:
                            slot = (Slot(pending, conn.proto, self, conn, conn.closing,
                                         extra=extra)
                                    if rest is None else
                                    Slot(Pending.of(Encoded(rest)), conn.proto, self, conn,
                                         extra=extra))
                            slot.pending.add_callback(slot.weigh)
                            conn.owed += 1
                            conn.run_extra += extra
                            try:  # no trip through the scheduler per pipelined command
                                send.send_nowait(slot)
                            except trio.WouldBlock:  # (Pub/Sub pushes filled the queue)
                                await send.send(slot)
                        if conn.closing:
                            return
                        if out_limit and conn.out_bytes > out_limit // 2:
                            await self._wait_for_output_room(conn)
                        burst += 1 if run is None else len(run)
                        if burst >= YIELD_EVERY:  # a long pipeline lets others run
                            burst = 0
                            await trio.lowlevel.checkpoint()
                    self.buffers.set_query(conn, parser.buffered + inflight_bytes
                                           + conn.tx.held + conn.subs.name_bytes)
                    # A large argument streaming in (a full read that stays unparsed):
                    # fewer, larger reads, so an 8 MiB SET costs a dozen loop iterations,
                    # not 128. Many small arguments keep 64 KiB reads, so each read's
                    # parse stays short.
                    read_size = (min(2 * read_size, MAX_READ_CHUNK)
                                 if len(data) == read_size and parser.buffered >= read_size
                                 else READ_CHUNK)
                except ProtocolError as exc:
                    # Redis answers a protocol error and closes the connection.
                    self.stats["client_protocol_errors"] += 1
                    event(log, logging.DEBUG, "client protocol error", conn=conn.id, error=exc)
                    conn.owed += 1
                    await send.send(Slot(Pending.of(ErrorReply(f"ERR {exc}")), conn.proto,
                                         self, conn, True))
                    conn.closing = True
                    return

    def _gather_run(self, parser: CommandParser, conn: Connection, first: list[bytes],
                    args: list[bytes], size: int, limit: int, room: int,
                    ) -> tuple[list[list[bytes]], int, tuple[list[bytes], ErrorReply | None]
                               | None]:
        """The run that starts with ``first`` (``size`` bytes of arguments; it joined),
        ``args`` the command parsed after it: the commands from there that may join
        (write_runs.py), each checked as ``execute`` would, up to ``limit`` commands and
        ``run_bytes`` bytes together, and no more than ``room`` (what the query buffer
        has left). Only a leader builds runs. Returns the run, its size and the command it
        stopped at (with its error if it was refused), which the reader handles next like
        any other: nothing is awaited here, so the run is proposed before anything parsed
        after it."""
        node = self.node
        run = [first]
        if not node.leads:
            return run, size, (args, None)
        most = min(run_bytes(node.settings.max_request_bytes), room)
        while True:
            name = args[0].lower()
            more = sum(map(len, args))
            if size + more > most or not may_join(args, name):
                return run, size, (args, None)
            error = run_member(node, conn, args, name)
            if error is not None:
                return run, size, (args, error)
            run.append(args)
            size += more
            if len(run) == limit:
                return run, size, None
            args = _next_or_none(parser)
            if args is None:
                return run, size, None

    async def _applied_barrier(self) -> ErrorReply | None:
        """Before a change-feed read or a SUBSCRIBE that follows this connection's writes
        (``AFTER_APPLY``): wait until this node has applied them, or answer why not. A
        follower answers a forwarded write once the leader has applied it, and serves the
        feed (and delivers messages) as it applies them itself, so without this a
        follower's ``XRANGE`` missed the ``SET`` acknowledged just before it on the same
        connection, and a ``SUBSCRIBE`` got the ``PUBLISH`` sent before it (attack6;
        ``GET`` waits for a ReadIndex and never did). ``Node.barrier``, a ReadIndex read, is
        answered once the node has applied everything committed when it was asked, those
        writes included. Only such a command right after writes pays it: a watcher's
        XREADs follow each other."""
        value = await self.node.barrier().wait()
        return value if isinstance(value, ErrorReply) else None

    async def _wait_for_output_room(self, conn: Connection) -> None:
        """Read no more commands while the output buffer is over half its limit: a client
        that reads its replies slowly is slowed down. One that reads nothing for
        ``output_stall_timeout`` is disconnected (Redis's soft limit with its seconds)."""
        limit = self.limits.output_buffer_bytes
        while limit and conn.out_bytes > limit // 2:
            with trio.move_on_after(self.limits.output_stall_timeout) as stall:
                await conn.drained().wait()
            if stall.cancelled_caught:
                self.disconnect_for_output(conn)
                await trio.lowlevel.checkpoint()  # (cancelled: the connection ends)

    def _reply_when_ready(self, conn: Connection, direct: DirectReply, slot: Slot) -> None:
        """Owe ``slot`` (nothing is owed before it and the writer is idle) and send its
        reply from the task that answers it, without waking the writer: one task switch
        less per round trip (``Slot.send_direct``)."""
        conn.owed += 1
        direct.waiting = slot
        slot.pending.add_callback(slot.send_direct)

    def _pusher(self, conn: Connection, send: trio.MemorySendChannel[Slot]) -> Any:
        """How Pub/Sub hands ``conn`` a message: queued after the replies owed so far,
        weighed into the output buffer; False if the connection is going away."""
        def push(value: Any) -> bool:
            if conn.scope is not None and conn.scope.cancel_called:
                return False
            slot = Slot(Pending.of(value), conn.proto, self, conn, push=True)
            try:
                send.send_nowait(slot)
            except trio.WouldBlock:  # PUSH_BACKLOG messages it has not read
                self.disconnect_for_output(conn)
                return False
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return False
            conn.owed += 1
            conn.pushes += 1
            slot.weigh(value)
            return True
        return push

    def _reweigh(self, conn: Connection, slot: Slot, value: Any) -> None:
        """A read done in slices (KEYS, SCAN, a feed read) was weighed as nothing while it
        ran; now that it has its reply, weigh that, as ``Slot.weigh`` weighs any reply
        (a streamed one at what it will send), so the output-buffer limits see it."""
        size = reply_size(value)
        delta, slot.size = size - slot.size, size
        conn.out_bytes += delta
        limit = self.limits.output_buffer_bytes
        if limit and conn.out_bytes > limit:
            self.disconnect_for_output(conn)
        self.buffers.add_output(conn, delta)

    def disconnect_for_output(self, conn: Connection) -> None:
        if conn.scope is None or conn.scope.cancel_called:
            return
        self.stats["client_output_buffer_disconnects"] += 1
        self._throttle.log("output-buffer", logging.WARNING,
                           "client output buffer limit reached: disconnecting",
                           conn=conn.id, addr=conn.addr, bytes=conn.out_bytes,
                           limit=self.limits.output_buffer_bytes)
        conn.scope.cancel()

    def disconnect_for_dropped(self, conn: Connection) -> None:
        """The leader did not hold the reply of ``conn``'s forwarded command (over its
        bound, raftkv.node.forwarding): disconnected as for its own output buffer limit,
        the command's outcome unknown to it (it was applied)."""
        if conn.scope is None or conn.scope.cancel_called:
            return
        self.stats["client_reply_dropped_disconnects"] += 1
        self._throttle.log("reply-dropped", logging.WARNING,
                           "the leader dropped a forwarded reply (over its "
                           "--client-buffer-total for other nodes' clients): disconnecting",
                           conn=conn.id, addr=conn.addr)
        conn.scope.cancel()

    def _disconnect_for_total(self, conn: Connection, size: int, total: int) -> None:
        """ClientBuffers chose ``conn`` (the largest) to bring the total under its bound."""
        self.stats["client_buffer_total_disconnects"] += 1
        self._throttle.log("buffer-total", logging.WARNING,
                           "client buffers over --client-buffer-total: disconnecting the "
                           "largest", conn=conn.id, addr=conn.addr, bytes=size,
                           total_after=total, limit=self.buffers.limit)
        if conn.scope is not None:
            conn.scope.cancel()
        else:
            conn.closing = True  # (still in its TLS handshake: no nursery yet)

    async def _writer(
        self,
        stream: trio.SocketStream,
        conn: Connection,
        recv: trio.MemoryReceiveChannel[Slot],
        scope: trio.CancelScope,
        direct: DirectReply | None = None,
    ) -> None:
        out: list[bytes] = []
        size = 0
        burst = 0  # slots handled since the writer last yielded
        # The bytes of the slots written since the buffer total was last told: told before
        # the writer awaits anything (or runs a callback that may weigh a reply), so no
        # other code sees another total than a call a slot gave; ~90 ns a pipelined SET.
        released = 0
        buffers = self.buffers
        after: Slot | None = None  # a slot got while DirectReply still owed one before it
        slot: Slot | None
        async with recv:
            while True:
                if after is not None:
                    slot, after = after, None
                else:
                    try:  # a queued slot without a trip through the scheduler
                        slot = recv.receive_nowait()
                    except trio.WouldBlock:
                        if released:
                            buffers.add_output(conn, -released)
                            released = 0
                        if out:  # nothing more queued: send what is ready
                            await stream.send_all(b"".join(out))
                            out.clear()
                            size = 0
                        if direct is not None:  # nothing queued or unsent: the reader may
                            direct.idle = True  # send a reply itself (DirectReply)
                        try:
                            slot = await recv.receive()
                        except trio.EndOfChannel:
                            slot = None
                        finally:
                            if direct is not None:
                                direct.idle = False
                        burst = 0
                    except trio.EndOfChannel:
                        slot = None
                    if direct is not None and direct.waiting is not None:
                        if released:
                            buffers.add_output(conn, -released)
                            released = 0
                        ahead = direct.take()  # (asked only when one waits: a call a slot)
                        # A reply owed before this slot, or before the end of the commands
                        # (not lost with the queue): written first, weighed now.
                        ahead.pending.add_callback(ahead.weigh)
                        after, slot = slot, ahead
                    if slot is None:
                        break
                burst += 1
                if burst >= YIELD_EVERY:
                    burst = 0
                    if released:
                        buffers.add_output(conn, -released)
                        released = 0
                    await trio.lowlevel.checkpoint()
                if not slot.pending.done:
                    if released:
                        buffers.add_output(conn, -released)
                        released = 0
                    if out:  # send what is answered before waiting on a slow reply
                        await stream.send_all(b"".join(out))
                        out.clear()
                        size = 0
                    await slot.pending.wait()
                value = slot.pending.value
                if type(value) in ONE_PIECE:  # (+OK, an int...: one piece, no generator)
                    piece = encode_reply(value, slot.proto)
                    if len(piece) >= SEND_CHUNK and not out:
                        if released:
                            buffers.add_output(conn, -released)
                            released = 0
                        await stream.send_all(piece)  # a large piece goes out uncopied
                    else:
                        out.append(piece)
                        size += len(piece)
                        if size >= SEND_CHUNK:
                            if released:
                                buffers.add_output(conn, -released)
                                released = 0
                            await stream.send_all(b"".join(out))
                            out.clear()
                            size = 0
                else:
                    if released:  # (every await below, and _reweigh's weighing)
                        buffers.add_output(conn, -released)
                        released = 0
                    if isinstance(value, SlicedRead):
                        value = await _finish(value, self.sliced)
                        self._reweigh(conn, slot, value)
                    for piece in encode_reply_chunks(value, slot.proto, SEND_CHUNK):
                        if len(piece) >= SEND_CHUNK and not out:
                            await stream.send_all(piece)  # a large piece goes out uncopied
                            continue
                        out.append(piece)
                        size += len(piece)
                        if size >= SEND_CHUNK:
                            await stream.send_all(b"".join(out))
                            out.clear()
                            size = 0
                conn.out_bytes -= slot.size
                released += slot.size
                conn.owed -= 1
                conn.run_extra -= slot.extra
                if slot.push:
                    conn.pushes -= 1
                if (conn.out_drained is not None
                        and conn.out_bytes <= self.limits.output_buffer_bytes // 2):
                    conn.out_drained.set()  # (a reader waits for room: Connection.drained)
                    conn.out_drained = None
                if slot.close_after:
                    break
            if released:
                buffers.add_output(conn, -released)
            if out:
                await stream.send_all(b"".join(out))
        if conn.closing:
            await _drain_after_error(stream, self.limits.max_request_bytes)
        scope.cancel()


def _next_or_none(parser: CommandParser) -> list[bytes] | None:
    """The next command for a run, or None, also where the input is malformed: the
    parser keeps its error and raises it at the reader's next call, after the run is
    proposed (else the run's commands were checked and never answered, and the protocol
    error's reply was read as the first one's)."""
    try:
        return parser.next_command()
    except ProtocolError:
        return None


def _release(turn: trio.Semaphore, _value: Any) -> None:
    turn.release()


async def _finish(job: SlicedRead, limiter: trio.CapacityLimiter) -> Any:
    """Run a KEYS or SCAN job a slice at a time, letting the loop run other tasks between,
    once ``limiter`` lets it (at most ``SLICED_AT_ONCE`` jobs step in one pass of the loop)."""
    async with limiter:
        while not job.step():
            await trio.lowlevel.checkpoint()
    return job.result


async def _drain_after_error(stream: trio.SocketStream, limit: int) -> None:
    """After the last reply of a connection we close (a protocol error, QUIT): say so
    (FIN) and read and drop what the client still sends for a moment, so a client in the
    middle of sending an oversized command reads our error instead of a reset."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await stream.send_eof()
        dropped = 0
        with trio.move_on_after(AFTER_ERROR_DRAIN):
            while dropped < 2 * limit:
                data = await stream.receive_some(READ_CHUNK)
                if not data:
                    break
                dropped += len(data)


def _enable_keepalive(sock: trio.socket.SocketType) -> None:
    """Find half-open connections (a client host that vanished) in about two minutes, as
    Redis's tcp-keepalive does; idle but live clients are never closed unless --idle-timeout."""
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(trio.socket, name):
            sock.setsockopt(trio.socket.IPPROTO_TCP, getattr(trio.socket, name), value)


async def serve_clients(server: ClientServer, *,
                        task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``--client-addr``; ``task_status`` gets the bound port. The node runs this
    in its nursery (raftkv.serve hands it over), so its connections end with the node."""
    host, port = parse_addr(server.node.settings.client_addr)
    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.loop_lag.run)
        nursery.start_soon(server.gc_watch.run)
        nursery.start_soon(server.pubsub.run)  # Pub/Sub delivery, in slices
        for listener in listeners:
            nursery.start_soon(_accept_loop, server, listener, nursery)
        task_status.started(listeners[0].socket.getsockname()[1])


async def _accept_loop(server: ClientServer, listener: trio.SocketListener,
                       nursery: trio.Nursery) -> None:
    """Accept clients; when out of descriptors (EMFILE/ENFILE) or buffers, pause with a
    doubling delay and log at most once per 10 s, instead of failing in a tight loop."""
    first, longest = ACCEPT_BACKOFF
    delay = first
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                server.stats["accept_capacity_errors"] += 1
                server._throttle.log("accept", logging.WARNING,
                                     "accept failed: out of descriptors or buffers; backing off",
                                     error=errno.errorcode.get(exc.errno or 0, exc.errno),
                                     delay_s=delay, clients=len(server.connections))
                await trio.sleep(delay)
                delay = min(longest, delay * 2)
                continue
            delay = first
            nursery.start_soon(server.handle, stream)
