"""Where a follower forwards a write to the leader, and the leader answers it.

A follower that knows the leader sends a client's write (or a RAFT membership change) as a
``ForwardRequest`` over the peer connection; the leader runs it as if a client of its own
had sent it, never forwarding it again, and sends the reply back, RESP3-encoded, in a
``ForwardResponse``. Both messages come from peers, so everything they hold is hostile:
a request is validated like a client's, and a reply that does not parse becomes an error
for the client, never an exception in the inbound loop.

A follower keeps at most ``WINDOW`` forwards (``WINDOW_BYTES`` of arguments) in flight to
the leader; the rest wait here, unsent, in a queue bounded by ``QUEUE`` commands and
``QUEUE_BYTES``. Why (attack round 5): a pipeline of EVALs through a follower under load
queued 5 s of forwards behind each other, and all ~170 that timed out answered -UNKNOWN,
though most had never left the follower. Now a command still unsent at its deadline
answers a definite ``-TRYAGAIN ... not sent and not applied`` (``requests.NOT_SENT``), one
arriving to a full queue ``-TRYAGAIN`` at once (``QUEUE_FULL``), and only a command that
was sent and not answered in time says -UNKNOWN, as its fate is then truly unknown.
Unsent commands go to a new leader when the leader changes; if this node becomes the
leader, they are parked and proposed here. The
window also keeps forwards from filling the peer link's send queue (1024 messages), where
they would crowd out the follower's Raft messages to the leader.

The leader holds the replies it owes followers' clients in the links' send queues, which
count messages, not bytes: and a 70-byte write may return a 15 MiB value (``EVAL`` of a
GET). So the replies queued on all links together are bounded by ``--client-buffer-total``
(``sizes.forward_reply_limit``), as the leader's own clients' buffers are (attack20: 128
pipelined EVALs through a paused follower grew the leader by 520 MiB). A reply that does
not fit (unless none is queued: one may go alone; nor one of ``SMALL_REPLY`` or less, as
every refusal is) is not held: the follower gets
``REPLY_DROPPED`` instead and disconnects its client, as Redis disconnects a client over
its output buffer limit. The command was applied, so nothing claims it was not: the
client's connection ends with its outcome unknown to it, and an older follower shows the
error's text, which says it was applied.

A dropped reply is known by ``DROPPED_MARK``, bytes after the reply in the response's
``reply`` field, never by its text: a script returns any text, and a follower closed its
client (losing what was pipelined behind) on a script's error that read as
``REPLY_DROPPED`` (attack22). Not a new ``ForwardResponse`` field: the peer codec is strict
(fixed arity, wire.record), so a node of the previous release would refuse the frame and
drop the link. Mixed releases: a previous release's follower reads only the first reply
(``decode_reply``), ``REPLY_DROPPED``'s text, and disconnects as it did; a previous
release's leader sends no mark, so its drop reaches a new follower's client as that error
(saying the command was applied), the connection kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from raftkv.node.pending import Pending
from raftkv.node.requests import NO_LEADER, RequestTracker
from raftkv.node.settings import NodeSettings
from raftkv.node.sizes import forward_reply_limit, max_reply_bytes, request_size
from raftkv.node.transport import PeerTransport
from raftkv.raft import RaftCore, Role
from wire.raft import ForwardRequest, ForwardResponse
from wire.reply import ErrorReply
from wire.resp import encode_reply, encode_reply_chunks
from wire.resp_reply import NEED_MORE, ReplyParser

EMPTY = ErrorReply("ERR empty command")
QUEUE_FULL = ErrorReply(
    "TRYAGAIN too many commands waiting to be forwarded to the leader; the command was not "
    "applied, retry"
)
BECAME_LEADER = ErrorReply(
    "TRYAGAIN this node became the leader before the command was forwarded; it was not "
    "applied, retry"
)
LINK_FULL = ErrorReply(
    "TRYAGAIN the link to the leader cannot take the command now; it was not sent and not "
    "applied, retry"
)
REPLY_DROPPED = ErrorReply(
    "ERR the command was applied, but its reply was dropped: the leader holds at most "
    "--client-buffer-total of replies for other nodes' clients; closing the connection"
)
# After a dropped reply's encoding (module docstring): a second RESP value, where a
# reply (one value, encoded by the leader) never has anything.
DROPPED_MARK = b"+raftkv:reply-dropped\r\n"
DROPPED_BYTES = encode_reply(REPLY_DROPPED, 3) + DROPPED_MARK
# A reply this small is always held: an error saying the command was not applied must
# reach its client, and the follower's WINDOW bounds them (8 MiB a follower).
SMALL_REPLY = 64 * 1024
WINDOW = 128  # forwards in flight (sent, unanswered) to the leader
WINDOW_BYTES = 32 * 1024 * 1024  # and their arguments' bytes (one bigger command may go alone)
QUEUE = 4096  # unsent forwards waiting for the window
QUEUE_BYTES = 64 * 1024 * 1024  # and their bytes (one bigger command may wait alone)
# What a leader runs for a forwarded command: (args) -> its reply, as for a client.
Run = Callable[[list[bytes]], Pending]


def decode_reply(data: bytes) -> Any:
    """A forwarded reply (RESP3 bytes from the leader) back to a reply value; the one
    ``REPLY_DROPPED`` instance (the client port disconnects on it) only for a reply the
    leader marked dropped (``DROPPED_MARK``), whatever another reply's text."""
    malformed = ErrorReply("ERR malformed reply from the leader")
    parser = ReplyParser()
    try:  # peer input: anything it holds must become an answer, never an exception
        parser.feed(data)
        value = parser.next_reply()
    except Exception:
        return malformed
    if value is NEED_MORE:
        return malformed
    if parser.buffered == len(DROPPED_MARK) and data.endswith(DROPPED_MARK):
        return REPLY_DROPPED
    return value


class Forwarder:
    def __init__(self, node_id: int, settings: NodeSettings, core: RaftCore,
                 transport: PeerTransport, requests: RequestTracker,
                 stats: dict[str, int]) -> None:
        self.id = node_id
        self.core = core
        self.transport = transport
        self.requests = requests
        self.stats = stats
        self.request_timeout = settings.request_timeout
        self.reply_limit = max_reply_bytes(settings)
        self.held_limit = forward_reply_limit(settings)  # replies queued, all links
        requests.on_forwards_changed = self.pump

    # -- on a follower --------------------------------------------------------------------

    def forward(self, args: list[bytes], pending: Pending, deadline: float | None = None
                ) -> None:
        """Send a command to the leader, or queue it until the window has room;
        ``pending`` gets its reply, or at the deadline (by default the request timeout
        from now) UNKNOWN if it was sent, TRYAGAIN if it never was."""
        if deadline is None:
            deadline = trio.current_time() + self.request_timeout
        requests = self.requests
        size = request_size(args)
        if not requests.unsent and self._window_open(size):
            self._send(args, pending, deadline, size)
            return
        if requests.unsent and (len(requests.unsent) >= QUEUE
                                or requests.unsent_bytes + size > QUEUE_BYTES):
            pending.set(QUEUE_FULL)
            return
        requests.queue_unsent(args, pending, deadline, size)

    def pump(self) -> None:
        """Send unsent commands while the window has room (called when forwards finish
        and when the leader changes)."""
        requests = self.requests
        if not requests.unsent:
            return
        if self.core.role is Role.LEADER:
            self._park_unsent()
            return
        if not self.core.leader_id:
            return  # no leader known: they wait, until one is or their deadline passes
        while requests.unsent and self._window_open(requests.unsent[0].size):
            waiter = requests.next_unsent()
            if waiter is None:
                break
            self._send(waiter.args, waiter.pending, waiter.deadline, waiter.size)

    def _park_unsent(self) -> None:
        """This node leads now: its unsent commands, never sent anywhere, are parked to be
        proposed here (the driver unparks right after a leader change), as a client of the
        leader would have had them run. A RAFT membership command is refused instead: it
        runs through the admin path, not as a write."""
        requests = self.requests
        while (waiter := requests.next_unsent()) is not None:
            if waiter.args and waiter.args[0].lower() == b"raft":
                waiter.pending.set(BECAME_LEADER)
            else:
                requests.park(waiter.args, True, waiter.pending, waiter.deadline)

    def _window_open(self, size: int) -> bool:
        requests = self.requests
        if not requests.forwards:
            return True
        return (len(requests.forwards) < WINDOW
                and requests.forward_bytes + size <= WINDOW_BYTES)

    def _send(self, args: list[bytes], pending: Pending, deadline: float, size: int) -> None:
        req_id = self.requests.next_id()
        msg = ForwardRequest(
            term=self.core.term, src=self.id, dst=self.core.leader_id, req_id=req_id,
            args=tuple(args),
        )
        if not self.transport.send(msg):
            # Never left this node (the link's send queue is full or the leader is no
            # longer a peer): definitely not applied. Not "no leader known": one is.
            pending.set(LINK_FULL)
            return
        self.requests.track_forward(req_id, pending, deadline, msg.dst, size)
        self.stats["forwarded"] += 1

    def on_response(self, msg: ForwardResponse) -> None:
        pending = self.requests.forward_answered(msg.req_id)
        if pending is not None:
            pending.set(decode_reply(msg.reply))

    # -- on the leader --------------------------------------------------------------------

    def on_request(self, msg: ForwardRequest, check: Callable[[list[bytes]], ErrorReply | None],
                   run: Run, run_admin: Run) -> None:
        """Run a follower's command as leader and send the reply back; never re-forward.
        ``check`` validates it like a client's command, ``run`` runs a write,
        ``run_admin`` a RAFT membership change."""
        args = list(msg.args)
        if args and args[0].lower() == b"raft":  # a membership change (RAFT ADDNODE ...)
            reply = run_admin(args)
        elif (error := check(args) if args else EMPTY) is not None:
            reply = Pending.of(error)
        elif self.core.role is not Role.LEADER:
            reply = Pending.of(NO_LEADER)
        else:
            reply = run(args)
        reply.add_callback(self._replier(msg))

    def reply(self, msg: ForwardRequest, value: Any) -> None:
        """Answer ``msg`` with ``value`` at once (a question any node answers)."""
        self._replier(msg)(value)

    def _replier(self, msg: ForwardRequest) -> Callable[[Any], None]:
        limit = self.reply_limit

        def send_back(value: Any) -> None:
            # Encoded a piece at a time and given up past the limit: a reply may be many
            # references to one large value (an EXEC of GETs), far larger encoded than in
            # memory, and must never be encoded whole only to be refused.
            pieces, size = [], 0
            for piece in encode_reply_chunks(value, 3):
                size += len(piece)
                if size > limit:  # would not fit in a frame: the follower's client
                    reply = encode_reply(ErrorReply(  # would wait for nothing
                        f"ERR the reply (over {limit} bytes) is too large to return through "
                        f"this node; the command was applied; read the result from the leader"
                    ), 3)
                    break
                pieces.append(piece)
            else:
                reply = b"".join(pieces)
                held = self.transport.reply_bytes()
                if (len(reply) > SMALL_REPLY and held
                        and held + len(reply) > self.held_limit):  # (module docstring)
                    reply = DROPPED_BYTES
                    self.stats["forward_replies_dropped"] += 1
            self.transport.send(ForwardResponse(
                term=self.core.term, src=self.id, dst=msg.src, req_id=msg.req_id,
                reply=reply,
            ))
        return send_back
