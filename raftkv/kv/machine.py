"""The replicated state machine: a map of bytes to bytes, changed only by applied commands.

Every node applies the same log in the same order, so ``apply`` must be a pure function of
(state, entry): no clock, no randomness, no iteration over unordered containers in replies
(KEYS sorts; SCAN uses a fixed hash order), and never an exception, whatever the entry
holds. A malformed entry yields an ``ErrorReply`` like any failing command.

Semantics follow Redis 7 for the supported commands, with these differences:

* No expiry: SET accepts ``NX``, ``XX`` and ``GET`` only; ``EX``/``PX``/``EXAT``/``PXAT``/
  ``KEEPTTL`` are ``ERR syntax error``.
* ``CAS key expected new`` is RaftKV's own: it sets ``key`` to ``new`` and answers 1 only if
  ``key`` exists and holds exactly ``expected``; otherwise it changes nothing and answers 0.
  A missing key never matches, not even an empty ``expected`` (use ``SET key new NX``).
* KEYS answers in byte order of the keys; SCAN walks keys in hash order (see scan.py) and
  returns every key that exists for the whole scan exactly once.
* FLUSHALL ASYNC and SYNC both empty the map immediately.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import msgpack

from wire.reply import OK, ErrorReply

from . import syntax
from .codec import decode_command
from .commands import COMMANDS, Reply, check_arity
from .errors import (
    INCR_OVERFLOW,
    INVALID_CURSOR,
    NOT_INTEGER,
    STRING_TOO_LONG,
    KVDecodeError,
    unknown_command,
    wrong_arity,
)
from .glob import stringmatch
from .numbers import INT64_MAX, INT64_MIN, parse_cursor, parse_int64
from .scan import ScanOrder
from .sliced import KeysJob, ScanBuild, ScanRead, SlicedRead

SNAPSHOT_VERSION = 1
# SCAN answers at most this many keys per call whatever COUNT asks (COUNT is a hint in
# Redis too), so one SCAN cannot hold the node's event loop for long.
SCAN_MAX_COUNT = 10_000
# Maps at least this large are walked and freed in slices: FLUSHALL and replace hand them
# to the runtime (``retired``), and the first SCAN builds its order with ``ScanBuild``.
LARGE_MAP = 10_000
# Redis's default proto-max-bulk-len: APPEND may not grow a value past it.
MAX_VALUE_LEN = 512 * 1024 * 1024

_Handler = Callable[[list[bytes]], Reply]
_Entry = tuple[int, ErrorReply, _Handler, bool]  # arity, its error, handler, is_write


class _Pairs(list):
    """A msgpack map decoded as its list of (key, value) pairs, to validate it in order."""


def encode_snapshot(data: dict[bytes, bytes]) -> bytes:
    """``[version, {key: value}]`` as msgpack with keys sorted (what ``snapshot`` returns).

    Packed one item at a time rather than in one ``packb`` call: the runtime runs this in a
    worker thread, and many short calls let the GIL go back to the event loop in between.
    """
    keys = sorted(data)
    packer = msgpack.Packer(use_bin_type=True)
    pack = packer.pack
    parts = [packer.pack_array_header(2), pack(SNAPSHOT_VERSION), packer.pack_map_header(len(keys))]
    for key in keys:
        parts.append(pack(key))
        parts.append(pack(data[key]))
    return b"".join(parts)


def decode_snapshot(blob: bytes) -> dict[bytes, bytes]:
    """The map of an ``encode_snapshot`` blob, checked; ``KVDecodeError`` if invalid.

    A pure function of the blob, so the runtime can run it in a worker thread: the
    validation loop lets the GIL go back to the event loop, a large map does not stall it.
    """
    try:
        obj = msgpack.unpackb(blob, raw=False, object_pairs_hook=_Pairs)
    except Exception as exc:  # msgpack raises several types for the many ways bytes are bad
        raise KVDecodeError(f"snapshot is not valid msgpack ({exc!r})") from None
    if type(obj) is not list or len(obj) != 2:
        raise KVDecodeError("snapshot is not a [version, map] array")
    version, pairs = obj
    if type(version) is not int or version != SNAPSHOT_VERSION:
        raise KVDecodeError(f"unsupported snapshot version {version!r}")
    if type(pairs) is not _Pairs:
        raise KVDecodeError("snapshot does not hold a map")
    previous = None
    for key, value in pairs:
        if type(key) is not bytes or type(value) is not bytes:
            raise KVDecodeError("snapshot keys and values must be bin strings")
        if previous is not None and key <= previous:
            raise KVDecodeError("snapshot keys are not strictly increasing")
        previous = key
    return dict(pairs)


class KVStateMachine:
    """The key-value map every node builds by applying the Raft log."""

    def __init__(self, *, max_value_len: int = MAX_VALUE_LEN) -> None:
        # Must be equal on every node of a cluster, like the code itself.
        self._max_value_len = max_value_len
        self._data: dict[bytes, bytes] = {}
        # SCAN's hash-ordered index of the keys; built by the first SCAN (a cache, not state).
        self._order: ScanOrder | None = None
        self._order_build: ScanBuild | None = None  # filling ``_order`` in slices
        # Large maps (and SCAN indexes) dropped by FLUSHALL or replace, for the runtime to
        # free in slices (freeing a million keys at once would stall it).
        self.retired: list[dict[bytes, bytes] | list[tuple[int, bytes]]] = []
        # lower-case name -> (arity, arity error, handler, is_write)
        self._dispatch: dict[bytes, _Entry] = {
            name.encode(): (spec.arity, wrong_arity(name), getattr(self, "_" + name), spec.is_write)
            for name, spec in COMMANDS.items()
        }

    # -- the runtime's interface -------------------------------------------------------

    def apply(self, data: bytes) -> Reply:
        """Apply one log entry's command (see ``encode_command``) and return its reply."""
        try:
            args = decode_command(data)
        except KVDecodeError as exc:
            return ErrorReply(f"ERR corrupt command in the log: {exc}")
        return self._execute(args)

    def read(self, args: list[bytes]) -> Reply:
        """Answer a read command from the current state, changing nothing."""
        entry = self._dispatch.get(args[0].lower()) if args else None
        if entry is not None and entry[3]:
            name = args[0].lower().decode()
            return ErrorReply(f"ERR '{name}' is a write command: it must go through the log")
        return self._run(args, entry)

    def _execute(self, args: list[bytes]) -> Reply:
        return self._run(args, self._dispatch.get(args[0].lower()) if args else None)

    def _run(self, args: list[bytes], entry: _Entry | None) -> Reply:
        if entry is None:
            return unknown_command(args)
        arity, arity_error, handler, _ = entry
        argc = len(args)
        if (argc != arity) if arity > 0 else (argc < -arity):
            return arity_error
        return handler(args)

    def read_deferred(self, args: list[bytes]) -> Reply | SlicedRead:
        """``read``, except for reads that walk a large map: ``KEYS`` and the first ``SCAN``
        return a ``SlicedRead`` for the runtime to finish in slices (see sliced.py)."""
        name = args[0].lower() if args else b""
        if name == b"keys" and len(args) == 2:
            return KeysJob(list(self._data), args[1])
        if name == b"scan":
            if self._order is None and len(self._data) >= LARGE_MAP:
                self._order = ScanOrder(())  # records keys added while it is built
                self._order_build = ScanBuild(list(self._data), self._order)
            build = self._order_build
            if build is not None:
                return ScanRead(build, lambda: self.read(args))
        return self.read(args)

    def snapshot(self) -> bytes:
        """The whole map as msgpack, keys sorted: equal states give identical bytes."""
        return encode_snapshot(self._data)

    def state_copy(self) -> dict[bytes, bytes]:
        """A cheap copy of the map (values are immutable bytes) for ``encode_snapshot``
        elsewhere, e.g. in a worker thread while this machine keeps applying."""
        return dict(self._data)

    def restore(self, blob: bytes) -> None:
        """Replace the state with a ``snapshot()``; ``KVDecodeError`` (state kept) if invalid."""
        self.replace(decode_snapshot(blob))

    def replace(self, data: dict[bytes, bytes]) -> None:
        """Take ``data`` (from ``decode_snapshot``, decoded elsewhere) as the whole state."""
        self._drop_state()
        self._data = data

    # -- inspection (tests, chaos checks) ------------------------------------------------

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KVStateMachine):
            return NotImplemented
        return self._data == other._data

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<KVStateMachine keys={len(self._data)}>"

    def digest(self) -> str:
        """A short fingerprint of the state, equal on nodes with equal maps."""
        return hashlib.blake2b(self.snapshot(), digest_size=16).hexdigest()

    # -- helpers ---------------------------------------------------------------------------

    def _store(self, key: bytes, value: bytes) -> None:
        if self._order is not None and key not in self._data:
            self._order.added(key)
        self._data[key] = value

    def _incr_by(self, key: bytes, amount: int) -> Reply:
        current = self._data.get(key)
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
        self._store(key, str(value).encode())
        return value

    # -- writes ----------------------------------------------------------------------------

    def _set(self, args: list[bytes]) -> Reply:
        key = args[1]
        data = self._data
        if len(args) == 3:  # the hot path: plain SET
            if self._order is not None and key not in data:
                self._order.added(key)
            data[key] = args[2]
            return OK
        flags = syntax.parse_set_options(args)
        if isinstance(flags, ErrorReply):
            return flags
        old = data.get(key)
        if (flags & syntax.SET_NX and old is not None) or (flags & syntax.SET_XX and old is None):
            return old if flags & syntax.SET_GET else None
        self._store(key, args[2])
        return old if flags & syntax.SET_GET else OK

    def _del(self, args: list[bytes]) -> Reply:
        data = self._data
        removed = 0
        for key in args[1:]:
            if key in data:
                del data[key]
                removed += 1
                if self._order is not None:
                    self._order.removed()
        return removed

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

    def _append(self, args: list[bytes]) -> Reply:
        key, suffix = args[1], args[2]
        current = self._data.get(key)
        if current is None:
            self._store(key, suffix)
            return len(suffix)
        if len(current) + len(suffix) > self._max_value_len:
            return STRING_TOO_LONG
        value = current + suffix
        self._data[key] = value
        return len(value)

    def _mset(self, args: list[bytes]) -> Reply:
        if len(args) % 2 == 0:
            return check_arity(args)
        if self._order is None:  # no SCAN index to keep up to date: one C-level update
            pairs = iter(args)
            next(pairs)
            self._data.update(zip(pairs, pairs, strict=False))
            return OK
        for i in range(1, len(args), 2):
            self._store(args[i], args[i + 1])
        return OK

    def _flushall(self, args: list[bytes]) -> Reply:
        error = syntax.check_flushall(args)
        if error is not None:
            return error
        self._drop_state()
        return OK

    def _drop_state(self) -> None:
        """Empty the map and the SCAN index; large ones go to ``retired``, freed later in
        slices by the runtime, small ones now."""
        if len(self._data) >= LARGE_MAP:
            self.retired.append(self._data)
            self._data = {}
        else:
            self._data.clear()
        if self._order is not None:
            entries = self._order.release()
            if len(entries) >= LARGE_MAP:
                self.retired.append(entries)
        self._order = None
        self._order_build = None

    def _cas(self, args: list[bytes]) -> Reply:
        key = args[1]
        current = self._data.get(key)
        if current is None or current != args[2]:
            return 0
        self._data[key] = args[3]
        return 1

    # -- reads -----------------------------------------------------------------------------

    def _get(self, args: list[bytes]) -> Reply:
        return self._data.get(args[1])

    def _exists(self, args: list[bytes]) -> Reply:
        data = self._data
        return sum(1 for key in args[1:] if key in data)

    def _strlen(self, args: list[bytes]) -> Reply:
        value = self._data.get(args[1])
        return 0 if value is None else len(value)

    def _mget(self, args: list[bytes]) -> Reply:
        return list(map(self._data.get, itertools.islice(args, 1, None)))

    def _keys(self, args: list[bytes]) -> Reply:
        pattern = args[1]
        if pattern == b"*":
            return sorted(self._data)
        return sorted(key for key in self._data if stringmatch(pattern, key))

    def _scan(self, args: list[bytes]) -> Reply:
        cursor = parse_cursor(args[1])
        if cursor is None:
            return INVALID_CURSOR
        options = syntax.parse_scan_options(args)
        if isinstance(options, ErrorReply):
            return options
        if self._order_build is not None:  # being built in slices: finish it here
            self._order_build.finish()
            self._order_build = None
        if self._order is None:
            self._order = ScanOrder(self._data)
        count = min(options.count, SCAN_MAX_COUNT)
        following, keys = self._order.batch(self._data, cursor, count)
        if not options.type_matches:
            keys = []
        elif options.pattern is not None:
            pattern = options.pattern
            keys = [key for key in keys if stringmatch(pattern, key)]
        return [str(following).encode(), keys]

    def _dbsize(self, args: list[bytes]) -> Reply:
        return len(self._data)
