"""The simulator's checks of transactions, scripts and WATCH (``--txn``), and of session expiry.

Transactions (``EXEC payload`` entries, as the server's MULTI/EXEC builds them) and scripts
(``EVAL``) write the *pair* ``pa``/``pb``, always the same value and TTL to both in one
entry (txnclients.py). The reference state machine (kvmode.py: the committed log applied
once) tells ``TxnChecks`` what each entry did; it keeps the pair's history (the state
``key_record`` gives for each key after every entry that changed it) and checks:

* **atomicity**: every linearizable read (one ``MGET pa pb`` with each read the register
  workload makes, at the serving node's read time) sees both keys equal: a transaction or a
  script applied half would show;
* **linearizable against the model**: that MGET answers the pair as the reference left it
  at the index the node applied (its value, hidden at or past its deadline at the read's
  time);
* **replies**: an applied transaction answers one reply per command, an error exactly at
  the commands its client knows fail on the data (``INCR`` of a non-number) and nowhere
  else; a null reply only if it watched;
* **WATCH**: a watched transaction that applied saw, just before its entry and at its
  entry's time, the values its WATCH read (no lost update); one that answered null had a
  reason: an entry changed a watched key since the read, or the key's visibility differs
  between the read's time and the entry's (it expired).

``SessionModel`` is the log's own rule for session expiry, applied to the reference: a
session opened or used at log time u with timeout T is expired at an entry of time >= u + T,
and a ``once`` on it must answer ``SESSIONEXPIRED`` and not run its command; a ``once`` on a
live one must not answer it.
"""

from __future__ import annotations

import bisect
from typing import Any

import attrs

from chaos.sim.invariants import Violation
from raftkv.kv import KVStateMachine
from raftkv.kv.sessions import SESSION_EXPIRED
from wire.reply import ErrorReply

PA, PB = b"pa", b"pb"
PAIR = (PA, PB)
Record = tuple[Any, ...]  # KVStateMachine.key_record of pa, then of pb


@attrs.define(eq=False)
class WatchRead:
    """What a client's WATCH read: at ``index`` (the serving node's applied index) and
    node read time ``t``, the pair's versions and visible values."""

    index: int
    t: int
    versions: list[tuple[bytes, int, int]]
    values: tuple[bytes | None, bytes | None]


@attrs.define(eq=False)
class TxnOp:
    """One proposed transaction or script, as its client built it."""

    kind: str  # "exec" or "eval"
    commands: int = 0  # queued commands (exec)
    errors: frozenset[int] = frozenset()  # positions that must fail on the data
    watch: WatchRead | None = None
    script_fails: bool = False  # a script that must fail (and leave no write)


def visible(record: Record, t: int) -> tuple[bytes | None, bytes | None]:
    """The pair's values as a read at time ``t`` sees the state ``record``."""
    out = []
    for value, deadline in ((record[0], record[1]), (record[4], record[5])):
        out.append(None if value is None or (deadline is not None and deadline <= t)
                   else value)
    return out[0], out[1]


class TxnChecks:
    """The pair's history in the reference, and the checks above."""

    def __init__(self) -> None:
        self.ops: dict[tuple[int, int], TxnOp] = {}  # (index, term) -> the op proposed there
        self.hist_index: list[int] = [0]
        self.hist: list[Record] = [(None,) * 8]
        self.watch_wanted: list[Any] = []  # clients waiting for a WATCH read (served reads)
        self.stats: Any = None  # the KV layer's KVStats

    def proposed(self, index: int, term: int, op: TxnOp) -> None:
        self.ops[(index, term)] = op

    # -- the reference ----------------------------------------------------------------------
    def before(self, ref: KVStateMachine, stamp: int | None) -> tuple[Any, Any]:
        """The pair as the next entry (stamped ``stamp``) will see it, before it applies."""
        t = ref.now if stamp is None else max(ref.now, stamp)
        return self.record(ref), t

    @staticmethod
    def record(ref: KVStateMachine) -> Record:
        return ref.key_record(PA) + ref.key_record(PB)

    def applied(self, ref: KVStateMachine, index: int, term: int, name: bytes, reply: Any,
                before: tuple[Record, int]) -> None:
        """The reference applied entry ``index`` (command ``name``): record and check."""
        record = self.record(ref)
        if record != self.hist[-1]:
            self.hist_index.append(index)
            self.hist.append(record)
        op = self.ops.pop((index, term), None)
        if op is None:
            return
        if op.kind == "eval":
            self.stats.scripts += 1
            failed = isinstance(reply, ErrorReply)
            self.stats.script_failures += failed
            if failed != op.script_fails:
                raise Violation("transactions", f"script at {index} answered {reply!r}; it "
                                f"{'must' if op.script_fails else 'must not'} fail")
            if failed and record != before[0]:
                raise Violation("transactions", f"script at {index} failed ({reply!r}) but "
                                "left writes behind")
            return
        self.stats.txns += 1
        if reply is None:
            if op.watch is None:
                raise Violation("transactions", f"unwatched transaction at {index} answered "
                                "null")
            self.stats.txn_aborts += 1
            self._aborted(index, op.watch, before)
            return
        if type(reply) is not list or len(reply) != op.commands:
            raise Violation("transactions", f"transaction at {index} of {op.commands} "
                            f"commands answered {reply!r}")
        errors = frozenset(i for i, r in enumerate(reply) if isinstance(r, ErrorReply))
        self.stats.txn_errors += len(errors)
        if errors != op.errors:
            raise Violation("transactions", f"transaction at {index}: commands {sorted(errors)}"
                            f" failed, expected {sorted(op.errors)}: {reply!r}")
        if op.watch is not None:
            seen = visible(before[0], before[1])
            if seen != op.watch.values:
                raise Violation("transactions", f"watched transaction at {index} applied "
                                f"over {seen!r}; its WATCH at {op.watch.index} read "
                                f"{op.watch.values!r} (a lost update)")

    def _aborted(self, index: int, watch: WatchRead, before: tuple[Record, int]) -> None:
        first = bisect.bisect_right(self.hist_index, watch.index)
        changed = any(i < index for i in self.hist_index[first:])
        state_then = self.at(watch.index)
        if not changed and visible(state_then, watch.t) == visible(before[0], before[1]):
            raise Violation("transactions", f"watched transaction at {index} answered null, "
                            f"but nothing changed the pair since its WATCH at {watch.index}")

    def at(self, index: int) -> Record:
        """The pair's record in the reference after entry ``index``."""
        return self.hist[bisect.bisect_right(self.hist_index, index) - 1]

    # -- reads ------------------------------------------------------------------------------
    def served(self, node: Any) -> None:
        """A linearizable read was served on ``node``: check the pair; a WATCH reads here."""
        kv = node.kv
        t = max(node.clock.now(), kv.now)  # as ``read`` takes it: never below the applied
        got = kv.read([b"MGET", PA, PB], t)
        self.stats.pair_reads += 1
        if type(got) is not list or len(got) != 2 or got[0] != got[1]:
            raise Violation("transactions", f"node {node.id} (applied {node.applied}) reads "
                            f"the pair as {got!r}: a transaction or script applied in part")
        want = visible(self.at(node.applied), t)
        if tuple(got) != want:
            raise Violation("transactions", f"node {node.id} (applied {node.applied}) reads "
                            f"the pair as {got!r} at {t}, the reference's state there "
                            f"gives {want!r}")
        if self.watch_wanted:
            versions = kv.read([b"WATCH", PA, PB], t)
            watch = WatchRead(node.applied, t,
                              [(k, int(v[0]), int(v[1])) for k, v in zip(PAIR, versions,
                                                                        strict=True)],
                              (got[0], got[1]))
            self.stats.watches += 1
            self.watch_wanted.pop(0).watched = watch


class SessionModel:
    """Session expiry by the log's time, on the reference (see the module docstring)."""

    def __init__(self) -> None:
        self.sessions: dict[int, tuple[int, int]] = {}  # sid -> (timeout ms, last used)
        self.stats: Any = None

    def applied(self, index: int, args: list[bytes], now: int, reply: Any, ran: bool) -> None:
        name = args[0].lower()
        if name == b"session_open":
            if type(reply) is int:
                self.sessions[reply] = (int(args[1]), now)
            return
        if name == b"session_close":
            self.sessions.pop(int(args[1]), None)
            return
        if name != b"once":
            return
        sid = int(args[1])
        session = self.sessions.get(sid)
        expired = session is None or now >= session[1] + session[0]
        said = isinstance(reply, ErrorReply) and reply.text.startswith(SESSION_EXPIRED)
        if expired:
            self.sessions.pop(sid, None)
            if not said or ran:
                raise Violation("exactly-once", f"once on session {sid} at {index} (log time "
                                f"{now}) answered {reply!r}{' and ran' if ran else ''}; the "
                                "session had expired: SESSIONEXPIRED and no apply expected")
            self.stats.sessions_expired += 1
            return
        if said:
            raise Violation("exactly-once", f"once on session {sid} at {index} answered "
                            f"{reply!r} at log time {now}; the session is live until "
                            f"{session[1] + session[0]}")
        self.sessions[sid] = (session[0], now)
