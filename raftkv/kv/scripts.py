"""EVAL and friends: Lua scripts run by every replica when their entry applies.

A script is replicated as its invocation (body or sha, keys, arguments), so it must do the
same thing on every replica. Each run gets:

* a **fresh Lua 5.4 runtime** (lupa), so nothing carries over between calls, with a
  whitelisted environment: no ``os``, ``io``, ``require``, ``load``, ``debug``,
  ``collectgarbage``, ``math.random``, ``next``; ``pairs`` walks keys in sorted order
  (Lua's string hash is seeded per runtime, so its own order differs between replicas);
  ``tostring`` and ``string.format`` print no addresses.
* ``redis.call``/``redis.pcall`` over RaftKV's own commands, run at the script's entry's
  time (time stands still inside a script, as in Redis); ``redis.status_reply``,
  ``redis.error_reply``, ``redis.log`` (ignored) and ``KEYS``/``ARGV``.
* a **deterministic instruction budget**: a count hook fires every ``HOOK_STEP`` VM
  instructions; after ``INSTRUCTION_BUDGET`` instructions the script fails with the same
  error on every replica (the hook then fires at every instruction, so ``pcall`` cannot
  swallow it). A script that fails (any error it does not catch, the budget, the memory
  cap, a reply too large) leaves no write behind: ``_Journal`` undoes them (Redis keeps
  them; a script is one atomic entry here).
* a **memory cap** (``MAX_MEMORY``), through lupa's allocator: past it the script fails.
* a **cost for work outside the VM**, in instruction units, from inputs and outputs only:
  ``redis.call`` (``CALL_COST`` plus its arguments, reply, the keys it walks and the value
  it copies), string and table functions (lua_sandbox.py), pattern matching run in Lua
  (lua_patterns.py), and the VM's own operations whose cost grows with string length
  (``==``, ``<``, ``..``, ``t[k]``, ``...``), which the body is rewritten to call charged
  helpers for before it compiles (lua_rewrite.py; bodies of at most ``MAX_SCRIPT_BYTES``).
* **teardown at once**: nothing keeps the runtime alive after ``eval`` returns (the bridge
  holds it only while the script runs), so CPython frees it (``lua_close``) right there,
  at the same point of the entry on every replica, with its memory; no finalizer or weak
  table exists to run or change at that moment (lua_sandbox.py).

Both limits are part of the replicated semantics: every replica must run the same lupa and
Lua build with the same limits, like the rest of the code.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Protocol

import attrs
from lupa import lua54

from wire.reply import ErrorReply, SimpleString

from . import syntax
from .commands import Reply, lookup
from .errors import NOSCRIPT
from .glob import Glob
from .lua_patterns import PATTERNS
from .lua_rewrite import RewriteError, rewrite
from .lua_sandbox import SANDBOX
from .lua_sort import SORT

KeyRecord = tuple[bytes | None, int | None, int | None, int | None]


class ScriptHost(Protocol):
    """What a script may ask of the state machine it runs in (KVStateMachine is one);
    a Protocol, so this module does not import the machine that imports it."""

    @property
    def expiring(self) -> int: ...

    def call_from_script(self, args: list[bytes], read_only: bool) -> Reply: ...

    def script_body(self, sha: bytes) -> bytes | None: ...

    def remember_script(self, body: bytes) -> None: ...

    def key_record(self, key: bytes) -> KeyRecord: ...

    def restore_key(self, key: bytes, record: KeyRecord) -> None: ...

    def change_mark(self) -> Any: ...

    def retract_changes(self, mark: Any) -> None: ...

    def keyspace(self) -> Any: ...

    def flushed(self, saved: Any) -> bool: ...

    def restore_keyspace(self, saved: Any) -> None: ...

    def __len__(self) -> int: ...


NOT_FROM_SCRIPTS = ErrorReply("ERR This Redis command is not allowed from script")


class _Journal:
    """What a script's commands may change, saved before each runs, so that a script that
    fails leaves the state as it found it (scripts are atomic on every replica; Redis keeps
    the writes a failing script made, RaftKV does not).

    Each key a command names is saved once (its value, deadline, modification and deletion
    indexes). The first FLUSHALL/FLUSHDB that empties a non-empty keyspace keeps the maps
    it drops (``keyspace``: references; it puts new maps in their place, so nothing writes
    to the old ones again) and ends the journal: putting them back undoes all the script
    did after it, however many FLUSHALLs follow (attack18: each one copied the whole
    state, the change feed and sessions included). Undone in reverse order; then what the
    undone writes recorded for the change feed (XREAD, kv.watch, keyspace notifications)
    and the script's PUBLISHes are dropped (``retract_changes``): they never happened.
    What stays: expired keys a keyless read (KEYS, SCAN) deleted on the way, invisible to
    every read anyway (their ``expired`` changes stay in the feed), and a reset of the
    deletion indexes (``gone``) if the script's deletions overflowed them before any
    FLUSHALL, which only makes later EXECs fail, never pass. (PUBLISH names no key and
    changes no state: nothing to save; it was taken for a FLUSHALL, a whole copy a call.)"""

    def __init__(self, machine: ScriptHost) -> None:
        self._machine = machine
        self._undo: list[tuple[bytes | None, Any]] = []
        self._seen: set[bytes] = set()
        self._mark = machine.change_mark()  # the change feed's records, as they stand
        self._flushing: Any = None  # the keyspace as a FLUSHALL about to run found it
        self._flushed = False  # a FLUSHALL's undo is saved: it puts back all that follows

    def before(self, args: list[bytes]) -> None:
        if self._flushed:
            return
        spec = lookup(args[0])
        if spec is None:
            return
        if spec.name in _FLUSHES:
            if len(self._machine):  # (of an empty one: nothing a key record cannot undo)
                self._flushing = self._machine.keyspace()
            return
        for key in spec.keys(args):
            if key not in self._seen:
                self._seen.add(key)
                self._undo.append((key, self._machine.key_record(key)))

    def after(self) -> None:
        """The command ``before`` saw has run: a FLUSHALL that did replace the keyspace's
        maps leaves the old ones untouched, so they are its undo (no copy)."""
        saved, self._flushing = self._flushing, None
        if saved is not None and self._machine.flushed(saved):
            self._undo.append((None, saved))
            self._flushed = True

    def undo(self) -> None:
        self.after()  # (a command that raised)
        machine = self._machine
        for key, record in reversed(self._undo):
            if key is None:
                machine.restore_keyspace(record)
            else:
                machine.restore_key(key, record)
        self._undo = []
        machine.retract_changes(self._mark)  # the writes never happened: nor their changes


_FLUSHES = frozenset(("flushall", "flushdb"))

INSTRUCTION_BUDGET = 10_000_000
HOOK_STEP = 10_000
MAX_MEMORY = 64 * 1024 * 1024
MAX_REPLY_DEPTH = 64
MAX_REPLY_ITEMS = 1_000_000
MAX_REPLY_BYTES = MAX_MEMORY


def budget_error(budget: int) -> str:
    """The error of a script over ``budget`` units (the entry's budget named)."""
    return f"ERR Script exceeded the instruction budget ({budget} instructions)"


BUDGET_ERROR = budget_error(INSTRUCTION_BUDGET)
MEMORY_ERROR = "ERR Script exceeded the memory limit"

# What work outside the VM costs, in instructions (one takes ~15 ns here). Measured on the
# shared 2-core machine: a redis.call of GET or SET takes 15-20 us, so the whole budget is
# about 0.15-0.2 s of apply whatever a script spends it on.
CALL_COST = 1000
ITEM_COST = 50  # per argument and per reply element crossing the bridge
BYTES = 16  # bytes of argument or reply per instruction
KEY_COST = 300  # per key a command walks (KEYS: 4-6 us per key)
ORDER_COST = 100  # per key of SCAN's hash order, built once per script (SCAN, RANDOMKEY)
SCAN_KEY_COST = 50  # per key one SCAN walks (up to its COUNT, at most 10,000): ~0.5 us each
SCAN_MAX_WALK = 10_000  # machine.py's SCAN_MAX_COUNT


@attrs.frozen
class Charges:
    """What a ``redis.call`` costs beyond its bytes: per call, per argument, and per key
    argument of a read and of a write (``spec.keys``: MSET's keys, not its values)."""

    call: int
    item: int
    read_key: int
    write_key: int
    start: int = 0  # per script run: its fresh runtime and sandbox (``_run``)
    alloc: int = 0  # per KiB the script allocates (0: not charged, the collector runs)


# Entries of the old form (no ``budget`` recorded; raftkv.kv.features): a key argument
# cost ITEM_COST like any argument. Kept as it is forever: entries in logs apply so.
LEGACY = Charges(CALL_COST, ITEM_COST, 0, 0)
# The ``budget`` form and scripts outside the log: a key argument is charged what it
# costs. Measured in one apply (tests/bench/attack_script_keys.py, load ~2, one unit
# ~4-5 ns as a budget-spending loop spends them): per key in one call, DEL 3.0 us, MSET
# 1.8 us (a pair), MGET and EXISTS 1.25 us; a GET loop 2.4 us a call, a SET loop 3.8 us.
# So ~300 units a key read, ~700 a key written, on top of the call and its items.
# What starting one script costs every replica: a fresh LuaRuntime and its sandbox loaded
# from bytecode (``_run``), ~265 us in one apply at load 5-7 (luafast; ~960 us when the
# sandbox was compiled each time), where a budget-spending loop spends 10M units in ~60 ms
# (6 ns a unit): ~44,000 units. So the default budget (1,000,000) runs at most 19 scripts
# an entry (attack15: 1,000 in one EXEC held every replica 0.9-1.6 s).
START_COST = 50_000
# What a budget-form script allocates, per KiB (lua_sandbox.py's hook: the heap's growth,
# the collector stopped and run in the hook). attack16: a constructor of 250 nils is ~12
# instructions for 4 KiB, and a loop of them spent the 1M default in ~50 ms vs ~4 ms for
# a plain loop. Beyond their instructions' own cost, as a plain loop spends units
# (tests/bench/attack_script_alloc.py, load 1-2.5): tables ~13 units a KiB, string-keyed
# tables ~27, closures ~49. At 32, the 1M default takes 7 ms of constructors, 10 ms of
# closures or string-keyed tables, 4 ms of a plain loop; 64 MiB costs ~2.1M units.
ALLOC_COST = 32
# A script's start is charged too (attack15: 1,000 `EVAL "return 1" 0` in one EXEC, a few
# units each, held every replica 0.9-1.6 s): START_COST, its runtime and sandbox's setup.
KEYED = Charges(CALL_COST, ITEM_COST, 300, 700, START_COST, ALLOC_COST)
# Per unit of glob.py's matcher work (about one step of its Python port, ~0.5 us; a C-level
# scan of 256 bytes for literal-and-star patterns): KEYS and SCAN MATCH in a script.
GLOB_STEP_COST = 30


def _new_runtime() -> Any:
    return lua54.LuaRuntime(
        register_eval=False, register_builtins=False, encoding=None,
        max_memory=MAX_MEMORY, unpack_returned_tuples=True,
        attribute_filter=_deny_attributes,
    )


def _bytecode(source: str, name: str) -> bytes:
    """``source`` compiled to Lua bytecode (with its debug information, so error messages
    and line numbers stay those of the source), by a throwaway runtime.

    Compiling the sandbox, the pattern matcher and the sort from source took ~600 of the
    ~850 us every script paid before its own first instruction; each script still gets a
    fresh runtime and loads these, the same code, from bytecode. Only the host loads
    bytecode (mode "b"): a script's body is loaded as text, and scripts have no ``load``."""
    helper = lua54.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
    dump = helper.eval(b"function(src, name) return string.dump(assert(load(src, name, 't'))) end")
    code: bytes = dump(source.encode(), name.encode())
    return code


# lupa's ``execute`` names its chunk "<python>": the sandbox keeps that name in its messages.
_SANDBOX_CODE = _bytecode(SANDBOX, "<python>")
_PATTERNS_CODE = _bytecode(PATTERNS, "=patterns")
_SORT_CODE = _bytecode(SORT, "=sort")


class _Bridge:
    """``redis.call`` from Lua into the state machine, and its cost.

    It holds the runtime (to build Lua tables for replies) only until ``close()``: the
    runtime holds the bridge, so keeping it longer would make a cycle that only Python's
    cyclic GC frees, at a moment that differs per replica."""

    def __init__(self, machine: ScriptHost, read_only: bool, lua: Any,
                 journal: _Journal, charges: Charges = LEGACY) -> None:
        self.machine = machine
        self.charges = charges
        self.read_only = read_only
        self.lua: Any = lua
        self.journal = journal
        self.ordered = False  # SCAN's order charged already in this script

    def close(self) -> None:
        self.lua = None

    def __call__(self, lua_args: Any, remaining: float) -> tuple[Any, int]:
        lua = self.lua
        if lua is None:
            return False, 0
        args = [lua_args[i] for i in range(1, len(lua_args) + 1)]
        charges = self.charges
        cost = charges.call + charges.item * len(args) + sum(map(len, args)) // BYTES
        spec = lookup(args[0])
        if spec is not None and charges.read_key and spec.arity_ok(len(args)):
            cost += len(spec.keys(args)) * (
                charges.write_key if spec.is_write else charges.read_key)
        cost += self._walk_cost(args)
        if cost > remaining:  # refused before doing the work: the budget error follows
            return False, cost
        if spec is not None and spec.internal:  # sessions, EXEC, EXPIRED: the server's own
            return _to_lua(lua, NOT_FROM_SCRIPTS, 0), cost
        if not self.read_only:
            self.journal.before(args)
        glob, args = _split_pattern(args)
        reply = self.machine.call_from_script(args, self.read_only)
        if not self.read_only:
            self.journal.after()
        if glob is not None:
            reply, work = _filter_counted(glob, reply, (remaining - cost) / GLOB_STEP_COST)
            cost += work * GLOB_STEP_COST
            if cost > remaining:
                return False, cost
        cost += _reply_cost(reply)
        return _to_lua(lua, reply, 0), cost

    def _walk_cost(self, args: list[bytes]) -> int:
        """What walking the keyspace costs: KEYS and DBSIZE walk it every time; SCAN and
        RANDOMKEY need SCAN's hash order, which a replica may or may not have built (reads
        build it), so every replica charges its building once per script. APPEND and
        SETRANGE copy the value they change: its length (a 1-byte APPEND to a 100 MB value
        copies 100 MB; 10,000 of them within the budget took minutes). SCAN walks up to
        COUNT keys even when MATCH keeps none (9,000 such calls over 20,000 keys: 46 s)."""
        name = args[0].lower()
        if name == b"keys":
            return KEY_COST * len(self.machine)
        if name == b"dbsize":
            return self.machine.expiring
        if name in (b"flushall", b"flushdb"):  # drops the keyspace (the journal copies
            return ORDER_COST * len(self.machine)  # nothing: kept as entries apply so)
        if name in (b"append", b"setrange") and len(args) >= 2:  # copy the whole value
            length = self.machine.call_from_script([b"strlen", args[1]], True)
            return length // BYTES if isinstance(length, int) else 0
        cost = 0
        if name == b"scan" and len(args) >= 2:  # walks COUNT keys, whatever MATCH keeps
            options = syntax.parse_scan_options(args)
            if isinstance(options, syntax.ScanOptions):
                cost += SCAN_KEY_COST * min(options.count, SCAN_MAX_WALK, len(self.machine))
        if name in (b"scan", b"randomkey") and not self.ordered:
            self.ordered = True
            cost += ORDER_COST * len(self.machine)
        return cost


def _split_pattern(args: list[bytes]) -> tuple[Glob | None, list[bytes]]:
    """KEYS pattern / SCAN ... MATCH pattern: the pattern, and the command with ``*`` in
    its place, so that the bridge matches the keys itself and charges the matcher's work.
    The machine's own matching (unsliced on apply) is charged nothing per byte: with a
    ``?`` or ``[`` pattern, one KEYS over an 8 MiB key ran its Python port for 3.7 s for
    1,400 units (attack4). Other commands, and malformed ones, pass unchanged."""
    name = args[0].lower()
    if name == b"keys" and len(args) == 2 and args[1] != b"*":
        return Glob(args[1]), [args[0], b"*"]
    if name != b"scan" or len(args) < 4:
        return None, args
    options = syntax.parse_scan_options(args)
    if not isinstance(options, syntax.ScanOptions) or options.pattern is None:
        return None, args
    plain = list(args)
    for i in range(2, len(plain) - 1, 2):  # well-formed option pairs: parsed above
        if syntax.option_word(plain[i]) == b"match":
            plain[i + 1] = b"*"
    return Glob(options.pattern), plain


def _filter_counted(glob: Glob, reply: Reply, limit: float) -> tuple[Reply, int]:
    """The keys of a KEYS reply (a list) or a SCAN reply ([cursor, keys]) that match
    ``glob``, and the matcher's work; it stops once the work passes ``limit`` (the script
    is then over its budget and never sees the reply)."""
    if not isinstance(reply, list):
        return reply, 0
    scan = len(reply) == 2 and isinstance(reply[1], list)
    keys = reply[1] if scan else reply
    matched: list[bytes] = []
    work = 0
    for key in keys:
        assert isinstance(key, bytes)
        steps = glob.steps(key)
        try:
            while True:
                work += next(steps)
                if work > limit:
                    return [], work
        except StopIteration as done:
            if done.value:
                matched.append(key)
    return ([reply[0], matched] if scan else matched), work


def _reply_cost(reply: Reply) -> int:
    if isinstance(reply, bytes):
        return len(reply) // BYTES
    if isinstance(reply, list):
        return sum(ITEM_COST + _reply_cost(item) for item in reply)
    return 0


def _to_lua(lua: Any, reply: Reply, depth: int) -> Any:
    if isinstance(reply, ErrorReply):
        return lua.table_from({b"err": reply.text.encode()})
    if isinstance(reply, SimpleString):
        return lua.table_from({b"ok": reply.text.encode()})
    if reply is None:
        return False
    if isinstance(reply, list) and depth < MAX_REPLY_DEPTH:
        return lua.table_from([_to_lua(lua, item, depth + 1) for item in reply])
    if isinstance(reply, (bytes, int)):
        return reply
    return False


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    raise AttributeError("Python attributes are not reachable from scripts")


def _as_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


def _one_line(raw: Any) -> str:
    return _as_text(raw).split("\nstack traceback:", 1)[0].replace("\r", " ").replace("\n", " ")


def _error_reply(raw: Any, over: str = BUDGET_ERROR) -> ErrorReply:
    """An error the script raised (a Redis error table's text, or a message); ``over``:
    the entry's budget error, which a text holding it becomes (exactly as before for the
    old form: a session may keep the reply)."""
    text = _one_line(raw)
    if over in text:
        return ErrorReply(over)
    code = text.split(" ", 1)[0]
    if not code or not code.isupper():
        text = "ERR " + text
    return ErrorReply(text)


def _failure_reply(raw: Any, over: str = BUDGET_ERROR) -> ErrorReply:
    """A Lua error that ended the script: Redis's ``Error running script`` text."""
    text = _one_line(raw)
    if over in text:
        return ErrorReply(over)
    if "not enough memory" in text:
        return ErrorReply(MEMORY_ERROR)
    return ErrorReply("ERR Error running script: " + text)


def from_tokens(tokens: Any, over: str = BUDGET_ERROR) -> Reply:
    """The reply the sandbox's ``to_tokens`` flattened (see lua_sandbox.py); ``over``: the
    entry's budget error (``_error_reply``)."""
    flat = [tokens[i] for i in range(1, tokens[b"n"] + 1)]
    reply, _ = _parse(flat, 0, over)
    return reply


def _parse(flat: list[Any], at: int, over: str) -> tuple[Reply, int]:
    tag = flat[at]
    if tag == b"n":
        return None, at + 1
    if tag == b"a":
        items: list[Reply] = []
        at += 2
        for _ in range(flat[at - 1]):
            item, at = _parse(flat, at, over)
            items.append(item)
        return items, at
    value = flat[at + 1]
    if tag == b"i":
        return value, at + 2
    if tag == b"f":  # Redis truncates numbers to integers
        return (int(value) if math.isfinite(value) else 0), at + 2
    if tag == b"b":
        return value, at + 2
    if tag == b"s":
        return SimpleString(_one_line(value)), at + 2
    return _error_reply(value, over), at + 2


UNSUPPORTED = ("ERR Error compiling script (new function): user_script: valid Lua but not "
               "supported in scripts (more than 100 nested blocks or expressions, or a name "
               "starting with __rkv_)")
REWRITE_CACHE = 256  # rewritten bodies kept per node (a cache, not state)
# Every replica parses a new body in Python before Lua compiles it (lua_rewrite.py, about
# 0.3 MB/s; 64 KiB of the densest Lua takes ~0.2 s of CPU here, like a full budget):
# bodies are bounded so that this costs about what the instruction budget allows.
MAX_SCRIPT_BYTES = 64 * 1024
SCRIPT_TOO_LARGE = (f"ERR Error compiling script (new function): the script is larger than "
                    f"{MAX_SCRIPT_BYTES} bytes")
# One log entry (a MULTI/EXEC holds up to 100,000 scripts) shares one INSTRUCTION_BUDGET,
# and the distinct bodies it runs may total this many bytes, each rewritten and compiled on
# every replica whatever the cache holds: 100 budget-spending EVALs in one EXEC held every
# node's apply 28 s, and 128 distinct 64 KiB bodies ~25 s (attack4).
MAX_BODY_BYTES_PER_ENTRY = 2 * MAX_SCRIPT_BYTES
BODIES_OVER = ErrorReply(
    f"ERR the scripts of one transaction may have at most {MAX_BODY_BYTES_PER_ENTRY} bytes of "
    "distinct bodies")


class ScriptRunner:
    """Runs EVAL/EVALSHA/EVAL_RO/EVALSHA_RO and checks SCRIPT LOAD bodies."""

    def __init__(self, machine: ScriptHost) -> None:
        self._machine = machine
        self._rewritten: dict[bytes, bytes | ErrorReply] = {}
        self.last_cost = 0  # instruction units the last script spent (tests, measurements)
        self._entry_left = INSTRUCTION_BUDGET
        self._budget = INSTRUCTION_BUDGET
        self._charges = LEGACY
        self._entry_bodies: set[bytes] = set()
        self._entry_body_bytes = 0

    def begin_entry(self, budget: int = INSTRUCTION_BUDGET, charges: Charges = LEGACY) -> None:
        """A new log entry (or read) starts: its scripts share one budget and one allowance
        of distinct body bytes (the machine calls this; see MAX_BODY_BYTES_PER_ENTRY).
        ``budget`` and ``charges``: the old form's by default (entries without ``budget``
        apply so forever), the recorded budget and KEYED for the ``budget`` form."""
        self._entry_left = self._budget = budget
        self._charges = charges
        if self._entry_bodies:  # (a set a log entry, most of them scriptless, was ~2% of apply)
            self._entry_bodies = set()
        self._entry_body_bytes = 0

    def _count_body(self, body: bytes) -> ErrorReply | None:
        if body in self._entry_bodies:
            return None
        if self._entry_body_bytes + len(body) > MAX_BODY_BYTES_PER_ENTRY:
            return BODIES_OVER
        self._entry_bodies.add(body)
        self._entry_body_bytes += len(body)
        return None

    def compile_error(self, body: bytes) -> ErrorReply | None:
        """The compile error of ``body``, or None if it is valid Lua (SCRIPT LOAD on apply:
        its body counts against the entry's allowance like a script's)."""
        if len(body) <= MAX_SCRIPT_BYTES:
            over = self._count_body(body)
            if over is not None:
                return over
        prepared = self._prepare(body)
        return prepared if isinstance(prepared, ErrorReply) else None

    def _prepare(self, body: bytes) -> bytes | ErrorReply:
        """``body`` rewritten (lua_rewrite.py) and compiled once, or its compile error;
        a pure function of ``body``, cached."""
        if len(body) > MAX_SCRIPT_BYTES:
            return ErrorReply(SCRIPT_TOO_LARGE)
        cached = self._rewritten.get(body)
        if cached is not None:
            return cached
        try:
            prepared: bytes | ErrorReply = rewrite(body)
        except RewriteError:
            prepared = ErrorReply(UNSUPPORTED)
        else:
            reply = self._run(prepared, None, None, True)
            if isinstance(reply, ErrorReply):
                prepared = ErrorReply(UNSUPPORTED)
        if isinstance(prepared, ErrorReply):  # Lua's own words if the body is not Lua
            original = self._run(body, None, None, True)
            if isinstance(original, ErrorReply):
                prepared = original
        if len(self._rewritten) >= REWRITE_CACHE:
            self._rewritten.pop(next(iter(self._rewritten)))
        self._rewritten[body] = prepared
        return prepared

    def eval(self, args: list[bytes], *, body: bytes | None, read_only: bool) -> Reply:
        """Run a script invocation (``args`` as the client sent them)."""
        numkeys = syntax.parse_numkeys(args)
        if isinstance(numkeys, ErrorReply):
            return numkeys
        machine = self._machine
        if body is None:
            body = machine.script_body(args[1])
            if body is None:
                return NOSCRIPT
        if len(body) <= MAX_SCRIPT_BYTES:  # (a larger one is refused without rewriting)
            over = self._count_body(body)
            if over is not None:
                return over
        prepared = self._prepare(body)
        if isinstance(prepared, ErrorReply):  # a body that does not compile is not cached
            return prepared
        if not read_only:  # (a read runs on one node: it must not change the cache)
            machine.remember_script(body)
        start = self._charges.start
        if self._entry_left <= start:  # earlier scripts of this entry spent the budget
            self.last_cost = 0
            self._entry_left = 0
            return ErrorReply(budget_error(self._budget))
        self._entry_left -= start
        reply = self._run(prepared, args[3 : 3 + numkeys], args[3 + numkeys :], read_only,
                          self._entry_left)
        self._entry_left -= self.last_cost
        return reply

    def _run(self, body: bytes, keys: list[bytes] | None, argv: list[bytes] | None,
             read_only: bool, budget: int = INSTRUCTION_BUDGET) -> Reply:
        """One script in a runtime of its own, freed before this returns (nothing else
        refers to it once the bridge is closed); ``budget``: the units it may spend."""
        lua = _new_runtime()
        journal = _Journal(self._machine)
        bridge = _Bridge(self._machine, read_only, lua, journal, self._charges)
        self.last_cost = budget  # unless the run ends with its count
        done = False
        over = budget_error(self._budget)
        try:
            run, finish = lua.execute(_SANDBOX_CODE, bridge, budget, HOOK_STEP, over.encode(),
                                      _PATTERNS_CODE, _SORT_CODE, MAX_REPLY_DEPTH,
                                      MAX_REPLY_ITEMS, MAX_REPLY_BYTES, self._charges.alloc,
                                      mode="b")
            try:
                if keys is None:
                    kind, payload, spent = run(body, None, None)
                else:
                    kind, payload, spent = run(body, lua.table_from(keys),
                                               lua.table_from(argv))
                if spent is not None:
                    self.last_cost = int(spent)
                done = kind in (b"reply", b"compiled")
                return _outcome(kind, payload, over)
            finally:
                # (over the budget, the hook already fails every instruction)
                with contextlib.suppress(lua54.LuaError):
                    finish()
        except lua54.LuaMemoryError:
            return ErrorReply(MEMORY_ERROR)
        except lua54.LuaError as exc:
            return _failure_reply(exc.args[0] if exc.args else "script failed", over)
        finally:
            bridge.close()
            if not done:
                journal.undo()


def _outcome(kind: bytes, payload: Any, over: str) -> Reply:
    if kind == b"reply":
        return from_tokens(payload, over)
    if kind == b"compiled":
        return None
    if kind == b"redis_error":
        return _error_reply(payload, over)
    if kind == b"failed":
        return _failure_reply(payload, over)
    return ErrorReply(_one_line(payload))  # texts the sandbox wrote ("ERR ...")
