"""The command table: every command the store knows, its arity, and how it is served.

``write`` commands change the map, so they go through the Raft log and are applied on every
node; ``read`` commands are served from local state once a ReadIndex confirms it is current.
Arity follows Redis: positive means exactly that many arguments (the name included),
negative means at least that many. The key positions (first, last, step) are Redis's legacy
key specs, so callers can find the keys a command touches without knowing the command.

The server calls ``validate`` before proposing, so the log never fills with commands that
fail for arity or syntax; ``KVStateMachine.apply`` checks again, since the log is input too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs
import msgpack

from wire.reply import ErrorReply, SimpleString

from . import syntax
from .errors import INVALID_CURSOR, NOT_FLOAT, NOT_INTEGER, unknown_command, wrong_arity
from .numbers import parse_cursor, parse_int64, parse_long_double

# The longest value applying an entry may build (Redis's proto-max-bulk-len, 512 MB there):
# APPEND and SETRANGE may not grow a value past it, nor may a script's write carry a longer
# argument. Checked at apply, so it is a constant every node and release must agree on (a
# per-node flag could differ between replicas): the default --max-request-bytes, the size of
# the largest value a client can SET by default, and below what a forwarded reply carries
# (raftkv.node.sizes: at least 15 MiB). A value a client SETs whole travels in its entry, so
# only --max-request-bytes bounds it; with 512 MiB here, a 100-byte EVAL stored 30 MB and
# `SETRANGE k 100000000 x` 100 MB on every replica (attack8).
MAX_VALUE_LEN = 8 * 1024 * 1024

# What a command answers with (see wire/reply.py): bulk, null, integer, array, status, error.
Reply = bytes | int | None | list["Reply"] | SimpleString | ErrorReply

WRITE = "write"
READ = "read"
_SCRIPT_COMMANDS = frozenset(("eval", "evalsha", "eval_ro", "evalsha_ro"))
_GROUPS = {
    **{name: "@keyspace" for name in (
        "del", "unlink", "exists", "touch", "type", "rename", "renamenx", "copy", "randomkey",
        "object", "keys", "scan", "dbsize", "flushall", "flushdb", "expire", "pexpire",
        "expireat", "pexpireat", "persist", "ttl", "pttl", "expiretime", "pexpiretime",
        "expired")},
    **{name: "@scripting" for name in (*_SCRIPT_COMMANDS, "script")},
    "exec": "@transaction",
    "watch": "@transaction",
}
# Bounds of one EXEC entry: how many commands and watched keys a transaction may carry.
MAX_TRANSACTION_COMMANDS = 100_000
MAX_WATCHED_KEYS = 10_000
MAX_SESSION_TIMEOUT_MS = 7 * 86_400_000  # a week


@attrs.frozen
class CommandSpec:
    """One command: lower-case name, Redis arity, ``write`` or ``read``, key positions."""

    name: str
    arity: int
    flag: str
    first_key: int = 1
    last_key: int = 1
    key_step: int = 1
    internal: bool = False  # built by the server, not typed by users (COMMAND hides it)
    # ``flag == WRITE``, kept: asked of every command on its way (a property was a call).
    is_write: bool = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "is_write", self.flag == WRITE)

    @property
    def acl_categories(self) -> tuple[str, ...]:
        """Redis's ACL categories of this command (COMMAND INFO's seventh field)."""
        if self.name == "publish":  # a log entry here, but Redis's user sees @pubsub
            return ("@pubsub",)
        return ("@write" if self.is_write else "@read", _GROUPS.get(self.name, "@string"))

    @property
    def flags(self) -> frozenset[str]:
        return frozenset((self.flag,))

    def arity_ok(self, argc: int) -> bool:
        """True if ``argc`` arguments (the name included) fit this command's arity."""
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    def keys(self, args: list[bytes]) -> list[bytes]:
        """The key arguments of ``args`` (a call of this command that passed arity)."""
        if self.name in _SCRIPT_COMMANDS:
            numkeys = syntax.parse_numkeys(args) if len(args) >= 3 else 0
            return [] if isinstance(numkeys, ErrorReply) else args[3 : 3 + numkeys]
        if self.first_key == 0:
            return []
        last = len(args) - 1 if self.last_key < 0 else self.last_key
        return args[self.first_key : last + 1 : self.key_step]


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        # writes
        CommandSpec("set", -3, WRITE),
        CommandSpec("setnx", 3, WRITE),
        CommandSpec("setex", 4, WRITE),
        CommandSpec("psetex", 4, WRITE),
        CommandSpec("getex", -2, WRITE),
        CommandSpec("getdel", 2, WRITE),
        CommandSpec("getset", 3, WRITE),
        CommandSpec("del", -2, WRITE, 1, -1, 1),
        CommandSpec("unlink", -2, WRITE, 1, -1, 1),
        CommandSpec("incr", 2, WRITE),
        CommandSpec("decr", 2, WRITE),
        CommandSpec("incrby", 3, WRITE),
        CommandSpec("decrby", 3, WRITE),
        CommandSpec("incrbyfloat", 3, WRITE),
        CommandSpec("append", 3, WRITE),
        CommandSpec("setrange", 4, WRITE),
        CommandSpec("mset", -3, WRITE, 1, -1, 2),
        CommandSpec("msetnx", -3, WRITE, 1, -1, 2),
        CommandSpec("rename", 3, WRITE, 1, 2, 1),
        CommandSpec("renamenx", 3, WRITE, 1, 2, 1),
        CommandSpec("copy", -3, WRITE, 1, 2, 1),
        CommandSpec("flushall", -1, WRITE, 0, 0, 0),
        CommandSpec("flushdb", -1, WRITE, 0, 0, 0),
        CommandSpec("cas", 4, WRITE),
        CommandSpec("expire", -3, WRITE),
        CommandSpec("pexpire", -3, WRITE),
        CommandSpec("expireat", -3, WRITE),
        CommandSpec("pexpireat", -3, WRITE),
        CommandSpec("persist", 2, WRITE),
        CommandSpec("eval", -3, WRITE, 0, 0, 0),
        CommandSpec("evalsha", -3, WRITE, 0, 0, 0),
        CommandSpec("script", -2, WRITE, 0, 0, 0),
        # PUBLISH channel message: through the log, so every node delivers it in the same
        # order (raftkv.server.pubsub); it changes no key
        CommandSpec("publish", 3, WRITE, 0, 0, 0),
        # RaftKV's own, built by the server: one MULTI's commands; the leader's expiry
        CommandSpec("exec", 2, WRITE, 0, 0, 0, internal=True),
        CommandSpec("expired", -2, WRITE, 1, -1, 1, internal=True),
        # client sessions (sessions.py), built by the server from RAFT SESSION / RAFT ONCE
        CommandSpec("session_open", -2, WRITE, 0, 0, 0, internal=True),  # ms [id]
        CommandSpec("session_close", 2, WRITE, 0, 0, 0, internal=True),
        CommandSpec("once", -4, WRITE, 0, 0, 0, internal=True),
        # the leader's record that a voter has served (raftkv.node.publish): ``id``
        CommandSpec("publish_member", 2, WRITE, 0, 0, 0, internal=True),
        # the leader's record of a member's feature level (raftkv.kv.features): ``id level``
        CommandSpec("member_level", 3, WRITE, 0, 0, 0, internal=True),
        # the level-1 form of an entry that runs scripts: ``units inner...`` (features.py)
        CommandSpec("budget", -3, WRITE, 0, 0, 0, internal=True),
        # reads
        CommandSpec("get", 2, READ),
        CommandSpec("getrange", 4, READ),
        CommandSpec("exists", -2, READ, 1, -1, 1),
        CommandSpec("touch", -2, READ, 1, -1, 1),
        CommandSpec("strlen", 2, READ),
        CommandSpec("type", 2, READ),
        CommandSpec("object", -2, READ, 2, 2, 1),
        CommandSpec("ttl", 2, READ),
        CommandSpec("pttl", 2, READ),
        CommandSpec("expiretime", 2, READ),
        CommandSpec("pexpiretime", 2, READ),
        CommandSpec("mget", -2, READ, 1, -1, 1),
        CommandSpec("keys", 2, READ, 0, 0, 0),
        CommandSpec("scan", -2, READ, 0, 0, 0),
        CommandSpec("randomkey", 1, READ, 0, 0, 0),
        CommandSpec("dbsize", 1, READ, 0, 0, 0),
        CommandSpec("eval_ro", -3, READ, 0, 0, 0),
        CommandSpec("evalsha_ro", -3, READ, 0, 0, 0),
        # served through the client port's transaction state (transaction.py)
        CommandSpec("watch", -2, READ, 1, -1, 1),
    )
}

_BY_BYTES: dict[bytes, CommandSpec] = {name.encode(): spec for name, spec in COMMANDS.items()}
# The table by lower-case bytes name: for a hot path that has lowered the name already
# (``lookup`` lowers it again, and is a call).
SPECS = _BY_BYTES


def legacy_form(args: list[bytes]) -> list[bytes]:
    """The original RaftKV's ``set key=value`` as ``SET key value`` (the server runs it as a
    plain SET; the client sends it as one, so it retries it as an idempotent write)."""
    # The name first: ``b"=" in value`` costs ~10x ``bytes.lower`` (CPython tries the
    # argument as an int first), and this runs on every command, twice.
    if len(args) == 2 and args[0].lower() == b"set" and b"=" in args[1]:
        key, _, value = args[1].partition(b"=")
        return [args[0], key, value]
    return args


def lookup(name: bytes | str) -> CommandSpec | None:
    """The command called ``name`` in any case, or None."""
    if isinstance(name, str):
        return COMMANDS.get(name.lower())
    return _BY_BYTES.get(name.lower())


_PAIRED = frozenset({"mset", "msetnx"})  # key value pairs: an odd count is an arity error


def check_arity(args: list[bytes]) -> ErrorReply | None:
    """Redis's error for an unknown command or a wrong argument count, or None if fine.

    MSET's pairs count as arity: Redis answers an odd count with the arity error too.
    """
    spec = _BY_BYTES.get(args[0].lower()) if args else None
    if spec is None:
        return unknown_command(args)
    paired = spec.name in _PAIRED
    if not spec.arity_ok(len(args)) or (paired and len(args) % 2 == 0):
        return wrong_arity(spec.name)
    return None


def _set(args: list[bytes]) -> ErrorReply | None:
    if len(args) == 3:  # no options: nothing to refuse (every SET of a benchmark; no
        return None  # SetOptions built and dropped per proposal, ~0.4 us)
    options = syntax.parse_set_options(args)
    return options if isinstance(options, ErrorReply) else None


def _incrby(args: list[bytes]) -> ErrorReply | None:
    amount = syntax.parse_increment(args[2])
    return amount if isinstance(amount, ErrorReply) else None


def _decrby(args: list[bytes]) -> ErrorReply | None:
    amount = syntax.parse_decrement(args[2])
    return amount if isinstance(amount, ErrorReply) else None


def _scan(args: list[bytes]) -> ErrorReply | None:
    if parse_cursor(args[1]) is None:
        return INVALID_CURSOR
    options = syntax.parse_scan_options(args)
    return options if isinstance(options, ErrorReply) else None


def _setex(args: list[bytes]) -> ErrorReply | None:
    unit = 1000 if args[0].lower() == b"setex" else 1
    spec = syntax.parse_expire_value(args[2], unit, False, args[0].lower().decode())
    return spec if isinstance(spec, ErrorReply) else None


def _getex(args: list[bytes]) -> ErrorReply | None:
    options = syntax.parse_set_options(args, getex=True)
    return options if isinstance(options, ErrorReply) else None


def _expire(args: list[bytes]) -> ErrorReply | None:
    name = args[0].lower()
    parsed = syntax.parse_expire_args(args, 1000 if name in (b"expire", b"expireat") else 1)
    return parsed if isinstance(parsed, ErrorReply) else None


def _incrbyfloat(args: list[bytes]) -> ErrorReply | None:
    return NOT_FLOAT if parse_long_double(args[2]) is None else None


def _getrange(args: list[bytes]) -> ErrorReply | None:
    if parse_int64(args[2]) is None or parse_int64(args[3]) is None:
        return NOT_INTEGER
    return None


def _copy(args: list[bytes]) -> ErrorReply | None:
    options = syntax.parse_copy_options(args)
    return options if isinstance(options, ErrorReply) else None


def _eval(args: list[bytes]) -> ErrorReply | None:
    numkeys = syntax.parse_numkeys(args)
    return numkeys if isinstance(numkeys, ErrorReply) else None


def _exec(args: list[bytes], decoded: Decoded | None = None) -> ErrorReply | None:
    if decoded is None:
        decoded = decode_exec(args[1])
    if isinstance(decoded, ErrorReply):
        return decoded
    for command in decoded[1]:
        if command[0].lower() in (b"exec", b"watch"):
            return ErrorReply("ERR EXEC and WATCH cannot run inside a transaction")
        error = validate(command)
        if error is not None:
            return error
    return None


def unbuilt_error(args: list[bytes], decoded: Decoded | None = None) -> ErrorReply | None:
    """An entry ``validate`` accepts but no node builds: ``budget`` and ``member_level``
    (the leader writes them itself), ``once`` of an internal command other than ``exec``,
    or an internal command inside an ``exec`` (attack13: a follower's
    forwarded ``once id seq expired k`` or an EXEC of ``once``-wrapped APPENDs, which
    entry_cost did not weigh, reached the log). Checked before proposing only (Node.check):
    apply still takes what it took, so entries already in logs apply as before.
    ``decoded``: ``exec_of(args)``, if the caller has it."""
    name = args[0].lower()
    if name in (b"budget", b"member_level"):  # the leader's own (raftkv.kv.features): a
        # forwarded member_level could open the gate for a member that cannot read the form
        return ErrorReply(f"ERR the internal command '{name.decode()}' is written by the "
                          "leader only")
    if name == b"once" and len(args) > 3:
        spec = lookup(args[3])
        if spec is not None and spec.internal and spec.name != "exec":
            return ErrorReply(f"ERR RAFT ONCE cannot wrap the internal command "
                              f"'{spec.name}'")
        if spec is None or spec.name != "exec" or len(args) != 5:
            return None
        args = args[3:]
    elif name != b"exec" or len(args) != 2:
        return None
    if decoded is None:
        decoded = decode_exec(args[1])
    if isinstance(decoded, ErrorReply):
        return None  # (validate's to answer)
    for command in decoded[1]:
        spec = lookup(command[0]) if command else None
        if spec is not None and spec.internal:
            return ErrorReply(f"ERR the internal command '{spec.name}' cannot run inside "
                              "a transaction")
    return None


def parse_session_number(raw: bytes, what: str) -> int | ErrorReply:
    """A session id, sequence number or timeout: a positive int64."""
    value = parse_int64(raw)
    if value is None or value <= 0:
        return ErrorReply(f"ERR {what} must be a positive integer")
    return value


def parse_seq(raw: bytes) -> int | None:
    """A sequence number (a positive int64, strictly spelled), or None. Those a session
    counts up to (under 19 digits) are read without ``parse_int64``'s general path, which
    took twice as long; the rest go through it."""
    if raw.isdigit() and len(raw) < 19 and raw[0] != 48:  # (isdigit: ASCII only; no "0")
        return int(raw)
    seq = parse_int64(raw)
    return seq if seq is not None and seq > 0 else None


# Session ids as the commands spell them -> their value: every command of a session
# carries the same 19 digits, parsed once here (on the proposing node by ``validate``, on
# every replica by the state machine's apply). A cache, not state; bounded.
SESSION_IDS: dict[bytes, int] = {}
SESSION_IDS_MAX = 32_768


def session_id(raw: bytes) -> int | None:
    """``raw`` as a session id (a positive int64, strictly spelled), or None."""
    sid = SESSION_IDS.get(raw)
    if sid is None:
        sid = parse_int64(raw)
        if sid is None or sid <= 0:
            return None
        if len(SESSION_IDS) >= SESSION_IDS_MAX:
            SESSION_IDS.clear()
        SESSION_IDS[raw] = sid
    return sid


def _session_open(args: list[bytes]) -> ErrorReply | None:
    if len(args) > 3:
        return wrong_arity("session_open")
    timeout = parse_session_number(args[1], "session timeout")
    if isinstance(timeout, ErrorReply):
        return timeout
    if len(args) == 3:
        sid = parse_session_number(args[2], "session id")
        if isinstance(sid, ErrorReply):
            return sid
    return None if timeout <= MAX_SESSION_TIMEOUT_MS else ErrorReply(
        f"ERR session timeout must be at most {MAX_SESSION_TIMEOUT_MS // 1000} seconds")


def _session_close(args: list[bytes]) -> ErrorReply | None:
    sid = parse_session_number(args[1], "session id")
    return sid if isinstance(sid, ErrorReply) else None


MAX_MEMBER_ID = 2**63 - 1  # node ids are 1 .. 2**63 - 1 (wire.raft.MAX_NODE_ID)
_MEMBER_ID = re.compile(rb"[1-9][0-9]{0,18}")


def member_id(text: bytes) -> int | None:
    """A node id written as ``publish_member`` holds it (no sign, no leading zero), or None."""
    if type(text) is not bytes or not _MEMBER_ID.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_MEMBER_ID else None


def _publish_member(args: list[bytes]) -> ErrorReply | None:
    return None if member_id(args[1]) is not None else ErrorReply(
        f"ERR member id must be an integer from 1 to {MAX_MEMBER_ID}")


MAX_LEVEL = 2**16  # feature levels are 0 .. MAX_LEVEL - 1 (raftkv.kv.features)


def parse_level(raw: bytes) -> int | None:
    """A feature level as ``member_level`` writes it (plain digits, no leading zero)."""
    if type(raw) is not bytes or not raw.isdigit() or len(raw) > 5 or (
            len(raw) > 1 and raw[0] == 48):
        return None
    value = int(raw)
    return value if value < MAX_LEVEL else None


def _member_level(args: list[bytes]) -> ErrorReply | None:
    if member_id(args[1]) is None:
        return ErrorReply(f"ERR member id must be an integer from 1 to {MAX_MEMBER_ID}")
    if parse_level(args[2]) is None:
        return ErrorReply(f"ERR feature level must be an integer from 0 to {MAX_LEVEL - 1}")
    return None


def once_numbers(args: list[bytes], decoded: Decoded | None = None
                 ) -> tuple[int, int] | ErrorReply:
    """The (session, seq) of ``once session seq command...`` (at least 4 arguments), or
    the error ``validate`` answers for it: the whole check, the wrapped command's included.
    The state machine's apply checks a subset quickly and calls this for the error text.
    ``decoded``: ``exec_of(args)``, if the caller has it."""
    inner = args[3:]
    return check_once(args[1], args[2], _BY_BYTES.get(inner[0].lower()), inner, decoded)


def check_once(raw_sid: bytes, raw_seq: bytes, spec: CommandSpec | None,
               inner: list[bytes], decoded: Decoded | None = None
               ) -> tuple[int, int] | ErrorReply:
    """``once_numbers`` of ``once raw_sid raw_seq *inner``, ``spec`` being ``inner``'s
    command (or None): the leader's RAFT ONCE has looked it up already, and this is every
    check ``validate`` makes of the entry, each once (``Node.submit_once``). ``decoded``:
    ``exec_of`` of the entry (its inner EXEC's payload), if the caller has it."""
    # (``session_id`` and ``parse_seq``'s common cases inlined: the leader validates every
    # RAFT ONCE; an id seen before, a sequence number under 19 digits.)
    sid = SESSION_IDS.get(raw_sid) or session_id(raw_sid)
    if sid is None:
        return parse_session_number(raw_sid, "session id")  # (its error)
    seq = (int(raw_seq) if raw_seq.isdigit() and len(raw_seq) < 19 and raw_seq[0] != 48
           else parse_seq(raw_seq))
    if seq is None:
        return parse_session_number(raw_seq, "sequence number")  # (its error)
    if spec is None:
        return unknown_command(inner)
    if spec.name in ("once", "session_open", "session_close"):
        return ErrorReply("ERR RAFT ONCE cannot wrap a session command")
    if spec.flag != WRITE:
        return ErrorReply(f"ERR RAFT ONCE wraps writes only; '{spec.name}' is a read")
    error = check_call(spec, inner, decoded)
    return (sid, seq) if error is None else error


def _once(args: list[bytes], decoded: Decoded | None = None) -> ErrorReply | None:
    checked = once_numbers(args, decoded)
    return checked if isinstance(checked, ErrorReply) else None


# Checks that need only the arguments (never the data); commands without one cannot fail so.
_SYNTAX: dict[str, Callable[[list[bytes]], ErrorReply | None]] = {
    "set": _set,
    "setex": _setex,
    "psetex": _setex,
    "getex": _getex,
    "incrby": _incrby,
    "decrby": _decrby,
    "incrbyfloat": _incrbyfloat,
    "setrange": lambda args: syntax.check_setrange(args, MAX_VALUE_LEN),
    "getrange": _getrange,
    "copy": _copy,
    "object": syntax.check_object,
    "flushall": syntax.check_flushall,
    "flushdb": syntax.check_flushall,
    "scan": _scan,
    "expire": _expire,
    "pexpire": _expire,
    "expireat": _expire,
    "pexpireat": _expire,
    "eval": _eval,
    "evalsha": _eval,
    "eval_ro": _eval,
    "evalsha_ro": _eval,
    "script": syntax.check_script,
    "exec": _exec,
    "session_open": _session_open,
    "session_close": _session_close,
    "once": _once,
    "publish_member": _publish_member,
    "member_level": _member_level,
}


def encode_exec(watches: list[tuple[bytes, int, int]], commands: list[list[bytes]]) -> bytes:
    """The argument of the internal ``EXEC payload`` entry: watched versions and commands."""
    return msgpack.packb([[list(w) for w in watches], commands], use_bin_type=True)


Watches = list[tuple[bytes, int, int]]  # (key, exists, modification index) per watched key


Decoded = tuple[Watches, list[list[bytes]]] | ErrorReply


def exec_of(args: list[bytes]) -> Decoded | None:
    """The decoded payload of an ``EXEC payload`` entry, or of ``once id seq EXEC payload``
    (an error if malformed); None for any other command. The node decodes it once before
    proposing and hands it to each check that reads it (``validate``, ``unbuilt_error``,
    ``key_cap``, ``growth_error``, ``entry_cost``, ``runs_scripts``: each decoded it, up to
    five times); a check called without it decodes the payload itself."""
    n = len(args)
    if n == 2 and args[0].lower() == b"exec":
        return decode_exec(args[1])
    if n == 5 and args[3].lower() == b"exec" and args[0].lower() == b"once":
        return decode_exec(args[4])
    return None


def decode_exec(payload: bytes) -> Decoded:
    """The (watches, commands) of an ``encode_exec`` payload, checked; an error if malformed."""
    bad = ErrorReply("ERR malformed transaction")
    try:
        obj = msgpack.unpackb(payload, raw=False)
    except Exception:  # msgpack raises several types for the many ways bytes are bad
        return bad
    if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not list:
        return bad
    raw_watches, raw_commands = obj
    if type(raw_commands) is not list or len(raw_commands) > MAX_TRANSACTION_COMMANDS:
        return bad
    if len(raw_watches) > MAX_WATCHED_KEYS:
        return bad
    watches: list[tuple[bytes, int, int]] = []
    for w in raw_watches:
        if (type(w) is not list or len(w) != 3 or type(w[0]) is not bytes
                or type(w[1]) is not int or type(w[2]) is not int):
            return bad
        watches.append((w[0], w[1], w[2]))
    for command in raw_commands:
        if (type(command) is not list or not command
                or any(type(arg) is not bytes for arg in command)):
            return bad
    return watches, raw_commands


def validate(args: list[bytes], decoded: Decoded | None = None) -> ErrorReply | None:
    """Every error ``args`` gets whatever the data holds (arity, syntax), or None.

    A command that passes can still fail on the data: INCR of a non-integer, an overflow,
    APPEND past the size limit.
    """
    spec = _BY_BYTES.get(args[0].lower()) if args else None
    if spec is None:
        return unknown_command(args)
    return check_call(spec, args, decoded)


def check_call(spec: CommandSpec, args: list[bytes], decoded: Decoded | None = None
               ) -> ErrorReply | None:
    """``validate`` of ``args``, a call of ``spec`` (looked up once, by the caller);
    ``decoded``: ``exec_of(args)``, if the caller has it (an EXEC, or ONCE of one)."""
    argc = len(args)
    if ((argc != spec.arity) if spec.arity > 0 else (argc < -spec.arity)) or (
            argc % 2 == 0 and spec.name in _PAIRED):
        return wrong_arity(spec.name)
    if decoded is not None:  # (the caller decoded the payload: ``exec_of``)
        if spec.name == "exec":
            return _exec(args, decoded)
        if spec.name == "once":
            return _once(args, decoded)
    check = _SYNTAX.get(spec.name)
    return None if check is None else check(args)
