"""The replicated state machine: a map of bytes to bytes, changed only by applied commands.

Every node applies the same log in the same order, so ``apply`` must be a pure function of
(state, entry): no clock, no randomness, no iteration over unordered containers in replies
(KEYS sorts; SCAN uses a fixed hash order), and never an exception, whatever the entry
holds. A malformed entry yields an ``ErrorReply`` like any failing command.

**Time.** The machine never reads a clock. Each entry carries the leader's stamp (see
codec.py); "now" is the highest stamp applied (``self._now``), and a command sees the key
whose deadline is at or before now as missing. Relative TTLs (EX, PX, EXPIRE) become
deadlines at the entry's now, so every replica computes the same deadline. A key past its
deadline that a write touches is deleted then (lazy expiry, identical on every replica);
the leader also proposes ``EXPIRED key...`` entries for keys past their deadline, which
delete only keys whose deadline is at or before that entry's now. Reads (``read``) get a
time from the node, never below the applied now, and hide expired keys without deleting.

**Modification indexes** (WATCH). ``_seq`` counts applied entries; a write sets the key's
index to it. A key's version is ``(1, index)`` while it exists, and ``(0, index of the
entry that deleted it)`` when missing; the last ``MAX_TOMBS`` deletions are remembered, and
past that they are all forgotten at once, which changes the version of every missing key
(EXEC then fails although Redis would not: conservative, never the reverse). A key past its
deadline, not yet deleted, is ``(0, index)`` (its last write's): a create and its expiry
between WATCH and EXEC change it, as in Redis. Before ``WATCH_LEVEL`` (features.py) it was
its deletion index, as if the key had never been written: EXEC entries below that level,
and reads while the cluster is below it, keep that rule (every replica must agree). The
deletion of a key already past its deadline (``EXPIRED``, or a write meeting it) is no
change while every recorded member level is ``REAP_LEVEL`` or above: its tomb is its last
write's index, the version WATCH saw, so a WATCH before it and an EXEC after it compare
equal (attack20).

Semantics follow Redis 7 for the supported commands, with these differences:

* ``CAS key expected new`` is RaftKV's own: it sets ``key`` to ``new`` (keeping its TTL)
  and answers 1 only if ``key`` exists and holds exactly ``expected``; otherwise 0.
* KEYS answers in byte order of the keys; SCAN walks keys in hash order (see scan.py) and
  returns every key that exists for the whole scan exactly once.
* RANDOMKEY is deterministic: it picks by the hash order and the entry counter, so equal
  states answer the same key.
* FLUSHALL/FLUSHDB ASYNC and SYNC both empty the map immediately.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from wire.reply import OK, ErrorReply, SimpleString

from . import syntax
from .changes import GONE, META, VALUE, Change, ChangeRecorder, Record, expand
from .codec import decode_entry_level
from .commands import (
    COMMANDS,
    MAX_VALUE_LEN,
    SESSION_IDS,
    Decoded,
    Reply,
    check_arity,
    decode_exec,
    member_id,
    once_numbers,
    parse_level,
    parse_seq,
    session_id,
    validate,
)
from .errors import (
    FLOAT_NAN_OR_INF,
    INCR_OVERFLOW,
    INVALID_CURSOR,
    NO_SUCH_KEY,
    NOT_FLOAT,
    NOT_INTEGER,
    STRING_TOO_LONG,
    KVDecodeError,
    invalid_expire,
    unknown_command,
    wrong_arity,
)
from .features import (
    DEFAULT_BUDGET,
    FEATURE_LEVEL,
    REAP_LEVEL,
    WATCH_LEVEL,
    EntryNeedsLevel,
    budget_error,
    cluster_level,
    parse_budget,
)
from .feed import ChangeFeed
from .glob import Glob
from .numbers import (
    INT64_MAX,
    INT64_MIN,
    add_long_double,
    format_long_double,
    parse_cursor,
    parse_int64,
    parse_long_double,
)
from .scan import ScanOrder, key_hash
from .script_cache import ScriptCache
from .scripts import KEYED, ScriptRunner
from .sessions import MAY_APPLY, SessionTable
from .sliced import KeysJob, ScanBuild, ScanMatch, ScanRead, SlicedRead
from .state import KVState, decode_snapshot, encode_snapshot

# SCAN answers at most this many keys per call whatever COUNT asks (COUNT is a hint in
# Redis too), so one SCAN cannot hold the node's event loop for long.
SCAN_MAX_COUNT = 10_000
# Work units of glob.py's matcher (``Glob.steps``, patterns with ?, [ or \\; a unit is about
# one step of the old byte-at-a-time matcher, ~0.5 us) that KEYS and SCAN MATCH may take in
# one entry (a transaction), ~0.5 s at worst: enough for a `KEYS user:?*` over 100,000 short
# keys. Unbounded, one SCAN MATCH ?*x over an 8 MiB key (old matcher) held every replica's
# apply for 3.7 s, and a transaction may hold 100,000 of them (attack4). Scripts charge it
# in their budget; reads outside the log (``read``, tests and tools) are not bounded.
GLOB_STEPS_PER_ENTRY = 1_000_000
UNBOUNDED_STEPS = 1 << 62
# Keys that KEYS (the whole keyspace each) and SCAN (up to its COUNT) may walk in one entry
# (~0.2-0.8 s here): a transaction holds 100,000 of them, and with 20,000 keys one EXEC of
# SCAN 0 COUNT 10000s held every replica ~13 minutes (attack4). Outside MULTI they are
# sliced reads; scripts charge them in their budget (a script reaches ~200,000 at most).
WALK_KEYS_PER_ENTRY = 1_000_000
# Bytes SETRANGE and APPEND may copy in one entry (values are immutable: each copies the
# whole value, 28-66 ms for 8 MiB here; a transaction holds 100,000 of them: attack4).
COPY_BYTES_PER_ENTRY = 256 * 1024 * 1024
COPY_OVER = ErrorReply(
    f"ERR SETRANGE and APPEND in one transaction may copy at most {COPY_BYTES_PER_ENTRY} "
    "bytes of values in all: run this one outside MULTI")
WALK_OVER = ErrorReply(
    f"ERR KEYS and SCAN in one transaction may walk at most {WALK_KEYS_PER_ENTRY} keys in "
    "all: run this one outside MULTI")
GLOB_WORK_OVER = ErrorReply(
    f"ERR pattern matching in one transaction is limited to {GLOB_STEPS_PER_ENTRY} matcher "
    "steps (patterns with ?, [ or \\ over long keys): run this KEYS or SCAN outside MULTI")
# Maps at least this large are walked and freed in slices: FLUSHALL and replace hand them
# to the runtime (``retired``), and the first SCAN builds its order with ``ScanBuild``.
LARGE_MAP = 10_000
# Published member ids one state may hold: configurations are far smaller; a hostile log
# cannot grow the set (or a snapshot) without bound.
MAX_PUBLISHED = 4096

MAX_TOMBS = 100_000  # deleted keys whose deletion index WATCH can tell apart
HEAP_SLACK = 1024  # stale expiry-heap entries always allowed (``_push_deadline``)
_Handler = Callable[[list[bytes]], Reply]
_Entry = tuple[int, ErrorReply, _Handler, bool, str]  # arity, error, handler, is_write, name
KeyRecord = tuple[bytes | None, int | None, int | None, int | None]
# data, expires, mods, the deadline heap, tombs, gone (``keyspace``)
Keyspace = tuple[dict[bytes, bytes], dict[bytes, int], dict[bytes, int],
                 list[tuple[int, bytes]], dict[bytes, int], int]
_SESSION_COMMANDS = frozenset({"once", "session_open", "session_close"})
_STRING = SimpleString("string")
_NONE = SimpleString("none")

__all__ = ["MAX_VALUE_LEN", "KVState", "KVStateMachine", "decode_snapshot", "encode_snapshot"]


def _same(mapping: dict[Any, Any]) -> dict[Any, Any]:
    """``snapshot_state(copy=False)``'s stand-in for ``dict``: the map itself."""
    return mapping


def _setrange_past(args: list[bytes], limit: int) -> ErrorReply | None:
    """STRING_TOO_LONG if ``args`` is a SETRANGE writing past ``limit`` bytes (its other
    errors are validate()'s to answer)."""
    if (len(args) == 4 and args[0].lower() == b"setrange"
            and syntax.check_setrange(args, limit) is STRING_TOO_LONG):
        return STRING_TOO_LONG
    return None


class KVStateMachine:
    """The key-value map every node builds by applying the Raft log."""

    def __init__(self, *, max_value_len: int = MAX_VALUE_LEN,
                 feed: ChangeFeed | None = None) -> None:
        # Must be equal on every node of a cluster, like the code itself.
        self._max_value_len = max_value_len
        self._data: dict[bytes, bytes] = {}
        self._expires: dict[bytes, int] = {}  # key -> deadline (ms since the epoch)
        self._mods: dict[bytes, int] = {}  # key -> the entry (seq) that last changed it
        self._now = 0  # the highest stamp applied
        self._glob_left = GLOB_STEPS_PER_ENTRY  # matcher steps this entry may still take
        self._walk_left = WALK_KEYS_PER_ENTRY  # keys KEYS/SCAN may still walk in this entry
        self._copy_left = COPY_BYTES_PER_ENTRY  # value bytes SETRANGE/APPEND may still copy
        self._seq = 0  # entries applied
        # Commands applied by this process (an EXEC's each count; not state): what a node's
        # automatic snapshots count, a write run's entry being many (raftkv.node.snapshots).
        self.commands_applied = 0
        # WATCH versions of missing keys: the entry that deleted each recently deleted key
        # (at most MAX_TOMBS), else ``_gone``, the entry that last forgot them all.
        self._tombs: dict[bytes, int] = {}
        self._gone = 0
        self._scripts = ScriptCache()  # SCRIPT LOAD and EVAL bodies, bounded (script_cache.py)
        self._sessions = SessionTable()
        # Voters the leader recorded as having served (``publish_member``): a founder that
        # comes back empty under a published id lost its data (raftkv.node.publish).
        self._members_published: set[int] = set()
        # Members' feature levels as the leader recorded them (``member_level``), and the
        # ids of the applied configuration (``keep_members``; not state: the runtime's):
        # ``cluster_level`` is the lowest over them (raftkv.kv.features).
        self._levels: dict[int, int] = {}
        self._config_ids: frozenset[int] = frozenset()
        # The budget of scripts outside the log (EVAL_RO, reads): the node's
        # --script-budget; no replica depends on it.
        self.read_budget = DEFAULT_BUDGET
        # Caches, not state: SCAN's hash order (built by the first SCAN) and a heap of
        # (deadline, key) that may hold stale pairs (checked against _expires when popped).
        self._order: ScanOrder | None = None
        self._order_build: ScanBuild | None = None  # filling ``_order`` in slices
        self._heap: list[tuple[int, bytes]] = []
        # Large maps, lists and SCAN indexes dropped by FLUSHALL or replace, for the runtime
        # to free in slices (freeing a million keys at once would stall it).
        self.retired: list[dict[bytes, Any] | list[tuple[int, bytes]]] = []
        # What the running command sees: the time, and whether it may delete expired keys.
        self._t = 0
        self._writing = False
        self._level = 0  # the feature level of the entry being applied (``_version``)
        self._outer: list[bytes] = []  # the entry being applied (``_budget``)
        # PUBLISH's (channel, message) pairs applied and not yet taken by the runtime,
        # which delivers them to this node's subscribers (``take_published``; read, not
        # changed, by the runtime to skip an entry that PUBLISHed nothing).
        self.published: list[tuple[bytes, bytes]] = []
        # The change feed: what the entry being applied changed (changes.py); after each
        # ``apply``, ``last_records`` holds the entry's change records for the runtime to
        # read (``last_changes``: the same, expanded).
        self._recorder = ChangeRecorder()
        self.last_records: list[Record] = []
        # The retained tail of those changes (feed.py): history, kept out of ``==`` and
        # ``digest`` (nodes with other retention bounds hold other tails).
        self.feed = feed if feed is not None else ChangeFeed()
        self._scripting = ScriptRunner(self)
        # lower-case name -> (arity, arity error, handler, is_write)
        self._dispatch: dict[bytes, _Entry] = {
            name.encode(): (spec.arity, wrong_arity(name), getattr(self, "_" + name), spec.is_write,
                            name)
            for name, spec in COMMANDS.items()
        }

    # -- the runtime's interface -------------------------------------------------------

    @property
    def last_changes(self) -> list[Change]:
        """The changes of the entry applied last (``last_records`` expanded: an MSET's
        changes are one ``Bulk`` record there)."""
        return expand(self.last_records)

    @property
    def now(self) -> int:
        """The highest stamp applied (ms since the epoch): the replicated clock."""
        return self._now

    def apply(self, data: bytes, index: int | None = None) -> Reply:
        """Apply one log entry (see ``encode_entry``) and return its reply. Raises only
        ``MemoryError`` (which depends on the process, not the entry) and
        ``EntryNeedsLevel`` (a form of a later release: the node must stop, not skip it).

        ``index`` is the entry's log index, the revision of the changes it makes (left
        in ``last_records``); without one (tests, tools) the entry counter stands in."""
        try:
            stamp, level, args = decode_entry_level(data)
        except KVDecodeError as exc:
            self.last_records = []
            return ErrorReply(f"ERR corrupt command in the log: {exc}")
        if level > FEATURE_LEVEL:  # a later release's form: skipping it would diverge
            self.last_records = []
            raise EntryNeedsLevel(index, level)
        self._level = level
        self._seq += 1
        self.commands_applied += 1
        if index is None:
            index = self._seq
        recorder = self._recorder
        recorder.start(index)
        if stamp is not None and stamp > self._now:
            self._now = stamp
        self._t = self._now
        self._writing = True
        self._glob_left = GLOB_STEPS_PER_ENTRY
        self._walk_left = WALK_KEYS_PER_ENTRY
        self._copy_left = COPY_BYTES_PER_ENTRY
        self._scripting.begin_entry()  # the entry's scripts share one budget
        self._outer = args  # (``budget`` is valid only as the entry itself)
        try:  # (``_execute``, inlined: a decoded entry holds at least its name)
            return self._run(args, self._dispatch.get(args[0].lower()))
        except MemoryError:
            # Not a property of the entry: this replica, short of memory, would skip what its
            # peers applied and diverge for good. Stop instead (Redis's OOM handler does);
            # a restart replays the entry.
            raise
        except Exception as exc:  # a bug must not stop the apply loop; every replica agrees
            return ErrorReply(f"ERR internal error applying the command: {type(exc).__name__}")
        finally:
            self._writing = False
            self.last_records = records = recorder.finish(self._data, self._expires)
            self.feed.append(index, records)

    def take_published(self) -> list[tuple[bytes, bytes]]:
        """The messages PUBLISHed by the entries applied since the last call, in order."""
        published, self.published = self.published, []
        return published

    def read(self, args: list[bytes], now: int | None = None) -> Reply:
        """Answer a read command from the current state at time ``now`` (never below the
        applied stamp), changing nothing."""
        entry = self._dispatch.get(args[0].lower()) if args else None
        if entry is not None and entry[3]:
            name = args[0].lower().decode()
            return ErrorReply(f"ERR '{name}' is a write command: it must go through the log")
        self._t = self._now if now is None else max(self._now, now)
        self._glob_left = self._walk_left = UNBOUNDED_STEPS
        self._scripting.begin_entry(self.read_budget, KEYED)  # (one node: no divergence)
        try:
            return self._run(args, entry)
        except Exception as exc:  # same guard as apply: a read must not kill the loop
            return ErrorReply(f"ERR internal error serving the command: {type(exc).__name__}")

    def _execute(self, args: list[bytes]) -> Reply:
        return self._run(args, self._dispatch.get(args[0].lower()) if args else None)

    def _run(self, args: list[bytes], entry: _Entry | None) -> Reply:
        if entry is None:
            return unknown_command(args)
        arity, arity_error, handler, _, name = entry
        argc = len(args)
        if (argc != arity) if arity > 0 else (argc < -arity):
            return arity_error
        if not self._writing:
            return handler(args)
        # The change record (changes.py), inlined: this is the path of every applied write.
        # (No try/finally: a command that raises is settled by ``apply``'s ``finish``.)
        recorder = self._recorder
        if recorder.pending:
            recorder.settle(self._data, self._expires)
        outer, recorder.op = recorder.op, name
        reply = handler(args)
        if recorder.pending:
            recorder.settle(self._data, self._expires)
        recorder.op = outer
        return reply

    def growth_error(self, args: list[bytes], limit: int, decoded: Decoded | None = None
                     ) -> ErrorReply | None:
        """Before proposing: STRING_TOO_LONG if ``args`` (or a command inside ONCE or
        EXEC) is a SETRANGE whose offset and piece reach past ``limit`` bytes.

        The node passes its --max-request-bytes: a value no client could SET must not be
        built a piece at a time. Only the arguments decide it; APPEND depends on the value's
        length when the entry applies, which this node's state (it may lag) cannot tell, so
        the apply check alone (``max_value_len``, the same on every replica) decides it: a
        stale length here would refuse an APPEND after an acknowledged DEL. ``decoded``:
        ``exec_of(args)`` (commands.py), if the caller has it.
        """
        name = args[0].lower() if args else b""
        while name == b"once" and len(args) > 4:  # (a loop, not a call: every RAFT ONCE)
            args = args[3:]
            name = args[0].lower()
        if name == b"exec" and len(args) == 2:
            if decoded is None:
                decoded = decode_exec(args[1])
            if isinstance(decoded, ErrorReply):
                return None  # validate() answers it
            for command in decoded[1]:
                error = _setrange_past(command, limit)
                if error is not None:
                    return error
            return None
        return _setrange_past(args, limit)

    def expired_keys(self, now: int, limit: int,
                     fits: Callable[[bytes], bool] | None = None) -> list[bytes]:
        """Up to ``limit`` keys whose deadline is at or before ``now``, earliest first: what
        the leader proposes to delete (``EXPIRED``). Changes no state, only the heap cache.
        A key ``fits`` refuses (one no ``EXPIRED`` can carry) leaves the cache for good, to
        the reads that hide it and the writes that meet it: kept as a candidate, a batch of
        them due first filled every batch, and no other key expired again (attack11)."""
        heap, expires = self._heap, self._expires
        found: list[tuple[int, bytes]] = []
        while heap and heap[0][0] <= now and len(found) < limit:
            item = heapq.heappop(heap)
            deadline, key = item
            if (expires.get(key) == deadline and (fits is None or fits(key))
                    and (not found or found[-1] != item)):  # (a deadline pushed twice)
                found.append(item)
        for item in found:  # until the deletion applies, they stay candidates
            heapq.heappush(heap, item)
        return [key for _, key in found]

    def read_deferred(self, args: list[bytes], now: int | None = None) -> Reply | SlicedRead:
        """``read`` at time ``now``, except for reads that walk a large map: ``KEYS`` and the
        first ``SCAN`` or ``RANDOMKEY`` return a ``SlicedRead`` for the runtime to finish in
        slices (see sliced.py). KEYS copies the key list and the deadlines now (point in
        time) and drops the keys expired at the read's time; SCAN and RANDOMKEY (which picks
        by SCAN's hash order) answer through ``read`` once the order is built, at ``now`` or
        the applied stamp of that moment if higher. RANDOMKEY inside EXEC or a script runs
        on apply and still finishes the order at once (``_scan_order``)."""
        name = args[0].lower() if args else b""
        if name == b"keys" and len(args) == 2:
            t = self._now if now is None else max(self._now, now)
            deadlines = dict(self._expires) if self._expires else None
            return KeysJob(list(self._data), args[1], deadlines, t)
        if name in (b"scan", b"randomkey"):
            if self._order is None and len(self._data) >= LARGE_MAP:
                self._order = ScanOrder(())  # records keys added while it is built
                self._order_build = ScanBuild(list(self._data), self._order)
            elif (self._order_build is None and self._order is not None
                  and self._order.pending >= LARGE_MAP):  # a big MSET since: merged in slices
                keys, base = self._order.take_pending(self._data)
                self._order_build = ScanBuild(keys, self._order, base)
            build = self._order_build
            if name == b"randomkey":
                return self.read(args, now) if build is None else ScanRead(
                    build, lambda: self.read(args, now))
            options = syntax.parse_scan_options(args) if len(args) >= 2 else None
            if isinstance(options, syntax.ScanOptions) and options.pattern is not None:
                # The batch without MATCH now (or once built), its keys matched in slices.
                unmatched = args[:2] + [x for i in range(2, len(args), 2)
                                        if syntax.option_word(args[i]) != b"match"
                                        for x in args[i : i + 2]]
                return ScanMatch(build, lambda: self.read(unmatched, now), options.pattern)
            if build is not None:
                return ScanRead(build, lambda: self.read(args, now))
        return self.read(args, now)

    def snapshot(self) -> bytes:
        """The whole state as msgpack, keys sorted: equal states give identical bytes."""
        return encode_snapshot(self.snapshot_state(copy=False))  # (encoded before any apply)

    def snapshot_state(self, *, with_feed: bool = True, copy: bool = True) -> KVState:
        """Cheap copies of the state (values are immutable) for ``encode_snapshot``
        elsewhere, e.g. in a worker thread while this machine keeps applying; with the
        feed's tail unless ``with_feed`` is false (comparing states, not histories).
        ``copy=False`` hands over the large maps themselves, for an encoder that runs
        before this machine applies anything more (a forked child's memory is frozen at
        the fork: its copies were ~10 MB more of its private memory at 100k keys)."""
        c: Callable[[dict[Any, Any]], dict[Any, Any]] = dict if copy else _same
        return KVState(c(self._data), c(self._expires), c(self._mods), self._now,
                       self._seq, self._gone, self._scripts.bodies(), c(self._tombs),
                       self._sessions.state(), self.feed.state() if with_feed else None,
                       self._scripts.eval_order(), set(self._members_published),
                       dict(self._levels))

    def state_copy(self) -> dict[bytes, bytes]:
        """A copy of the map of values (tests and checks compare it with a model)."""
        return dict(self._data)

    def restore(self, blob: bytes) -> None:
        """Replace the state with a ``snapshot()``; ``KVDecodeError`` (state kept) if invalid."""
        self.replace(decode_snapshot(blob))

    def replace(self, state: KVState | dict[bytes, bytes]) -> None:
        """Take ``state`` (from ``decode_snapshot``, decoded elsewhere) as the whole state;
        the old one's large maps go to ``retired``."""
        if isinstance(state, dict):
            state = KVState(data=state)
        self._drop_state()
        self._retire(self._tombs)
        self._data = state.data
        self._expires = state.expires
        self._mods = state.mods
        self._now = state.now
        self._seq = state.seq
        self._gone = state.gone
        self._tombs = state.tombs
        self._scripts = ScriptCache(state.scripts, state.eval_order)
        self._sessions = SessionTable(state.sessions)
        self._members_published = set(state.published)
        self._levels = dict(state.levels)
        self.feed.replace(state.feed)
        self._heap = [(deadline, key) for key, deadline in self._expires.items()]
        heapq.heapify(self._heap)

    # -- inspection (tests, chaos checks) ------------------------------------------------

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KVStateMachine):
            return NotImplemented
        return self.snapshot_state(with_feed=False) == other.snapshot_state(with_feed=False)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<KVStateMachine keys={len(self._data)} now={self._now}>"

    def digest(self) -> str:
        """A short fingerprint of the state, equal on nodes with equal states."""
        state = encode_snapshot(self.snapshot_state(with_feed=False))
        return hashlib.blake2b(state, digest_size=16).hexdigest()

    def key_names(self) -> Iterable[bytes]:
        """The stored keys, expired ones included, in no set order (what a proposer's
        estimate of a transaction's pattern matching walks: raftkv.kv.entry_cost)."""
        return self._data.keys()

    @property
    def expiring(self) -> int:
        """How many keys have a deadline (INFO keyspace's ``expires``)."""
        return len(self._expires)

    def deadline(self, key: bytes) -> int | None:
        """``key``'s expiry deadline in ms, or None (tests and checks)."""
        return self._expires.get(key)

    def stored_len(self, key: bytes) -> int:
        """The length of ``key``'s stored value (0 if none), whatever its deadline: what
        an APPEND or SETRANGE of it would copy (the client port takes turns on large ones)."""
        value = self._data.get(key)
        return len(value) if value is not None else 0

    # -- helpers ---------------------------------------------------------------------------

    def _alive(self, key: bytes) -> bytes | None:
        """The value of ``key`` unless missing or expired at the command's time; a write
        deletes the expired key it meets (every replica meets it at the same entry)."""
        value = self._data.get(key)
        if value is not None and self._expires:
            deadline = self._expires.get(key)
            if deadline is not None and deadline <= self._t:
                if self._writing:
                    self._remove(key, lazy=True)
                return None
        return value

    def _store(self, key: bytes, value: bytes, *, keep_ttl: bool = False) -> None:
        data = self._data
        if key not in data:
            if self._order is not None:
                self._order.added(key)
        elif not keep_ttl and self._expires:
            self._expires.pop(key, None)
        data[key] = value
        self._mods[key] = self._seq
        self._recorder.note(key, VALUE)

    def _remove(self, key: bytes, *, lazy: bool = False) -> bool:
        """Delete ``key``; ``lazy``: because a write met it past its deadline. A key past
        its deadline keeps its version at ``REAP_LEVEL`` (``_reaps_keep_versions``: the
        deletion is no EXEC entry that could carry a level)."""
        if self._data.pop(key, None) is None:
            return False
        if lazy:
            self._recorder.expired(key)
        else:
            self._recorder.note(key, GONE)
        deadline = self._expires.pop(key, None)
        mod = self._mods.pop(key, None)
        tombs = self._tombs
        if (mod is not None and deadline is not None and deadline <= self._t
                and self._reaps_keep_versions()):
            tombs[key] = mod  # it was missing already: its version stays (module docstring)
        else:
            tombs[key] = self._seq
        if len(tombs) > MAX_TOMBS:  # forget them all: every missing key's version changes
            tombs.clear()
            self._gone = self._seq
        if self._order is not None:
            self._order.removed()
        return True

    def _reaps_keep_versions(self) -> bool:
        """REAP_LEVEL's gate, at a deletion: every recorded member level at it or above.
        The record alone, not ``cluster_level``: a node that joined replays the entries
        before the first configuration entry with no configuration (the founders' is not
        in the log), where the founders have theirs, so a gate over the configuration's
        ids would differ between replicas there. It is the members' lowest all the same:
        ``keep_members`` records a member new to a configuration at 0, and the leader
        records the lowest levels first (raftkv.node.features)."""
        levels = self._levels
        return bool(levels) and min(levels.values()) >= REAP_LEVEL

    def _set_deadline(self, key: bytes, deadline: int) -> None:
        self._expires[key] = deadline
        self._mods[key] = self._seq
        self._push_deadline(deadline, key)
        self._recorder.note(key, META)

    def _push_deadline(self, deadline: int, key: bytes) -> None:
        """Add a candidate to the expiry heap. Only the leader's expiry pass pops stale
        ones (a deadline changed or the key gone), so on a node that never leads every write
        with a TTL left one behind for good: 100,000 ``SET k v PX`` to 10 keys held 100,000
        (harden11). Past twice the live deadlines the heap is rebuilt from them: amortized
        O(1) a push, and the same keys come out in the same order."""
        heap = self._heap
        heapq.heappush(heap, (deadline, key))
        if len(heap) > 2 * len(self._expires) + HEAP_SLACK:
            self._heap = [(d, k) for k, d in self._expires.items()]
            heapq.heapify(self._heap)

    def _version(self, key: bytes) -> tuple[int, int]:
        """What WATCH remembers and EXEC compares (see the module docstring). It deletes
        nothing: EXEC's check must not lazily delete a key that expired before the WATCH
        (that would give it a new deletion index and fail an EXEC nothing changed; the
        simulator's seed 12 of --txn). The commands that run after it delete it."""
        if key not in self._data:
            return (0, self._tombs.get(key, self._gone))
        deadline = self._expires.get(key)
        if deadline is not None and deadline <= self._t:
            # Expired, still in the map: its last write's index, which a create bumps
            # (before WATCH_LEVEL, its deletion index, which a create leaves: see above).
            level = self._level if self._writing else self.cluster_level
            mod = self._mods.get(key) if level >= WATCH_LEVEL else None
            return (0, self._tombs.get(key, self._gone) if mod is None else mod)
        return (1, self._mods.get(key, 0))

    def _incr_by(self, key: bytes, amount: int) -> Reply:
        current = self._alive(key)
        if current is None:
            value = 0
        else:
            parsed = parse_int64(current)
            if parsed is None:
                return NOT_INTEGER
            value = parsed
        value += amount
        if value < INT64_MIN or value > INT64_MAX:
            return INCR_OVERFLOW
        self._store(key, str(value).encode(), keep_ttl=True)
        return value

    def _expire_at(self, key: bytes, deadline: int) -> None:
        """Give ``key`` (alive) a deadline; one already past deletes it, as Redis does."""
        if deadline <= self._t:
            self._remove(key)
            self._recorder.deleted_by_deadline(key)
        else:
            self._set_deadline(key, deadline)

    # -- strings ---------------------------------------------------------------------------

    def _set(self, args: list[bytes]) -> Reply:
        key = args[1]
        if len(args) == 3 and not self._expires:  # the hot path: plain SET, no TTLs anywhere
            data = self._data
            if self._order is not None and key not in data:
                self._order.added(key)
            data[key] = value = args[2]
            self._mods[key] = self._seq
            recorder = self._recorder
            if recorder.pending:  # (``_run`` settles before each command: not seen)
                recorder.note(key, VALUE)
            else:  # the change as ``settle`` would make it: deadline None (no TTLs at all)
                recorder.set_value(key, value)
            return OK
        options = syntax.parse_set_options(args)
        if isinstance(options, ErrorReply):
            return options
        flags = options.flags
        deadline = None
        if options.expire is not None:
            deadline = options.expire.deadline(self._t, "set")
            if isinstance(deadline, ErrorReply):
                return deadline
        old = self._alive(key)
        if (flags & syntax.SET_NX and old is not None) or (flags & syntax.SET_XX and old is None):
            return old if flags & syntax.SET_GET else None
        self._store(key, args[2], keep_ttl=bool(flags & syntax.SET_KEEPTTL))
        if deadline is not None:
            self._expire_at(key, deadline)
        return old if flags & syntax.SET_GET else OK

    def _setnx(self, args: list[bytes]) -> Reply:
        if self._alive(args[1]) is not None:
            return 0
        self._store(args[1], args[2])
        return 1

    def _setex_generic(self, args: list[bytes], unit_ms: int, name: str) -> Reply:
        spec = syntax.parse_expire_value(args[2], unit_ms, False, name)
        if isinstance(spec, ErrorReply):
            return spec
        deadline = spec.deadline(self._t, name)
        if isinstance(deadline, ErrorReply):
            return deadline
        self._store(args[1], args[3])
        self._expire_at(args[1], deadline)
        return OK

    def _setex(self, args: list[bytes]) -> Reply:
        return self._setex_generic(args, 1000, "setex")

    def _psetex(self, args: list[bytes]) -> Reply:
        return self._setex_generic(args, 1, "psetex")

    def _getex(self, args: list[bytes]) -> Reply:
        options = syntax.parse_set_options(args, getex=True)
        if isinstance(options, ErrorReply):
            return options
        deadline = None
        if options.expire is not None:
            deadline = options.expire.deadline(self._t, "getex")
            if isinstance(deadline, ErrorReply):
                return deadline
        key = args[1]
        value = self._alive(key)
        if value is None:
            return None
        if deadline is not None:
            self._expire_at(key, deadline)
        elif options.flags & syntax.SET_PERSIST and self._expires.pop(key, None) is not None:
            self._mods[key] = self._seq
            self._recorder.note(key, META)
        return value

    def _getdel(self, args: list[bytes]) -> Reply:
        value = self._alive(args[1])
        if value is not None:
            self._remove(args[1])
        return value

    def _getset(self, args: list[bytes]) -> Reply:
        old = self._alive(args[1])
        self._store(args[1], args[2])
        return old

    def _del(self, args: list[bytes]) -> Reply:
        removed = 0
        for key in args[1:]:
            if self._alive(key) is not None and self._remove(key):
                removed += 1
        return removed

    _unlink = _del

    def _incr(self, args: list[bytes]) -> Reply:
        return self._incr_by(args[1], 1)

    def _decr(self, args: list[bytes]) -> Reply:
        return self._incr_by(args[1], -1)

    def _incrby(self, args: list[bytes]) -> Reply:
        amount = syntax.parse_increment(args[2])
        return amount if isinstance(amount, ErrorReply) else self._incr_by(args[1], amount)

    def _decrby(self, args: list[bytes]) -> Reply:
        amount = syntax.parse_decrement(args[2])
        return amount if isinstance(amount, ErrorReply) else self._incr_by(args[1], amount)

    def _incrbyfloat(self, args: list[bytes]) -> Reply:
        key = args[1]
        current = self._alive(key)
        base = parse_long_double(b"0" if current is None else current)
        increment = parse_long_double(args[2])
        if base is None or increment is None or not base.is_finite():
            return NOT_FLOAT
        total = add_long_double(base, increment)
        if total is None:
            return FLOAT_NAN_OR_INF
        value = format_long_double(total)
        self._store(key, value, keep_ttl=True)
        return value

    def _append(self, args: list[bytes]) -> Reply:
        key, suffix = args[1], args[2]
        current = self._alive(key)
        if current is None:
            self._store(key, suffix)
            return len(suffix)
        if len(current) + len(suffix) > self._max_value_len:
            return STRING_TOO_LONG
        if suffix and not self._copy_bytes(len(current) + len(suffix)):  # (b"" adds no copy)
            return COPY_OVER
        value = current + suffix
        self._store(key, value, keep_ttl=True)
        return len(value)

    def _setrange(self, args: list[bytes]) -> Reply:
        error = syntax.check_setrange(args, self._max_value_len)
        if error is not None:
            return error
        key, offset, piece = args[1], int(args[2]), args[3]
        current = self._alive(key)
        if not piece:
            return 0 if current is None else len(current)
        base = current or b""
        if not self._copy_bytes(max(len(base), offset + len(piece))):
            return COPY_OVER
        if len(base) < offset:
            base += b"\0" * (offset - len(base))
        value = base[:offset] + piece + base[offset + len(piece):]
        self._store(key, value, keep_ttl=True)
        return len(value)

    def _getrange(self, args: list[bytes]) -> Reply:
        start, end = parse_int64(args[2]), parse_int64(args[3])
        if start is None or end is None:
            return NOT_INTEGER
        value = self._alive(args[1]) or b""
        if start < 0 and end < 0 and start > end:
            return b""
        n = len(value)
        if start < 0:
            start = max(n + start, 0)
        if end < 0:
            end = max(n + end, 0)
        end = min(end, n - 1)
        if start > end or n == 0:
            return b""
        return value[start : end + 1]

    def _mset(self, args: list[bytes]) -> Reply:
        if len(args) % 2 == 0:
            return check_arity(args)
        # C-level updates, not ``_store`` key by key: a 100,000-key MSET is applied in one
        # go on every replica (590 ms key by key against 99 ms so, once a SCAN had built
        # the index; test_heavy_commands).
        keys, values = args[1::2], args[2::2]
        data = self._data
        if self._order is not None:  # SCAN's index learns the new keys (at its next SCAN)
            self._order.added_many(list(itertools.filterfalse(data.__contains__, keys)))
        data.update(zip(keys, values, strict=True))
        fresh = dict.fromkeys(keys, self._seq)
        self._mods.update(fresh)
        self._recorder.set_many(keys, values if len(fresh) == len(keys) else None, data)
        expires = self._expires
        if expires:  # MSET drops any TTL, as SET does (stale heap pairs are skipped)
            for key in keys:
                expires.pop(key, None)
        return OK

    def _msetnx(self, args: list[bytes]) -> Reply:
        if len(args) % 2 == 0:
            return check_arity(args)
        if any(self._alive(args[i]) is not None for i in range(1, len(args), 2)):
            return 0
        for i in range(1, len(args), 2):
            self._store(args[i], args[i + 1])
        return 1

    def _cas(self, args: list[bytes]) -> Reply:
        key = args[1]
        current = self._alive(key)
        if current is None or current != args[2]:
            return 0
        self._store(key, args[3], keep_ttl=True)
        return 1

    # -- keyspace --------------------------------------------------------------------------

    def _flushall(self, args: list[bytes]) -> Reply:
        error = syntax.check_flushall(args)
        if error is not None:
            return error
        if self._data:  # every missing key's WATCH version becomes this entry
            self._gone = self._seq
            self._retire(self._tombs)
            self._tombs = {}
            self._recorder.flushed()
        self._drop_state()
        return OK

    _flushdb = _flushall

    def _drop_state(self) -> None:
        """Empty the map, its deadlines, versions, the deadline heap and the SCAN index;
        large ones go to ``retired``, freed later in slices by the runtime, small ones now.
        (``_tombs``, ``_gone``, ``_now``, ``_seq`` and scripts are the caller's to set.)"""
        self._retire(self._data)
        self._retire(self._expires)
        self._retire(self._mods)
        self._retire(self._heap)
        self._data, self._expires, self._mods, self._heap = {}, {}, {}, []
        if self._order is not None:
            self._retire(self._order.release())
        self._order = None
        self._order_build = None

    def _retire(self, old: dict[bytes, Any] | list[tuple[int, bytes]]) -> None:
        """``old`` is being dropped: a large one is handed to the runtime to free."""
        if len(old) >= LARGE_MAP:
            self.retired.append(old)

    def _rename_generic(self, args: list[bytes], nx: bool) -> Reply:
        src, dst = args[1], args[2]
        value = self._alive(src)
        if value is None:
            return NO_SUCH_KEY
        if src == dst:
            return 0 if nx else OK
        if nx and self._alive(dst) is not None:
            return 0
        deadline = self._expires.get(src)
        self._remove(src)
        self._store(dst, value)
        if deadline is not None:
            self._set_deadline(dst, deadline)
        return 1 if nx else OK

    def _rename(self, args: list[bytes]) -> Reply:
        return self._rename_generic(args, False)

    def _renamenx(self, args: list[bytes]) -> Reply:
        return self._rename_generic(args, True)

    def _copy(self, args: list[bytes]) -> Reply:
        options = syntax.parse_copy_options(args)
        if isinstance(options, ErrorReply):
            return options
        src, dst = args[1], args[2]
        value = self._alive(src)
        if value is None:
            return 0
        if self._alive(dst) is not None:
            if not options:
                return 0
            self._remove(dst)
        self._store(dst, value)
        deadline = self._expires.get(src)
        if deadline is not None:
            self._set_deadline(dst, deadline)
        return 1

    def _type(self, args: list[bytes]) -> Reply:
        return _NONE if self._alive(args[1]) is None else _STRING

    def _object(self, args: list[bytes]) -> Reply:
        error = syntax.check_object(args)
        if error is not None:
            return error
        value = self._alive(args[2])
        if value is None:
            return None
        if len(value) <= 20 and parse_int64(value) is not None:
            return b"int"
        return b"embstr" if len(value) <= 44 else b"raw"

    def _touch(self, args: list[bytes]) -> Reply:
        return sum(1 for key in args[1:] if self._alive(key) is not None)

    def _randomkey(self, args: list[bytes]) -> Reply:
        if not self._data:
            return None
        entries = self._scan_order().entries(self._data)
        start = bisect.bisect_left(entries, (key_hash(self._seq.to_bytes(8, "big")), b""))
        for i in range(len(entries)):
            key = entries[(start + i) % len(entries)][1]
            if self._alive(key) is not None:
                return key
        return None

    # -- expiry ----------------------------------------------------------------------------

    def _expire_generic(self, args: list[bytes], unit_ms: int, absolute: bool) -> Reply:
        parsed = syntax.parse_expire_args(args, unit_ms)
        if isinstance(parsed, ErrorReply):
            return parsed
        when, flags = parsed
        if not absolute:
            if when > INT64_MAX - self._t:
                return invalid_expire(args[0].lower().decode("utf-8", "replace"))
            when += self._t
        key = args[1]
        if self._alive(key) is None:
            return 0
        current = self._expires.get(key)
        if flags & syntax.EXPIRE_NX and current is not None:
            return 0
        if flags & syntax.EXPIRE_XX and current is None:
            return 0
        if flags & syntax.EXPIRE_GT and (current is None or when <= current):
            return 0
        if flags & syntax.EXPIRE_LT and current is not None and when >= current:
            return 0
        self._expire_at(key, when)
        return 1

    def _expire(self, args: list[bytes]) -> Reply:
        return self._expire_generic(args, 1000, False)

    def _pexpire(self, args: list[bytes]) -> Reply:
        return self._expire_generic(args, 1, False)

    def _expireat(self, args: list[bytes]) -> Reply:
        return self._expire_generic(args, 1000, True)

    def _pexpireat(self, args: list[bytes]) -> Reply:
        return self._expire_generic(args, 1, True)

    def _persist(self, args: list[bytes]) -> Reply:
        key = args[1]
        if self._alive(key) is None or self._expires.pop(key, None) is None:
            return 0
        self._mods[key] = self._seq
        self._recorder.note(key, META)
        return 1

    def _ttl_generic(self, key: bytes, ms: bool, absolute: bool) -> Reply:
        if self._alive(key) is None:
            return -2
        deadline = self._expires.get(key)
        if deadline is None:
            return -1
        if absolute:
            return deadline if ms else deadline // 1000
        left = max(deadline - self._t, 0)
        return left if ms else (left + 500) // 1000

    def _ttl(self, args: list[bytes]) -> Reply:
        return self._ttl_generic(args[1], False, False)

    def _pttl(self, args: list[bytes]) -> Reply:
        return self._ttl_generic(args[1], True, False)

    def _expiretime(self, args: list[bytes]) -> Reply:
        return self._ttl_generic(args[1], False, True)

    def _pexpiretime(self, args: list[bytes]) -> Reply:
        return self._ttl_generic(args[1], True, True)

    def _expired(self, args: list[bytes]) -> Reply:
        """RaftKV's own: delete those keys whose deadline is at or before this entry's now."""
        removed = 0
        for key in args[1:]:
            deadline = self._expires.get(key)
            if deadline is not None and deadline <= self._t and self._remove(key):
                removed += 1
        return removed

    # -- members that served (raftkv.node.publish) -----------------------------------------

    def _publish_member(self, args: list[bytes]) -> Reply:
        """``publish_member id``: the leader saw voter ``id`` acknowledge an entry. 1 if it
        is new, 0 if it was published already. Total: the log is input too."""
        node_id = member_id(args[1])
        if node_id is None:
            return ErrorReply("ERR malformed member id in publish_member")
        if node_id in self._members_published:
            return 0
        if len(self._members_published) >= MAX_PUBLISHED:
            return ErrorReply(f"ERR more than {MAX_PUBLISHED} published members")
        self._members_published.add(node_id)
        return 1

    def is_published(self, node_id: int) -> bool:
        """Whether ``node_id`` has served as a voter of this cluster (and was not removed
        since)."""
        return node_id in self._members_published

    @property
    def published_members(self) -> frozenset[int]:
        return frozenset(self._members_published)

    def next_to_publish(self, leader: int, voters: Iterable[int],
                        match: Callable[[int], int]) -> int:
        """The first of ``voters`` the leader ``leader`` should publish now, or 0: not yet
        published, and the leader itself or a voter that acknowledged an entry of its term
        (``match(id)`` > 0, the leader's progress). The runtime's and the simulator's rule."""
        for node_id in voters:
            if node_id not in self._members_published and (node_id == leader
                                                           or match(node_id) > 0):
                return node_id
        return 0

    def keep_members(self, ids: Iterable[int]) -> None:
        """A configuration applied: forget the published ids it no longer lists, so an id
        removed (RAFT REMOVENODE) and added again starts unpublished. Called by the runtime
        for every applied CONFIG entry, in log order, on every replica. Their levels go the
        same way (and its ids become ``cluster_level``'s: see ``configured``); once any
        level is recorded, an id new to the record is recorded at 0, as the leader counts
        a member it has not recorded (``_reaps_keep_versions`` reads the record alone)."""
        ids = frozenset(ids)
        self._members_published.intersection_update(ids)
        self._config_ids = ids
        levels = self._levels
        for node_id in [i for i in levels if i not in ids]:
            del levels[node_id]
        if levels:  # a new member counts 0 until recorded (``_reaps_keep_versions``)
            for node_id in sorted(ids - levels.keys()):
                levels[node_id] = 0

    # -- feature levels (raftkv.kv.features) -----------------------------------------------

    def configured(self, ids: Iterable[int]) -> None:
        """The configuration of a snapshot restored: the ids ``cluster_level`` and
        ``member_level`` go by (nothing forgotten: the snapshot's state is as it was)."""
        self._config_ids = frozenset(ids)

    def _member_level(self, args: list[bytes]) -> Reply:
        """``member_level id level``: the leader learned member ``id`` applies entry forms
        up to ``level``. 1 if that changed the record, 0 if not. Total. Any id is taken, as
        ``publish_member`` takes it (a configuration forgets it): the founders' first
        configuration is not in the log, so a check against the applied one would refuse on
        a node that joined what the founders took (a chaos run's replicas differed so)."""
        node_id, level = member_id(args[1]), parse_level(args[2])
        if node_id is None or level is None:
            return ErrorReply("ERR malformed member_level")
        if self._levels.get(node_id) == level:
            return 0
        if node_id not in self._levels and len(self._levels) >= MAX_PUBLISHED:
            return ErrorReply(f"ERR more than {MAX_PUBLISHED} member levels")
        self._levels[node_id] = level
        return 1

    @property
    def member_levels(self) -> dict[int, int]:
        """The recorded level of each member that has one (a copy)."""
        return dict(self._levels)

    @property
    def cluster_level(self) -> int:
        """The lowest level over the applied configuration's members (unknown: 0)."""
        return cluster_level(self._levels, self._config_ids)

    def _budget(self, args: list[bytes]) -> Reply:
        """``budget units inner...``: ``inner`` (it runs scripts) with the script budget
        the leader recorded and the KEYED charges (features.py). A malformed one answers
        its error, deterministically; it is never nested (``budget_error``)."""
        if args is not self._outer:  # inside EXEC or once: it would reset the budget
            return ErrorReply("ERR budget is valid only as a whole entry")
        error = budget_error(args)
        if error is not None:
            return error
        units = parse_budget(args[1])
        assert units is not None  # (budget_error checked it)
        self._scripting.begin_entry(units, KEYED)
        return self._execute(args[2:])

    # -- pub/sub ---------------------------------------------------------------------------

    def _publish(self, args: list[bytes]) -> Reply:
        """``PUBLISH channel message``: recorded for the runtime, no key changes. The reply
        is 0 here (inside EXEC or a script): how many clients receive it is each node's own
        business, so the client port answers a plain PUBLISH with its own count."""
        self.published.append((args[1], args[2]))
        return 0

    # -- transactions ----------------------------------------------------------------------

    def _watch(self, args: list[bytes]) -> Reply:
        """Each key's version ``[exists, index]`` (served as a read; the client port keeps
        them for EXEC)."""
        return [list(self._version(key)) for key in args[1:]]

    def _exec(self, args: list[bytes]) -> Reply:
        """``EXEC payload``: the queued commands of one MULTI, as one entry (commands.py
        builds the payload). A null reply if a watched key's version changed."""
        error = validate(args)  # (the server checked it; the log is input too)
        decoded = decode_exec(args[1])
        if error is not None or isinstance(decoded, ErrorReply):
            return error or ErrorReply("ERR malformed transaction")
        watches, commands = decoded
        for key, exists, index in watches:
            if self._version(key) != (exists, index):
                return None
        if self._writing:  # (the entry counted one)
            self.commands_applied += len(commands) - 1
        replies: list[Reply] = [self._execute(command) for command in commands]
        return replies

    # -- client sessions (sessions.py) ----------------------------------------------------

    def _session_open(self, args: list[bytes]) -> Reply:
        """``session_open timeout_ms [id]``: a new session. Its id is the one the proposing
        server drew at random (RAFT SESSION OPEN does), so another client cannot guess it;
        without one (entries written before ids were drawn), this entry's counter."""
        error = validate(args)
        if error is not None:
            return error
        sid = int(args[2]) if len(args) == 3 else self._seq
        return self._sessions.open(sid, int(args[1]), self._t) or sid

    def _session_close(self, args: list[bytes]) -> Reply:
        error = validate(args)
        if error is not None:
            return error
        return int(self._sessions.close(int(args[1]), self._t))

    def _once(self, args: list[bytes]) -> Reply:
        """``once session seq command...``: the command at most once per (session, seq).

        The proposing node validated the whole entry (``validate``: ``once_numbers``). The
        log is input too, so applying checks again what decides whether and how the
        command runs: the two numbers, a known write that is not a session command, its
        arity; the wrapped command's own syntax is its handler's to refuse, as in an entry
        without ``once``. Anything off answers ``once_numbers``'s error."""
        sessions = self._sessions
        # ``session_id`` and ``parse_seq``'s common cases, inlined (every replica, every
        # RAFT ONCE): an id seen before, a sequence number under 19 digits.
        sid = SESSION_IDS.get(args[1]) or session_id(args[1])
        raw = args[2]
        seq = int(raw) if raw.isdigit() and len(raw) < 19 and raw[0] != 48 else parse_seq(raw)
        inner = args[3:]
        entry = self._dispatch.get(inner[0].lower())
        if (sid is None or seq is None or entry is None or not entry[3]
                or entry[4] in _SESSION_COMMANDS
                or ((len(inner) != entry[0]) if entry[0] > 0 else (len(inner) < -entry[0]))):
            checked = once_numbers(args)  # refuses all of these, with validate's text
            if isinstance(checked, ErrorReply):
                return checked
            sid, seq = checked
        answer = sessions.recorded(sid, seq, self._t)
        if answer is not MAY_APPLY:
            return answer
        # (``_run`` with the entry looked up above, not ``_execute``, which looks it up
        # again: the simulator's CountingKV counts the commands run at ``_run``.)
        reply = self._run(inner, entry)
        # Into the table the state holds now, not ``sessions``: a failing script's undo
        # may have put another in its place (attack18).
        self._sessions.record(sid, seq, reply)
        return reply

    # -- scripts ---------------------------------------------------------------------------

    def _eval(self, args: list[bytes]) -> Reply:
        return self._scripting.eval(args, body=args[1], read_only=False)

    def _eval_ro(self, args: list[bytes]) -> Reply:
        return self._scripting.eval(args, body=args[1], read_only=True)

    def _evalsha(self, args: list[bytes]) -> Reply:
        return self._scripting.eval(args, body=None, read_only=False)

    def _evalsha_ro(self, args: list[bytes]) -> Reply:
        return self._scripting.eval(args, body=None, read_only=True)

    def _script(self, args: list[bytes]) -> Reply:
        sub = syntax.option_word(args[1])
        if sub == b"load" and len(args) == 3:
            error = self._scripting.compile_error(args[2])
            if error is not None:
                return error
            return self._scripts.load(args[2])
        if sub == b"flush" and len(args) <= 3:
            self._scripts.flush()
            return OK
        if sub == b"exists":
            return [1 if arg.lower() in self._scripts else 0 for arg in args[2:]]
        return syntax.check_script(args) or ErrorReply("ERR syntax error")

    def script_body(self, sha: bytes) -> bytes | None:
        """The loaded script with this sha1 (lower-case hex), or None."""
        return self._scripts.body(sha.lower())

    def remember_script(self, body: bytes) -> None:
        """An EVAL or EVALSHA ran ``body`` (it compiled): EVAL caches it, as Redis does, so
        that a later EVALSHA finds it; either makes an EVAL-cached body the newest."""
        self._scripts.used_by_eval(body)

    def key_record(self, key: bytes) -> KeyRecord:
        """All the state holds about ``key`` (value, deadline, index, deletion index): what
        a failing script's writes are undone to (scripts.py)."""
        return (self._data.get(key), self._expires.get(key), self._mods.get(key),
                self._tombs.get(key))

    def restore_key(self, key: bytes, record: KeyRecord) -> None:
        """Put ``key`` back as ``key_record`` saw it."""
        value, deadline, mod, tomb = record
        data = self._data
        if value is None:
            if data.pop(key, None) is not None and self._order is not None:
                self._order.removed()
        else:
            if key not in data and self._order is not None:
                self._order.added(key)
            data[key] = value
        new_deadline = deadline is not None and self._expires.get(key) != deadline
        for table, item in ((self._expires, deadline), (self._mods, mod), (self._tombs, tomb)):
            if item is None:
                table.pop(key, None)
            else:
                table[key] = item
        if new_deadline:  # (after the table: a rebuild of the heap reads it)
            self._push_deadline(deadline, key)  # type: ignore[arg-type]

    def change_mark(self) -> tuple[int, int, int]:
        """Where the entry's change records and PUBLISHed messages stand as a script
        starts: what ``retract_changes`` goes back to if the script fails."""
        recorder = self._recorder
        if recorder.pending:
            recorder.settle(self._data, self._expires)
        return (*recorder.mark(), len(self.published))

    def retract_changes(self, mark: tuple[int, int, int]) -> None:
        """A failing script's writes were undone: what they told the feed, watchers,
        keyspace notifications and subscribers since ``mark`` is dropped with them."""
        if self._writing:
            self._recorder.retract(mark[:2], self._data, self._expires)
        del self.published[mark[2]:]

    def keyspace(self) -> Keyspace:
        """The maps FLUSHALL replaces, by reference, and the deletion index: what a failing
        script's undo puts back if a FLUSHALL does run (``flushed``)."""
        return (self._data, self._expires, self._mods, self._heap, self._tombs, self._gone)

    def flushed(self, saved: Keyspace) -> bool:
        """Whether a FLUSHALL replaced every map of ``saved`` (it ran, on a non-empty
        keyspace), so that nothing will change them again."""
        return self._data is not saved[0] and self._tombs is not saved[4]

    def restore_keyspace(self, saved: Keyspace) -> None:
        """Put back the keyspace a FLUSHALL dropped (``keyspace``, ``flushed``): the maps
        the script wrote since are dropped, the old ones no longer handed to the runtime
        to free."""
        self._drop_state()
        self._retire(self._tombs)
        back = {id(old) for old in saved[:5]}
        self.retired[:] = [old for old in self.retired if id(old) not in back]
        self._data, self._expires, self._mods, self._heap, self._tombs, self._gone = saved

    @property
    def gone(self) -> int:
        """The entry that last forgot every deletion index (see the module docstring)."""
        return self._gone

    def call_from_script(self, args: list[bytes], read_only: bool) -> Reply:
        """``redis.call`` inside a script: RaftKV's own commands only, same time as the script."""
        entry = self._dispatch.get(args[0].lower()) if args else None
        name = args[0].lower() if args else b""
        if entry is None:
            return ErrorReply("ERR Unknown Redis command called from script")
        if name in _NOT_IN_SCRIPTS:
            return ErrorReply("ERR This Redis command is not allowed from script")
        if read_only and entry[3]:
            return ErrorReply("ERR Write commands are not allowed from read-only scripts.")
        error = validate(args)
        if error is not None:
            return error
        if entry[3] and max(map(len, args)) > self._max_value_len:
            # A write may not store what the script built past the value limit (a 100-byte
            # EVAL stored 30 MB): the same answer on every replica, from the arguments alone.
            return STRING_TOO_LONG
        return self._run(args, entry)

    # -- reads -----------------------------------------------------------------------------

    def _get(self, args: list[bytes]) -> Reply:
        return self._alive(args[1])

    def _exists(self, args: list[bytes]) -> Reply:
        return sum(1 for key in args[1:] if self._alive(key) is not None)

    def _strlen(self, args: list[bytes]) -> Reply:
        value = self._alive(args[1])
        return 0 if value is None else len(value)

    def _mget(self, args: list[bytes]) -> Reply:
        if not self._expires:  # no deadlines anywhere: one C-level pass
            return list(map(self._data.get, itertools.islice(args, 1, None)))
        alive = self._alive
        return [alive(key) for key in itertools.islice(args, 1, None)]

    def _keys(self, args: list[bytes]) -> Reply:
        pattern = args[1]
        alive = self._alive
        if not self._walk(len(self._data)):
            return WALK_OVER
        if pattern == b"*":  # (a list: ``alive`` deletes expired keys in a write's apply)
            return sorted(key for key in list(self._data) if alive(key) is not None)
        matched = self._matching(pattern, self._data)
        if isinstance(matched, ErrorReply):
            return matched
        return sorted(key for key in matched if alive(key) is not None)

    def _copy_bytes(self, size: int) -> bool:
        """Take ``size`` bytes from this entry's COPY_BYTES_PER_ENTRY; False if too few
        are left (deterministic, like ``_walk``). The entry's first copy is always allowed:
        one command alone is bounded by the largest string (a plain SETRANGE to 300 MB must
        still apply, or fail-stop on a replica short of memory, never answer an error)."""
        if size > self._copy_left and self._copy_left < COPY_BYTES_PER_ENTRY:
            return False
        self._copy_left -= size
        return True

    def _walk(self, keys: int) -> bool:
        """Take ``keys`` from this entry's WALK_KEYS_PER_ENTRY; False if too few are left
        (a function of the entry and the state: every replica answers alike)."""
        if keys > self._walk_left:
            return False
        self._walk_left -= keys
        return True

    def _matching(self, pattern: bytes, keys: Iterable[bytes]) -> list[bytes] | ErrorReply:
        """The ``keys`` that match ``pattern``, in order; GLOB_WORK_OVER once the
        matcher's work units in this entry pass GLOB_STEPS_PER_ENTRY (a function of the entry and
        the state: every replica stops at the same key)."""
        glob = Glob(pattern)
        if glob.literal_and_stars:  # C-level, linear in the key
            return [key for key in keys if glob.match(key)]
        matched: list[bytes] = []
        left = self._glob_left
        for key in keys:
            steps = glob.steps(key)
            try:
                while True:
                    left -= next(steps)
                    if left < 0:
                        self._glob_left = 0
                        return GLOB_WORK_OVER
            except StopIteration as done:
                if done.value:
                    matched.append(key)
        self._glob_left = left
        return matched

    def _scan(self, args: list[bytes]) -> Reply:
        cursor = parse_cursor(args[1])
        if cursor is None:
            return INVALID_CURSOR
        options = syntax.parse_scan_options(args)
        if isinstance(options, ErrorReply):
            return options
        count = min(options.count, SCAN_MAX_COUNT)
        if not self._walk(min(count, len(self._data))):
            return WALK_OVER
        following, keys = self._scan_order().batch(self._data, cursor, count)
        if not options.type_matches:
            keys = []
        elif options.pattern is not None:
            matched = self._matching(options.pattern, keys)
            if isinstance(matched, ErrorReply):
                return matched
            keys = matched
        if self._expires:
            keys = [key for key in keys if self._alive(key) is not None]
        return [str(following).encode(), keys]

    def _scan_order(self) -> ScanOrder:
        """SCAN's hash order, complete: one being built in slices (``read_deferred``) is
        finished here. RANDOMKEY needs it whole too: inside a script it runs on apply, and a
        replica whose order is half built must pick the key every other replica picks."""
        if self._order_build is not None:
            self._order_build.finish()
            self._order_build = None
        if self._order is None:
            self._order = ScanOrder(self._data)
        return self._order

    def _dbsize(self, args: list[bytes]) -> Reply:
        t = self._t
        return len(self._data) - sum(1 for d in self._expires.values() if d <= t)


# Commands a script may not call: transactions, scripts, and RaftKV's internal ones.
_NOT_IN_SCRIPTS = frozenset((b"exec", b"watch", b"eval", b"evalsha", b"eval_ro",
                             b"evalsha_ro", b"script", b"expired"))

