"""The KV layer's clients: TTL writes and reads, the leader's active expiry, session clients.

* **TTL traffic** (``ttl``): ``SET k v PX|EX``, ``PEXPIRE``/``EXPIRE``, ``PERSIST``, plain
  ``SET``, ``DEL`` on a few keys, and a GET + PTTL of one of them with every linearizable
  read the register workload makes (``KVLayer.read`` checks them).
* **Active expiry**: a node that leads proposes ``EXPIRED key...`` for the keys due by its
  clock, one batch in flight at a time, every ``EXPIRY_TICKS`` (the runtime's 100 ms).
* **Published members**: a node that leads proposes ``publish_member id`` for each voter
  that acknowledged an entry of its term, one in flight (raftkv.node.publish's rule); an
  applied configuration forgets the ids it drops (``Cluster``), on every replica alike.
* **Sessions** (``sessions``): each client opens a session (``session_open``, the log
  command ``RAFT SESSION OPEN`` becomes), then sends ``once sid seq INCR ctr`` or ``once
  sid seq APPEND log token`` one at a time. A send whose reply is lost (dropped on the way
  back at random, its node crashed, its entry overwritten, or no answer in
  ``RETRY_TICKS``) is sent again with the same (sid, seq) to another node, as client/ does.
  ``unsafe`` sends the same commands and retries without the ``once`` wrapper: the checker
  must then find a double apply (tests/sim/test_sim_kv.py).
* **Session expiry** (``expiry``, with ``--txn``): each client's session times out after
  150, 400 or 1,200 ms of log time, and after a reply or a lost one the client may stall
  for up to ``IDLE_TICKS`` ticks, so retries land on expired sessions: they answer
  ``SESSIONEXPIRED`` (never applied) and the client, the outcome unknown, does not send
  the command again and opens a new session. Active expiry runs with ``expiry`` too (the
  transactions' TTLs).
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from chaos.sim import messages
from chaos.sim.cluster import Cluster
from chaos.sim.kvmode import COUNTER, LOG, LOST, TTL_KEYS, ClientOp, KVStats
from wire.reply import ErrorReply

EXPIRY_TICKS = 10  # the runtime proposes expiry batches every 100 ms
EXPIRY_BATCH = 4
PUBLISH_TICKS = 10  # the runtime looks for voters to publish every 100 ms
RETRY_TICKS = 30  # a client gives up waiting for a reply and sends again elsewhere
SESSION_TIMEOUT_MS = 600_000  # far longer than a run: the sessions never expire here
# With --txn, sessions that do expire: a timeout of these (ms of log time) by client, and
# pauses of up to IDLE_TICKS ticks (a stalled client) before its next send or retry.
SHORT_TIMEOUTS_MS = (150, 400, 1_200)
IDLE_TICKS = 200


@attrs.define(eq=False)
class Send:
    node: int
    inc: int
    index: int
    term: int
    tick: int


@attrs.define(eq=False)
class SessionClient:
    id: int
    sid: int | None = None
    seq: int = 0
    op: ClientOp | None = None
    opening: Send | None = None
    send: Send | None = None
    hint: int = 0
    ops: list[ClientOp] = attrs.Factory(list)
    timeout_ms: int = SESSION_TIMEOUT_MS
    idle_until: int = 0  # a stalled client sends nothing before this tick


class KVWorkload:
    """One tick of KV client activity (see the module docstring)."""

    def __init__(self, rng: random.Random, ttl: bool, sessions: bool, unsafe: bool,
                 expiry: bool = False) -> None:
        self.rng = rng
        self.ttl = ttl
        self.p_ttl = rng.uniform(0.05, 0.5) if ttl else 0.0
        self.p_session = rng.uniform(0.1, 0.8) if sessions else 0.0
        self.p_lose_reply = rng.choice((0.0, 0.1, 0.3))
        self.unsafe = unsafe
        self.clients = [SessionClient(i) for i in range(1, rng.randint(2, 4) + 1)] \
            if sessions else []
        self.hint = 0
        self.writes = 0
        self.stats = KVStats()  # the runner hands it the KV layer's counters
        self.expiring: dict[tuple[int, int], int] = {}  # (node, inc) -> EXPIRED index
        self.publishing: dict[tuple[int, int], int] = {}  # (node, inc) -> publish index
        # Session expiry (--txn): short timeouts, and clients that stall now and then.
        self.p_idle = 0.0
        self.expiry = expiry
        if expiry:
            self.p_idle = rng.choice((0.05, 0.15, 0.3))
            for client in self.clients:
                client.timeout_ms = rng.choice(SHORT_TIMEOUTS_MS)

    @property
    def ops(self) -> list[ClientOp]:
        return [op for c in self.clients for op in c.ops]

    def act(self, cluster: Cluster, tick: int, propose: bool = True) -> None:
        if not propose:
            return
        if self.ttl or self.expiry:  # the pair's TTLs (--txn) expire actively too
            self._expire(cluster, tick)
        self._publish(cluster, tick)
        if self.ttl and self.rng.random() < self.p_ttl:
            self._ttl_write(cluster)
        for client in self.clients:
            if client.idle_until > tick:
                continue
            if self.rng.random() < self.p_session or client.send or client.opening:
                self._session_step(cluster, client, tick)

    def read_key(self) -> bytes:
        return self.rng.choice(TTL_KEYS)

    # -- routing ------------------------------------------------------------------------------
    def _target(self, cluster: Cluster, hint: int) -> Any:
        alive = [n for n in cluster.nodes.values() if n.alive]
        if not alive:
            return None
        node = cluster.nodes.get(hint)
        if node is None or not node.alive or self.rng.random() < 0.1:
            node = self.rng.choice(alive)
        return node

    # -- TTLs ---------------------------------------------------------------------------------
    def _ttl_write(self, cluster: Cluster) -> None:
        rng = self.rng
        node = self._target(cluster, self.hint)
        if node is None:
            return
        self.writes += 1
        key = rng.choice(TTL_KEYS)
        value = b"w%d" % self.writes
        ms = b"%d" % rng.randint(20, 1500)
        kind = rng.randrange(8)
        if kind <= 2:
            args = [b"SET", key, value, b"PX", ms]
        elif kind == 3:
            args = [b"SET", key, value, b"EX", b"1"]
        elif kind == 4:
            args = [b"PEXPIRE", key, ms] if rng.random() < 0.7 else [b"EXPIRE", key, b"1"]
        elif kind == 5:
            args = [b"PERSIST", key]
        elif kind == 6:
            args = [b"SET", key, value]
        else:
            args = [b"DEL", key]
        hint, _ = cluster.propose_command(node, args)
        if hint is not None:
            self.hint = hint
        else:
            self.stats.ttl_writes += 1

    def _expire(self, cluster: Cluster, tick: int) -> None:
        """Every leader proposes its expired keys, one batch in flight (the runtime's loop)."""
        for node in cluster.nodes.values():
            if not node.alive or node.raft.role is not messages.LEADER:
                continue
            key = (node.id, node.inc)
            index = self.expiring.get(key)
            if index is not None and node.applied < index:
                continue
            self.expiring.pop(key, None)
            if (tick + node.phase) % EXPIRY_TICKS:
                continue
            keys = node.kv.expired_keys(node.clock.now(), EXPIRY_BATCH)
            if not keys:
                continue
            _, where = cluster.propose_command(node, [b"EXPIRED", *keys])
            if where is not None:
                self.expiring[key] = where[0]
                self.stats.expired_batches += 1

    def _publish(self, cluster: Cluster, tick: int) -> None:
        """Every leader publishes the voters that served, one entry in flight (the runtime's
        raftkv.node.publish loop)."""
        for node in cluster.nodes.values():
            if not node.alive or node.raft.role is not messages.LEADER:
                continue
            key = (node.id, node.inc)
            index = self.publishing.get(key)
            if index is not None and node.applied < index:
                continue
            self.publishing.pop(key, None)
            if (tick + node.phase) % PUBLISH_TICKS:
                continue
            raft = node.raft

            def match(peer: int, raft: Any = raft) -> int:
                progress = raft.progress(peer)
                return progress.match if progress is not None else 0

            voters = [m.id for m in raft.cluster_config.members if not m.learner]
            member = node.kv.next_to_publish(node.id, voters, match)
            if not member:
                continue
            _, where = cluster.propose_command(node, [b"publish_member", b"%d" % member])
            if where is not None:
                self.publishing[key] = where[0]
                self.stats.members_published += 1

    # -- sessions -----------------------------------------------------------------------------
    def _session_step(self, cluster: Cluster, client: SessionClient, tick: int) -> None:
        if client.opening is not None or client.send is not None:
            self._await(cluster, client, tick)
            return
        if client.sid is None and not self.unsafe:
            node = self._target(cluster, client.hint)
            if node is None:
                return
            hint, where = cluster.propose_command(
                node, [b"session_open", b"%d" % client.timeout_ms])
            if where is None:
                client.hint = hint or 0
                return
            client.opening = send = Send(node.id, node.inc, where[0], where[1], tick)
            cluster.wait_reply(send, lambda reply, c=client, s=send: self._opened(c, s, reply))
            return
        if client.op is None:
            client.seq += 1
            if self.rng.random() < 0.5:
                inner = [b"INCR", COUNTER]
            else:
                inner = [b"APPEND", LOG, b"%d.%d;" % (client.id, client.seq)]
            client.op = ClientOp(client.id, client.seq, inner, wrapped=not self.unsafe)
            client.ops.append(client.op)
            self.stats.session_ops += 1
        self._send(cluster, client, tick)

    def _send(self, cluster: Cluster, client: SessionClient, tick: int) -> None:
        op = client.op
        assert op is not None
        node = self._target(cluster, client.hint)
        if node is None:
            return
        args = op.args if not op.wrapped else \
            [b"once", b"%d" % client.sid, b"%d" % op.seq, *op.args]  # type: ignore[str-bytes-safe]
        hint, where = cluster.propose_command(node, args, op)
        if where is None:
            client.hint = hint or 0
            return
        op.sends += 1
        if op.sends > 1:
            self.stats.retries += 1
        client.send = send = Send(node.id, node.inc, where[0], where[1], tick)
        cluster.wait_reply(send, lambda reply, c=client, s=send: self._answered(c, s, reply))

    def _await(self, cluster: Cluster, client: SessionClient, tick: int) -> None:
        """A send still unanswered: after ``RETRY_TICKS``, give up on it."""
        send = client.opening or client.send
        assert send is not None
        if tick - send.tick >= RETRY_TICKS:
            self._lost(client, send)

    def _lost(self, client: SessionClient, send: Send) -> None:
        if client.opening is send:
            client.opening = None
        elif client.send is send:
            client.send = None  # the op stays: the next step sends it again
            client.hint = 0
            self._maybe_stall(client, send)

    def _maybe_stall(self, client: SessionClient, send: Send) -> None:
        """With --txn, the client may stall before its next send (its session may expire
        meanwhile: a retry must then answer SESSIONEXPIRED and never apply)."""
        if self.p_idle and self.rng.random() < self.p_idle:
            client.idle_until = send.tick + self.rng.randint(1, IDLE_TICKS)

    def _opened(self, client: SessionClient, send: Send, reply: Any) -> None:
        if client.opening is not send:
            # An open the client gave up on answered late: it has or opens another session.
            # (Switching sessions under a command already sent is what client/ must never
            # do: the command could apply once on each. Seed 34 caught this client doing it.)
            return
        client.opening = None
        if reply is LOST or self.rng.random() < self.p_lose_reply:
            return  # the session may exist; a new one is opened (it expires unused)
        if isinstance(reply, int):
            client.sid = reply

    def _answered(self, client: SessionClient, send: Send, reply: Any) -> None:
        if client.send is not send:
            return  # an earlier send of the op answered after the client moved on
        if reply is LOST or self.rng.random() < self.p_lose_reply:
            self._lost(client, send)
            return
        op = client.op
        assert op is not None
        client.send = client.op = None
        self._maybe_stall(client, send)
        if isinstance(reply, ErrorReply):
            # SESSIONEXPIRED (with --txn's short timeouts) or another refusal: the outcome
            # is unknown (an earlier send may have applied), the op is not sent again.
            client.sid = None
            return
        op.acked = True
        self.stats.acked += 1
