"""The KV layer of the simulator: the real ``KVStateMachine`` on every node, and its checks.

With it (``--ttl``/``--sessions``, or a share of seeds by default), every NORMAL entry is a
stamped command (``raftkv.kv.codec.encode_entry``) that each node applies to its own
``KVStateMachine``; the proposing leader stamps it from its ``StampClock`` on its own
(skewed, possibly jumping) virtual clock, as the runtime does. Snapshots carry the state
machine's snapshot after the register. Checked:

* **Replicas agree**: every application of an index gives the same reply, and the state
  (values, deadlines, the applied time, sessions; ``KVStateMachine.digest``) is equal on
  every replica at every ``DIGEST_EVERY``-th index and at every snapshot.
* **Expiry** (``Expiry``): a reference state machine applies the committed log once and
  maps each key's deadline to true (virtual) time: the true time its TTL's entry was stamped
  plus the TTL. With node skews in [-s, +s] (spread ``u`` = the largest difference) a key is
  never visible after its true deadline + u, never hidden by a node's clock nor removed by
  an entry before its true deadline - u; once a clock jumped, u grows by ``AGREE_MS`` (a jump
  under a second is taken as skew) plus 1/``SLEW`` of the time run (the rate bound). A
  node's read time never goes back (a key it hid could reappear).
* **Exactly once** (``SessionOps``): each client command is known by the (index, term) of
  its sends; a command whose inner command ran at two indexes was applied twice; a
  duplicate's reply equals the first application's; at the end the counter equals the
  increments applied, the append log holds every applied token once, and every acknowledged
  command applied. A duplicate may also answer ``SESSIONEXPIRED`` (without running):
  ``SessionModel`` (txncheck.py) checks on the reference that a ``once`` answers it exactly
  when its session is expired by the log's time.
* **Transactions and scripts** (``--txn``; ``TxnChecks`` in txncheck.py): atomicity, the
  pair read against the reference, per-command replies, WATCH.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from typing import Any

import attrs

from chaos.sim.clocks import NodeClocks
from chaos.sim.invariants import Violation
from chaos.sim.txncheck import SessionModel, TxnChecks, TxnOp
from raftkv.kv import KVStateMachine
from raftkv.kv.clock import AGREE_MS, SLEW
from raftkv.kv.codec import decode_entry
from raftkv.kv.errors import KVDecodeError
from raftkv.kv.sessions import SESSION_EXPIRED
from wire.raft import NORMAL, Entry
from wire.reply import ErrorReply

DIGEST_EVERY = 8  # compare whole-state digests at these indexes (every one costs ~3x)
TTL_KEYS = tuple(b"t%d" % i for i in range(6))
COUNTER, LOG = b"ctr", b"log"
_KEYED = frozenset((b"set", b"get", b"pexpire", b"expire", b"persist", b"incr", b"append",
                    b"del", b"pttl"))
_SLACK_MS = 2  # ms rounding of the wall clock (float seconds) and of stamps


class _Lost:
    def __repr__(self) -> str:
        return "<lost>"


LOST = _Lost()  # what a waiting client gets when its send will never be answered


class CountingKV(KVStateMachine):
    """A ``KVStateMachine`` that counts the commands it runs, so the checker can tell an
    applied ``once`` (its inner command ran) from a duplicate answered from the session
    table: ``runs`` after ``apply`` is 2 for the first and 1 for the second. (Counted at
    ``_run``, where ``once`` runs its command: every command an entry runs passes there.)"""

    runs = 0

    def _run(self, args: list[bytes], entry: Any) -> Any:
        self.runs += 1
        return super()._run(args, entry)

    def holds(self, key: bytes) -> bool:
        """Whether ``key`` is in the map, expired or not."""
        return key in self._data


def snapshot_data(register: bytes, kv: KVStateMachine) -> bytes:
    """The register (as ``messages.register_from_snapshot`` reads it), then the KV state."""
    return len(register).to_bytes(4, "big") + register + kv.snapshot()


def kv_from_snapshot(data: bytes) -> bytes:
    n = int.from_bytes(data[:4], "big")
    return data[4 + n :]


def inner_command(args: list[bytes]) -> tuple[list[bytes], bool]:
    """The command inside ``once sid seq ...`` (and whether it was wrapped)."""
    if args and args[0].lower() == b"once" and len(args) > 3:
        return args[3:], True
    return args, False


@attrs.define(eq=False)
class ClientOp:
    """One command of a simulated client, however many times it was sent."""

    client: int
    seq: int
    args: list[bytes]  # the inner command
    wrapped: bool  # sent as ``once sid seq ...``
    exec_index: int | None = None  # where its command ran
    first_reply: Any = None
    acked: bool = False
    sends: int = 0

    def __str__(self) -> str:
        tag = f"session op {self.client}.{self.seq}" if self.wrapped else \
            f"plain op {self.client}.{self.seq}"
        return f"{tag} {b' '.join(self.args)!r}"


@attrs.define
class KVStats:
    ttl_writes: int = 0
    expired_batches: int = 0
    members_published: int = 0  # publish_member entries proposed (raftkv.node.publish)
    ttl_reads: int = 0
    hidden_reads: int = 0  # reads a node's clock hid before the key left the state
    expiry_removals: int = 0
    session_ops: int = 0
    retries: int = 0
    duplicates: int = 0  # applications answered from the session table
    acked: int = 0
    sessions_expired: int = 0  # once entries answered SESSIONEXPIRED, as the model expects
    txns: int = 0  # transactions applied (reference), watched ones that answered null,
    txn_aborts: int = 0  # and commands in them that failed on the data
    txn_errors: int = 0
    scripts: int = 0
    script_failures: int = 0
    watches: int = 0
    pair_reads: int = 0


class KVLayer:
    """Per-node state machines and clocks, the reference, and the checks (see module)."""

    def __init__(self, clocks: NodeClocks, rng: random.Random, ttl: bool) -> None:
        self.clocks = clocks
        self.rng = rng  # which key a read looks at
        self.ttl = ttl
        self.stats = KVStats()
        self.txn: TxnChecks | None = None  # with --txn (txncheck.py)
        self.session_model = SessionModel()
        self.session_model.stats = self.stats
        self.replies: dict[int, Any] = {}  # index -> the reply of its first application
        self.digests: dict[int, str] = {}
        # The reference: the committed log applied once, in order.
        self.ref = CountingKV()
        self.ref_index = 0
        self.stamped: dict[tuple[int, int], int] = {}  # (index, term) -> true time stamped
        self.td_index: dict[bytes, list[int]] = {}  # key -> indexes its true deadline changed
        self.td_value: dict[bytes, list[int | None]] = {}
        self.ops: dict[tuple[int, int], ClientOp] = {}  # (index, term) of a send -> its op
        self.read_time: dict[tuple[int, int], int] = {}  # (node, inc) -> last read time
        # (node, inc, index) -> (term, callback): a client waits for that node's reply.
        self.waiting: dict[tuple[int, int, int], tuple[int, Callable[[Any], None]]] = {}

    # -- nodes ------------------------------------------------------------------------------
    def start(self, node: Any, snapshot: bytes) -> None:
        node.kv = CountingKV()
        if snapshot:
            node.kv.restore(kv_from_snapshot(snapshot))
        node.clock = self.clocks.clock(node.id)
        node.clock.observe(node.kv.now)

    def crashed(self, node: Any) -> None:
        """``node``'s process died: the replies it owed are lost."""
        mine = [k for k in self.waiting if k[0] == node.id and k[1] == node.inc]
        for key in sorted(mine):
            self.waiting.pop(key)[1](LOST)

    def wait_reply(self, node: int, inc: int, index: int, term: int,
                   callback: Callable[[Any], None]) -> None:
        self.waiting[(node, inc, index)] = (term, callback)

    def installed(self, node: Any, index: int, data: bytes) -> None:
        node.kv.restore(kv_from_snapshot(data))
        node.clock.observe(node.kv.now)
        self._agree(node, index)

    def snapshot(self, node: Any, index: int) -> bytes:
        self._agree(node, index)
        return snapshot_data(node.value, node.kv)

    def proposed(self, index: int, term: int, now: int, op: ClientOp | TxnOp | None) -> None:
        self.stamped[(index, term)] = now
        if isinstance(op, TxnOp):
            assert self.txn is not None
            self.txn.proposed(index, term, op)
        elif op is not None:
            self.ops[(index, term)] = op

    # -- applying ---------------------------------------------------------------------------
    def apply(self, node: Any, entry: Entry) -> Any:
        """Apply ``entry`` on ``node``'s state machine; its reply. Checks everything."""
        kv = node.kv
        kv.runs = 0
        reply = kv.apply(entry.data)
        runs = kv.runs
        index = entry.index
        first = self.replies.setdefault(index, reply)
        if first != reply:
            raise Violation("replica agreement", f"node {node.id} applied entry {index} with "
                            f"reply {reply!r}, another replica's was {first!r}")
        if index % DIGEST_EVERY == 0:
            self._agree(node, index)
        if index == self.ref_index + 1:
            self._reference(entry)
        op = self.ops.get((index, entry.term))
        if op is not None:
            self._once(node, op, index, reply, runs)
        self.answer(node, entry, reply)
        return reply

    def answer(self, node: Any, entry: Entry, reply: Any) -> None:
        """The node applied ``entry``: a client waiting for it there gets ``reply``, or
        ``LOST`` if its own entry was overwritten by another term's."""
        waiter = self.waiting.pop((node.id, node.inc, entry.index), None)
        if waiter is not None:
            waiter[1](reply if waiter[0] == entry.term else LOST)

    def skipped(self, entry: Entry) -> None:
        """A non-NORMAL entry applied: the reference moves past it."""
        if entry.index == self.ref_index + 1:
            self.ref_index = entry.index

    def _agree(self, node: Any, index: int) -> None:
        digest = node.kv.digest()
        first = self.digests.setdefault(index, digest)
        if first != digest:
            raise Violation("replica agreement", f"node {node.id}'s state at index {index} "
                            "(values, deadlines, time, sessions) differs from another replica's")

    def final_agreement(self, nodes: list[Any]) -> None:
        """Every node of ``nodes`` (settled: all applied to the same index) holds one state."""
        states = {(n.applied, n.kv.digest()) for n in nodes}
        if len(states) > 1:
            raise Violation("replica agreement", f"settled replicas differ: {sorted(states)}")

    # -- the reference and expiry -----------------------------------------------------------
    def _reference(self, entry: Entry) -> None:
        self.ref_index = entry.index
        if entry.kind != NORMAL:
            return
        ref = self.ref
        try:
            stamp, whole = decode_entry(entry.data)
        except KVDecodeError:
            ref.apply(entry.data)
            return
        args, _ = inner_command(whole)
        name = args[0].lower()
        keys = args[1:] if name == b"expired" else args[1:2] if name in _KEYED else []
        before = [(k, ref.holds(k), ref.deadline(k)) for k in keys]
        txn = self.txn
        pair = txn.before(ref, stamp) if txn is not None else None
        ref.runs = 0
        reply = ref.apply(entry.data)
        self.session_model.applied(entry.index, whole, ref.now, reply, ref.runs >= 2)
        if txn is not None and pair is not None:
            txn.applied(ref, entry.index, entry.term, name, reply, pair)
        at = self.stamped.get((entry.index, entry.term))
        if at is None:
            return  # not proposed through the simulator's clients (none are)
        now = ref.now
        for key, held, deadline in before:
            if held and deadline is not None and deadline <= now:
                # This entry sees the key expired (and, a write, removes it): not before
                # its true deadline, give or take the clocks' uncertainty.
                self.stats.expiry_removals += 1
                true_deadline = self.true_deadline(key, entry.index - 1)
                if true_deadline is not None and at < true_deadline - self.uncertainty(at):
                    raise Violation(
                        "expiry", f"entry {entry.index} (stamped at true time {at} ms) "
                        f"removes {key!r} whose true deadline is {true_deadline} ms "
                        f"(uncertainty {self.uncertainty(at)} ms): removed before its deadline")
            after = ref.deadline(key) if ref.holds(key) else None
            if after != (deadline if held else None):
                # A new deadline (a TTL relative to this entry's time), or none.
                self._set_true_deadline(key, entry.index,
                                        None if after is None else at + after - now)

    def _set_true_deadline(self, key: bytes, index: int, value: int | None) -> None:
        indexes = self.td_index.setdefault(key, [])
        values = self.td_value.setdefault(key, [])
        indexes.append(index)
        values.append(value)

    def true_deadline(self, key: bytes, index: int) -> int | None:
        """The true time ``key``'s deadline stands for in the state at ``index``."""
        indexes = self.td_index.get(key)
        if not indexes:
            return None
        pos = bisect.bisect_right(indexes, index) - 1
        return self.td_value[key][pos] if pos >= 0 else None

    def uncertainty(self, now: int) -> int:
        """How far (ms) a key's visibility may stray from its true deadline (module doc)."""
        u = self.clocks.spread() + _SLACK_MS
        if self.clocks.first_jump is not None:
            u += AGREE_MS + now // SLEW
        return u

    def served(self, node: Any, now: int) -> None:
        """A linearizable read was served on ``node``: with TTL traffic, it reads a key."""
        if self.ttl:
            self.read(node, self.rng.choice(TTL_KEYS), now)
        if self.txn is not None:
            self.txn.served(node)

    def read(self, node: Any, key: bytes, now: int) -> None:
        """A client reads ``key`` on ``node`` at true time ``now`` (a linearizable read,
        served once the node applied to its read index): GET and PTTL, checked."""
        kv, clock = node.kv, node.clock
        t = clock.now()
        last = self.read_time.get((node.id, node.inc), 0)
        if t < last:
            raise Violation("expiry", f"node {node.id}'s read time went back from {last} to "
                            f"{t}: a key it hid could be visible again")
        self.read_time[(node.id, node.inc)] = t
        self.stats.ttl_reads += 1
        value = kv.read([b"GET", key], t)
        pttl = kv.read([b"PTTL", key], t)
        if (value is None) != (pttl == -2):
            raise Violation("expiry", f"node {node.id}: GET {key!r} -> {value!r} but PTTL -> "
                            f"{pttl!r} at the same time")
        deadline = kv.deadline(key) if kv.holds(key) else None
        if deadline is None:
            return
        true_deadline = self.true_deadline(key, node.applied)
        if true_deadline is None:
            return
        u = self.uncertainty(now)
        if value is not None and now >= true_deadline + u:
            raise Violation("expiry", f"node {node.id} (applied {node.applied}) shows {key!r} "
                            f"at true time {now} ms, past its true deadline {true_deadline} "
                            f"ms + uncertainty {u} ms")
        if value is None:
            self.stats.hidden_reads += 1
            if now < true_deadline - u:
                raise Violation("expiry", f"node {node.id} hides {key!r} at true time {now} "
                                f"ms, before its true deadline {true_deadline} ms - "
                                f"uncertainty {u} ms")

    # -- sessions ---------------------------------------------------------------------------
    def _once(self, node: Any, op: ClientOp, index: int, reply: Any, runs: int) -> None:
        ran = runs >= 2 if op.wrapped else runs >= 1
        if ran:
            if op.exec_index is None:
                op.exec_index, op.first_reply = index, reply
            elif op.exec_index != index:
                raise Violation("exactly-once", f"{op} applied twice: at index "
                                f"{op.exec_index} and at {index} (node {node.id})")
            return
        self.stats.duplicates += 1
        if isinstance(reply, ErrorReply) and reply.text.startswith(SESSION_EXPIRED):
            return  # its session expired (by the log's rule: SessionModel checks that)
        if op.exec_index is None:
            if not isinstance(reply, ErrorReply):
                raise Violation("exactly-once", f"{op} at {index} answered {reply!r} from "
                                "the session table but never applied")
        elif reply != op.first_reply:
            raise Violation("exactly-once", f"{op}'s duplicate at {index} answered {reply!r}, "
                            f"its application at {op.exec_index} answered {op.first_reply!r}")

    def final_exactly_once(self, nodes: list[Any], ops: list[ClientOp]) -> None:
        """After the heal: counter and append log on every node of ``nodes`` against the
        commands applied; every acknowledged command applied."""
        incrs = [op for op in ops if op.args[0] == b"INCR"]
        appends = [op for op in ops if op.args[0] == b"APPEND"]
        for op in ops:
            if op.acked and op.exec_index is None:
                raise Violation("exactly-once", f"{op} was acknowledged but never applied")
        applied_incrs = sum(op.exec_index is not None for op in incrs)
        tokens = [op.args[2] for op in appends if op.exec_index is not None]
        for node in nodes:
            counter = node.kv.read([b"GET", COUNTER]) or b"0"
            if int(counter) != applied_incrs:
                acked = sum(op.acked for op in incrs)
                raise Violation("exactly-once", f"node {node.id}'s counter is {int(counter)}, "
                                f"{applied_incrs} increments applied ({acked} acknowledged)")
            log = node.kv.read([b"GET", LOG]) or b""
            got = [t + b";" for t in log.split(b";") if t]
            if sorted(got) != sorted(tokens):
                twice = sorted({t for t in got if got.count(t) > 1})
                raise Violation("exactly-once", f"node {node.id}'s append log holds "
                                f"{len(got)} tokens, {len(tokens)} appends applied"
                                + (f"; twice: {twice[:3]!r}" if twice else ""))
