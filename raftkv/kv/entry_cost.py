"""What one ``MULTI``/``EXEC`` would cost every replica when it applies, bounded before it
is proposed (issue 12, ``harden11``).

A transaction is one log entry, applied atomically in one step of every replica's event
loop. Two kinds of work in it depend on the state, not on its size as sent:

- ``APPEND``/``SETRANGE`` copy the whole value (values are immutable bytes): an ``EXEC`` of
  32 one-byte ``APPEND``s to an 8 MiB value copies 256 MiB, ~140 ms of CPU here unloaded
  (0.14-0.54 ms a MiB: ``tests/bench/bench_tx_cost.py``), seconds under load;
- ``KEYS`` walks the whole keyspace, ``SCAN`` and ``RANDOMKEY`` need SCAN's hash order,
  which a replica that never served a SCAN builds whole from every key, and ``DBSIZE``
  walks every key with a deadline. Outside ``MULTI`` the first three are reads served in
  slices.

So the node a client talks to, and the leader again for a forwarded ``EXEC``, estimates
both from its own state plus the transaction's earlier writes, and refuses the ``EXEC``
(``EXECABORT``, as Redis answers an ``EXEC`` it rejects, e.g. for ``OOM``) when it would
copy more than ``copy_limit`` bytes (the node passes 2 x ``--max-request-bytes``; a
transaction may always copy as much as its largest copy, as at apply: one command alone is
allowed outside ``MULTI``), or walk more than ``walk_limit`` keys
(``--max-keys-per-command``), or when its ``KEYS`` and ``SCAN MATCH`` patterns with ``?``,
``[`` or ``\\`` would take the matcher (a Python port of Redis's) more than GLOB_UNITS over
those keys (0.03-1 us a unit, by pattern): the node runs the matcher itself to find out, up
to that bound.

It is an estimate and only decides what is proposed: never checked at apply, so entries
already in a log apply exactly as before, and the apply bounds in ``machine.py``
(``COPY_BYTES_PER_ENTRY``, ``WALK_KEYS_PER_ENTRY``) stay the backstop. The writes in this
node's log past its applied index apply first, so the estimate replays them before the
transaction (attack12: ``SET k <8 MiB>`` pipelined before the ``EXEC`` was not seen),
up to ``INFLIGHT_COMMANDS``/``INFLIGHT_BYTES`` (past them: unknown writes, as after a
script). A follower's check sees only what reached its log; the leader checks a forwarded
``EXEC`` again, with everything proposed before it in its log, and proposes it at once.
It over-counts rather than under-counts: expired keys count, a write that may not happen
(``NX``, ``XX``, ``CAS``, ``RENAMENX``, ``COPY``, ``RENAME`` of a missing key) leaves the
longer of the two lengths, and after a script (which may write any key) an
``APPEND``/``SETRANGE`` of a key the transaction did not write since counts as copying a
maximal value, and the keyspace grows by what a script could add.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from wire.reply import ErrorReply

from . import syntax
from .codec import KVDecodeError, decode_entry
from .commands import MAX_VALUE_LEN, Decoded, decode_exec, lookup
from .glob import Glob
from .scripts import CALL_COST, INSTRUCTION_BUDGET, ITEM_COST

# Matcher work units (glob.py's ``steps``: 0.03-1 us each here, by pattern) that the
# patterns with ``?``, ``[`` or ``\\`` of an EXEC's KEYS and SCAN MATCH may take over the
# keys, at most ~10 ms: the proposer runs the matcher itself, up to this many units, to find
# out (the apply bound, GLOB_STEPS_PER_ENTRY's 1,000,000 units, is ~0.5 s on every replica).
GLOB_UNITS = 10_000
# Keys one script may add (an MSET through redis.call costs ITEM_COST per argument).
SCRIPT_MAY_ADD = INSTRUCTION_BUDGET // ITEM_COST
_SCRIPTS = frozenset({b"eval", b"evalsha"})
_WALKS_ALL = frozenset({b"keys", b"scan", b"randomkey"})
_DELETES = frozenset({b"del", b"unlink", b"getdel"})
# Writes that may give their (one) destination key a deadline, which DBSIZE then walks.
_MAY_EXPIRE = frozenset({b"set", b"setex", b"psetex", b"getex", b"expire", b"pexpire",
                         b"expireat", b"pexpireat", b"copy", b"rename", b"renamenx"})
# Commands proposed on this node and not yet applied (in its log past its applied index)
# that the estimate replays before the transaction, and their entries' bytes, at most:
# past either, every length and the keyspace count as after a script (unknown).
INFLIGHT_COMMANDS = 2_000
INFLIGHT_BYTES = 4 * 1024 * 1024
# What the estimate of a transaction depends on the state for (the rest never read it).
_READS_STATE = frozenset({b"append", b"setrange", b"keys", b"scan", b"randomkey", b"dbsize"})
# Deadlines the scripts of one transaction may add (a redis.call each; one shared budget).
SCRIPT_MAY_EXPIRE = INSTRUCTION_BUDGET // CALL_COST


class StateView(Protocol):
    """What the estimate reads of the state machine (KVStateMachine has it)."""

    def stored_len(self, key: bytes) -> int: ...

    def key_names(self) -> Iterable[bytes]: ...

    def __len__(self) -> int: ...

    @property
    def expiring(self) -> int: ...


class _Shadow:
    """Value lengths and keyspace size as the transaction's earlier commands leave them."""

    def __init__(self, kv: StateView) -> None:
        self.kv = kv
        self.lengths: dict[bytes, int] = {}
        self.size = len(kv)
        self.flushed = False
        self.scripted = False  # a script ran: lengths not written since are unknown
        self.deadlines = kv.expiring  # keys with a deadline (an over-count: none end)

    def length(self, key: bytes) -> int:
        known = self.lengths.get(key)
        if known is not None:
            return known
        if self.scripted:
            return MAX_VALUE_LEN
        return 0 if self.flushed else self.kv.stored_len(key)

    def write(self, key: bytes, length: int) -> None:
        if key not in self.lengths and (self.flushed or self.kv.stored_len(key) == 0):
            self.size += 1  # (an empty or expired value counts as new: an over-count)
        self.lengths[key] = length

    def maybe_write(self, key: bytes, length: int) -> None:
        """A write that may not happen (NX, XX, CAS, RENAME of a missing key, COPY onto
        an existing one): the longer of the two lengths. Taking the new one under-counted:
        ``SET k x NX`` on an 8 MiB ``k`` left it 8 MiB, and the APPENDs after it copied 256
        MiB at apply with the estimate at a few bytes (attack12)."""
        self.write(key, max(self.length(key), length))

    def delete(self, key: bytes) -> None:
        self.lengths[key] = 0

    def unknown(self) -> None:
        """Writes this node cannot see (too many in flight): as after a script."""
        self.scripted = True
        self.lengths = {}
        self.size += SCRIPT_MAY_ADD
        self.deadlines += SCRIPT_MAY_EXPIRE

    def flush(self) -> None:
        self.lengths, self.size, self.flushed, self.scripted = {}, 0, True, False
        self.deadlines = 0


def refusal(kv: StateView, args: list[bytes], *, copy_limit: int, walk_limit: int,
            unapplied: Callable[[], Iterable[bytes] | None] | None = None,
            decoded: Decoded | None = None) -> ErrorReply | None:
    """EXECABORT if ``args`` (an ``EXEC payload``, also inside ``once id seq``) would copy
    or walk more than its limits by this state; else None (any other command: None).
    ``unapplied``: the data of the entries in this node's log past its applied index (None
    if it cannot tell), which apply before the transaction: ``SET k <8 MiB>`` pipelined
    before an ``EXEC`` of APPENDs to ``k`` was checked against a ``k`` it had not made yet
    (attack12). ``decoded``: ``exec_of(args)`` (commands.py), if the caller has it."""
    if len(args) == 5 and args[0].lower() == b"once":
        args = args[3:]
    if len(args) != 2 or args[0].lower() != b"exec":
        return None
    if decoded is None:
        decoded = decode_exec(args[1])
    if isinstance(decoded, ErrorReply):
        return None  # validate() answers it
    commands = decoded[1]
    before: list[list[bytes]] | None = []
    if unapplied is not None and any(c and c[0].lower() in _READS_STATE for c in commands):
        before = inflight(unapplied())
    copied, largest, walked, patterns = estimate(kv, commands, before)
    busy = "" if before is not None else (
        f" (or retry: over {INFLIGHT_COMMANDS} commands or {INFLIGHT_BYTES} bytes were "
        "proposed and not yet applied on this node, counted as unknown writes)")
    if copied > max(copy_limit, largest):
        return _abort(f"ERR SETRANGE and APPEND in this transaction would copy {copied} bytes "
                      f"of values, over {copy_limit} (2 x max-request-bytes): run them "
                      f"outside MULTI{busy}")
    if walked > walk_limit:
        return _abort(f"ERR KEYS, SCAN, RANDOMKEY and DBSIZE in this transaction would walk "
                      f"{walked} keys, over max-keys-per-command {walk_limit}: run them "
                      f"outside MULTI{busy}")
    if patterns and _glob_units(kv, patterns, [*(before or ()), *commands]) > GLOB_UNITS:
        return _abort(f"ERR pattern matching in this transaction would take over {GLOB_UNITS} "
                      "matcher steps (patterns with ?, [ or \\ over long keys): run this KEYS "
                      "or SCAN outside MULTI")
    return None


def _glob_units(kv: StateView, patterns: list[tuple[bytes, bool]],
                commands: list[list[bytes]]) -> int:
    """The matcher's work for ``patterns`` (each with whether this node's keys are still
    there: no FLUSHALL before it) over this node's keys and the keys the transaction names
    (an over-count: each pattern over all of them), stopping past GLOB_UNITS (every key
    costs a unit at least, so that many keys at most)."""
    named = [key for args in commands if (spec := lookup(args[0])) is not None
             for key in spec.keys(args)]
    work = 0
    for pattern, with_state in patterns:
        glob = Glob(pattern)
        if glob.literal_and_stars:  # (matched in C, uncounted at apply too)
            continue
        for key in itertools.chain(kv.key_names() if with_state else (), named):
            for units in glob.steps(key):  # (yields every 256 units or so)
                work += units
                if work > GLOB_UNITS:  # within the key: one 4 MiB key took 30-60 ms whole
                    return work
    return work


def _conditional(args: list[bytes]) -> bool:
    """Whether ``SET key value [options]`` may leave the key as it was (NX, XX)."""
    if len(args) == 3 or args[0].lower() != b"set":
        return False
    options = syntax.parse_set_options(args)
    return not isinstance(options, syntax.SetOptions) or bool(
        options.flags & (syntax.SET_NX | syntax.SET_XX))


def inflight(entries: Iterable[bytes] | None) -> list[list[bytes]] | None:
    """The commands of ``entries`` (log-entry data; an EXEC's, a RAFT ONCE's, a budget's
    unwrapped), or None past INFLIGHT_COMMANDS or INFLIGHT_BYTES (or if ``entries`` is
    None). An entry that does not decode is skipped (apply skips it too)."""
    if entries is None:
        return None
    out: list[list[bytes]] = []
    size = 0
    for data in entries:
        size += len(data)
        if size > INFLIGHT_BYTES:
            return None
        try:
            args = decode_entry(data)[1]
        except KVDecodeError:
            continue
        if len(args) > 2 and args[0].lower() == b"budget":  # (features.py's level-1 form)
            args = args[2:]
        if len(args) > 3 and args[0].lower() == b"once":
            args = args[3:]
        if len(args) == 2 and args[0].lower() == b"exec":
            decoded = decode_exec(args[1])
            if not isinstance(decoded, ErrorReply):
                out.extend(c for c in decoded[1] if c)
        else:
            out.append(args)
        if len(out) > INFLIGHT_COMMANDS:
            return None
    return out


def _abort(reason: str) -> ErrorReply:
    return ErrorReply(f"EXECABORT Transaction discarded because of: {reason}")


def estimate(kv: StateView, commands: list[list[bytes]],
             before: Sequence[list[bytes]] | None = (),
             ) -> tuple[int, int, int, list[tuple[bytes, bool]]]:
    """(value bytes copied, the largest copy, keys walked, the KEYS and SCAN MATCH
    patterns) by ``commands`` applied in order on ``kv`` after ``before`` (writes that
    apply first; None: unknown ones): an upper estimate (see the module's docstring)."""
    shadow = _Shadow(kv)
    if before is None:
        shadow.unknown()
    else:
        for args in before:
            _step(shadow, args)
    copies: list[int] = []
    walked = 0
    patterns: list[tuple[bytes, bool]] = []
    for args in commands:
        copy, walk, pattern = _step(shadow, args)
        if copy is not None:
            copies.append(copy)
        walked += walk
        if pattern is not None:
            patterns.append(pattern)
    return sum(copies), max(copies, default=0), walked, patterns


def _step(shadow: _Shadow, args: list[bytes]
          ) -> tuple[int | None, int, tuple[bytes, bool] | None]:
    """Apply ``args`` to ``shadow``: (the bytes it copies or None, the keys it walks, its
    KEYS or SCAN MATCH pattern or None)."""
    copy: int | None = None
    walk = 0
    pattern: tuple[bytes, bool] | None = None
    if not args:
        return copy, walk, pattern
    name = args[0].lower()
    n = len(args)
    if name == b"append" and n == 3:
        current = shadow.length(args[1])
        if current and args[2]:
            copy = current + len(args[2])
        shadow.write(args[1], current + len(args[2]))
    elif name == b"setrange" and n == 4 and args[3]:
        # (validated: under 20 digits; an in-flight entry is checked here again, since
        # int() of 4,300 digits or more raises)
        end = int(args[2]) + len(args[3]) if args[2].isdigit() and len(args[2]) < 20 else 0
        copy = max(shadow.length(args[1]), end)
        shadow.write(args[1], copy)
    elif name in (b"set", b"getset") and n >= 3 and not _conditional(args):
        shadow.write(args[1], len(args[2]))
    elif name in (b"set", b"setnx") and n >= 3:  # (SET with NX or XX)
        shadow.maybe_write(args[1], len(args[2]))
    elif name == b"cas" and n == 4:
        shadow.maybe_write(args[1], len(args[3]))
    elif name in (b"setex", b"psetex") and n == 4:
        shadow.write(args[1], len(args[3]))
    elif name in (b"mset", b"msetnx"):
        put = shadow.write if name == b"mset" else shadow.maybe_write
        for i in range(1, n - 1, 2):
            put(args[i], len(args[i + 1]))
    elif name in _DELETES:
        for key in args[1:]:
            shadow.delete(key)
    elif name in (b"rename", b"renamenx", b"copy") and n >= 3:
        # The source may be missing or the destination kept (RENAMENX, COPY without
        # REPLACE): the destination may keep its length; the source goes only when
        # RENAME moves it to another key.
        if args[1] != args[2]:
            shadow.maybe_write(args[2], shadow.length(args[1]))
            if name == b"rename":
                shadow.delete(args[1])
    elif name in (b"flushall", b"flushdb"):
        shadow.flush()
    elif name in _SCRIPTS:
        shadow.unknown()
    elif name in _WALKS_ALL:
        walk = shadow.size
        if name == b"keys" and n == 2:
            pattern = (args[1], not shadow.flushed)
        elif name == b"scan" and n >= 4:
            options = syntax.parse_scan_options(args)
            if isinstance(options, syntax.ScanOptions) and options.pattern is not None:
                pattern = (options.pattern, not shadow.flushed)
    elif name == b"dbsize":
        # (the transaction's own deadlines too: 512 SETEX then 512 DBSIZE walked 262,144
        # deadlines at apply with the estimate at 0, attack12)
        walk = shadow.deadlines
    if name in _MAY_EXPIRE:
        shadow.deadlines += 1
    return copy, walk, pattern
