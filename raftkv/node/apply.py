"""Applying committed entries to the state machine, and answering who waited for them.

Apply is total: whatever the log holds, nothing here raises (a raise would stop the node,
and every restart would replay the same entry), except MemoryError: a replica that cannot
allocate stops rather than skip an entry its peers applied (a restart replays it). A
NORMAL entry's command goes to the state machine (an entry of a form above this release's
feature level stops the node: ``EntryNeedsLevel``, raftkv.kv.features); a CONFIG entry's
configuration becomes the one a snapshot at this index records (and the state machine
forgets the published ids and levels it no longer lists); the writes proposed at these
indexes get their results (raftkv.node.requests), and the confirmed reads waiting for
this index are served.
The changes the entries made (raftkv.kv.changes, kept in the state machine's feed) go to
the listeners in ``on_changes`` once per batch: blocked XREADs, notifications.
Observers (the client port's Pub/Sub) hear of each applied NORMAL entry right after it, so
PUBLISHed messages reach this node's subscribers in log order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import trio

from raftkv.kv import KVStateMachine
from raftkv.kv.changes import Change, Record, iter_changes
from raftkv.kv.features import EntryNeedsLevel
from raftkv.log import event
from raftkv.node.clock import LeaderClock
from raftkv.node.requests import ReadBatch, RequestTracker
from raftkv.raft.membership import decode_config
from wire.raft import CONFIG, NORMAL, ClusterConfig, Entry, SnapshotMeta
from wire.reply import OK, ErrorReply

log = logging.getLogger("raftkv.node")
Observer = Callable[[int, list[tuple[bytes, bytes]], Iterable[Change]], None]
monotonic = time.monotonic  # (a module attribute: tests replace it)


async def free_in_slices(data: dict[bytes, bytes] | list[Any], step: int = 5000) -> None:
    """Free a large map or list dropped by the state machine, ``step`` items at a time."""
    pop = data.popitem if isinstance(data, dict) else data.pop
    while data:
        for _ in range(min(step, len(data))):
            pop()
        await trio.lowlevel.checkpoint()


class Applier:
    """The state machine's side of the node: what is applied, and up to where."""

    def __init__(self, kv: KVStateMachine, clock: LeaderClock, requests: RequestTracker,
                 stats: dict[str, int], background: Callable[..., None]) -> None:
        self.kv = kv
        self.clock = clock  # stamps our proposals as leader; the time reads use
        self.requests = requests
        self.stats = stats
        self.background = background  # starts a task of the node
        self.applied = 0
        # The term and configuration at ``applied``: a snapshot's meta.
        self.applied_term = 0
        self.applied_config = ClusterConfig()
        # Called with each applied batch's change records (if any; raftkv.kv.changes), in
        # the trio thread; must not raise or block (they fill Pendings and set Events).
        self.on_changes: list[Callable[[list[Record]], None]] = []
        # Called after each NORMAL entry with (its index, the messages it PUBLISHed, the
        # Changes it made); an observer must not raise (one that does is logged).
        self._observers: list[Observer] = []
        # How many observers hear of an entry that PUBLISHed nothing now: while none does,
        # such an entry tells them nothing (``listen``: the client port's Pub/Sub, which
        # ignores entries while it has no subscription; ~0.3 us a SET).
        self.listening = 0

    def observe(self, observer: Observer, listening: bool = True) -> None:
        """Call ``observer(index, published, changes)`` after each NORMAL entry; one not
        ``listening`` (then told by ``listen``) is told only of an entry that PUBLISHed."""
        self._observers.append(observer)
        self.listening += listening

    def listen(self, on: bool) -> None:
        """An observer starts (``on``) or stops wanting to hear of every entry."""
        self.listening += 1 if on else -1

    def restored(self, meta: SnapshotMeta) -> None:
        """The state machine now holds the snapshot ``meta`` (at start, or installed)."""
        self.clock.observe(self.kv.now)
        self.kv.feed.restored_at(meta.index)
        self.applied = meta.index
        self.applied_term, self.applied_config = meta.term, meta.config
        self.kv.configured(m.id for m in meta.config.members)  # (cluster_level's ids)

    def serve_read(self, args: list[bytes], now: int | None = None) -> Any:
        """Answer a confirmed read at ``now`` (this node's clock read by the caller, for
        a batch of reads all confirmed by then), else at the clock read now."""
        return self.kv.read_deferred(args, self.clock.now() if now is None else now)

    def apply(self, entries: list[Entry], until: float = math.inf) -> int:
        """Apply ``entries`` in order; with ``until`` (a ``monotonic()`` time), stop after
        the entry that reaches it, having applied at least one: how many were applied (the
        driver lets the loop run, then applies the rest: see ``CoreDriver._apply``)."""
        kv, requests = self.kv, self.requests
        kv_apply, writes, observers = kv.apply, requests.writes, self._observers
        listening = bool(self.on_changes)
        timed = until != math.inf
        changes: list[Record] = []
        done = 0
        # ``_apply_one``, ``requests.applied`` and ``_tell_observers`` inlined for NORMAL
        # entries (about 0.5 us of a SET's ~5 us here: issue 15), in the same order: the
        # waiter is answered, ``applied`` moves, then the observers hear of it.
        for entry in entries:
            index = entry.index
            if entry.kind == NORMAL:
                try:
                    result = kv_apply(entry.data, index)
                except (MemoryError, EntryNeedsLevel):
                    raise  # fail-stop, never diverge: see KVStateMachine.apply
                except Exception as exc:  # a state-machine bug must not become a crash loop
                    result = _failed(index, exc)
                if index in writes:  # (a follower has none)
                    requests.applied(entry, result)
                self.applied = index
                records = kv.last_records
                if listening and records:
                    changes += records
                if observers and (self.listening or kv.published):
                    self._tell_observers(index, records)
            else:
                requests.applied(entry, self._apply_one(entry))
                self.applied = index
            done += 1
            if timed and monotonic() >= until:
                break
        self.stats["applied"] += done
        if done:
            self.applied_term = entries[done - 1].term
        self.clock.observe(kv.now)
        ready = list(requests.reads_applied(self.applied))
        if ready:  # one clock reading for all: each read was asked before it
            now = self.clock.now()
            for waiter in ready:
                cast(ReadBatch, waiter.pending).serve(self.serve_read, now)
        if changes:
            for listener in self.on_changes:
                listener(changes)
        if kv.retired:
            self._free_retired()
        return done

    def _tell_observers(self, index: int, records: list[Record]) -> None:
        published = self.kv.take_published()
        # Lazily: an MSET's changes are made only if an observer reads them (keyspace
        # notifications on, with subscribers). One plain change (a SET's) is its own
        # iterable: no generator an entry for it.
        changes = records if len(records) == 1 and type(records[0]) is Change else None
        for observer in self._observers:
            try:
                observer(index, published, iter_changes(records) if changes is None else changes)
            except Exception as exc:  # delivery is best effort; applying must go on
                event(log, logging.ERROR, "an apply observer failed", index=index,
                      error=repr(exc))

    def _free_retired(self) -> None:
        """Free the maps FLUSHALL (or a snapshot install) dropped, a slice at a time: freeing
        a million keys in one go would hold the loop for an election timeout."""
        for old in self.kv.retired:
            self.background(free_in_slices, old)
        self.kv.retired.clear()

    def _apply_one(self, entry: Entry) -> Any:
        """One committed entry's reply (see the module docstring: never raises), but
        MemoryError: a replica that cannot allocate must stop rather than skip the entry."""
        if entry.kind == NORMAL:
            try:
                return self.kv.apply(entry.data, entry.index)
            except (MemoryError, EntryNeedsLevel):
                raise  # fail-stop, never diverge: see KVStateMachine.apply
            except Exception as exc:  # a state-machine bug must not become a crash loop
                return _failed(entry.index, exc)
        if entry.kind == CONFIG:
            try:
                self.applied_config = decode_config(entry.data)
            except Exception as exc:  # the core already acted on it; keep what we had
                event(log, logging.ERROR, "undecodable CONFIG entry ignored",
                      index=entry.index, error=repr(exc))
                return ErrorReply("ERR undecodable membership change")
            # A removed id is no longer published (raftkv.node.publish).
            self.kv.keep_members(m.id for m in self.applied_config.members)
            return OK  # a membership change (RAFT ADDNODE/...) is done once committed
        return None


def _failed(index: int, exc: Exception) -> ErrorReply:
    """The reply of a NORMAL entry whose apply raised (a state-machine bug), logged."""
    event(log, logging.ERROR, "applying an entry failed", index=index, error=repr(exc))
    return ErrorReply(f"ERR applying the command failed: {type(exc).__name__}")
