"""Commands the client port answers itself, and the hand-off of the rest to the node.

Connection-level commands (PING, HELLO, CLIENT, SELECT, ...) and what real clients send
when they connect (redis-py: HELLO 3, CLIENT SETINFO; redis-cli: COMMAND DOCS;
redis-benchmark: CONFIG GET) are answered here without touching Raft. ``INFO`` and ``RAFT``
read the node. Everything else is a state-machine command: ``node.submit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from raftkv import __version__
from raftkv.kv import COMMANDS, SPECS, CommandSpec, legacy_form, lookup
from raftkv.kv.errors import unknown_command, unknown_subcommand
from raftkv.kv.notify import INVALID_FLAGS, flags_text, parse_flags
from raftkv.node.node import CHECKS, Node
from raftkv.node.pending import Pending
from raftkv.server import transaction
from raftkv.server.acl import COMMAND_CATEGORIES
from raftkv.server.admin import raft_command
from raftkv.server.auth import ACL_CHANGED, acl_of, gate, hello_auth, queue_still_allowed
from raftkv.server.auth import handlers as auth_handlers
from raftkv.server.connection import Connection
from raftkv.server.info import REDIS_COMPAT_VERSION, render_info
from raftkv.server.pubsub import SUBSCRIBED_MODE_COMMANDS, subscribed_mode_error
from raftkv.server.pubsub_cmd import (
    cmd_psubscribe,
    cmd_pubsub,
    cmd_punsubscribe,
    cmd_subscribe,
    cmd_unsubscribe,
    publish,
)
from raftkv.server.session_cmd import once_command
from raftkv.server.streams import FEED, WRITE_TO_FEED, is_feed_name, writes_feed
from raftkv.server.streams import HANDLERS as STREAM_HANDLERS
from raftkv.server.write_runs import RUN_WRITES
from wire.reply import OK, ErrorReply, SimpleString
from wire.resp import string2ll

PONG = SimpleString("PONG")


def _err(text: str) -> Pending:
    return Pending.of(ErrorReply(text))


def _wrong_args(name: str) -> Pending:
    return _err(f"ERR wrong number of arguments for '{name}' command")


# Local commands whose answer depends on what this node has applied: reads of its change
# feed (streams.py), and subscriptions (which messages they get). The client port runs
# them behind the connection's writes, once this node has applied those (attack6: a
# pipelined ``SET k v; XRANGE __raftkv:changes:k - +`` read the feed before the SET was
# proposed, and ``PUBLISH ch m; SUBSCRIBE ch`` delivered m to the later subscription).
# They stay local for ``is_write``: later commands do not wait for them (a write behind an
# ``XREAD BLOCK 0`` would wait forever, and the reader would not see the client hang up).
AFTER_APPLY = frozenset({b"xread", b"xrange", b"xrevrange", b"xinfo",
                         b"subscribe", b"psubscribe"})


def is_write(args: list[bytes], name: bytes | None = None) -> bool | None:
    """True for commands that go through the log, False for reads, None for the rest.
    ``RAFT ONCE id seq COMMAND...`` is what COMMAND is: the client port orders a read
    pipelined after a session's write behind it, as after a plain write (it was None, so a
    GET sent after ``RAFT ONCE ... SET`` on one connection could be read before the SET
    committed). Asked for every command: every name but RAFT's is answered from a table
    (``KINDS``, built from the same rules once). ``name``: ``args[0].lower()``, if the
    caller has it."""
    if name is None:
        name = args[0].lower()
    if name != b"raft":
        return KINDS.get(name)
    if len(args) > 4 and args[1].lower() == b"once":  # (``_is_write``'s answer, from the table)
        return KINDS.get(args[4].lower())
    return None  # RAFT's own subcommands are local


def _is_write(args: list[bytes]) -> bool | None:
    args = _once_inner(args)
    name = args[0].lower()
    if name in LOCAL or name in (b"multi", b"discard", b"unwatch"):
        return None
    spec = lookup(args[0])
    return None if spec is None else spec.is_write


# Lua scripts are on unless the node runs with --no-scripts.
SCRIPTING = frozenset({b"eval", b"evalsha", b"eval_ro", b"evalsha_ro", b"script"})
SCRIPTS_DISABLED = ("ERR scripts are disabled on this node (it runs with --no-scripts); "
                    "start every node without it to use EVAL")


def _once_inner(args: list[bytes]) -> list[bytes]:
    """The command ``RAFT ONCE id seq`` carries, or ``args`` itself."""
    if len(args) > 4 and args[0].lower() == b"raft" and args[1].lower() == b"once":
        return args[4:]
    return args


def _refused(node: Node, args: list[bytes], name: bytes | None = None) -> ErrorReply | None:
    """Why the client port refuses ``args`` before running or queueing it, or None: a
    command of the log's own, a write to the change feed's names, a script on a node
    with --no-scripts (the last two also inside RAFT ONCE, unwrapped once here: attack3,
    the script switch read the first word only, so RAFT ONCE ran scripts on a node
    without --enable-scripts)."""
    # (Asked of every write: the command is looked up once, and again only inside RAFT
    # ONCE; ``set key=value``'s legacy form keeps its name, so its spec. ``name``:
    # ``args[0].lower()``, if the caller has it.)
    if name is None:
        name = args[0].lower()
    spec = SPECS.get(name)
    if spec is not None and spec.internal:
        return unknown_command(args)
    inner = _once_inner(args) if name == b"raft" else args
    if inner is not args:
        name = inner[0].lower()
        spec = lookup(name)
    refused = _spec_writes_feed(spec, legacy_form(inner) if len(inner) == 2 else inner)
    if refused is not None:
        return refused
    if name in SCRIPTING and not node.settings.enable_scripts:
        return ErrorReply(SCRIPTS_DISABLED)
    return None


def _refusal(node: Node, args: list[bytes], name: bytes) -> ErrorReply | None:
    """``_refused`` (``name``: ``args[0].lower()``), answered without it for a plain read
    and for a one-key write whose key cannot be the feed's (``_FEED_FREE_AT``): a SET
    went through its four calls, ~1 us of each on the leader (p16)."""
    at = _FEED_FREE_AT.get(name)
    if at is not None and len(args) > at and not args[at].startswith(FEED):
        return None
    return None if name in _PLAIN_READS else _refused(node, args, name)


def execute(node: Node, conn: Connection, args: list[bytes],
            name: bytes | None = None) -> Pending:
    """Run a client's command; ``name``: ``args[0].lower()``, if the caller has it (the
    client port: each call below took it again, a pipelined SET's share; p16)."""
    if name is None:
        name = args[0].lower()
    server = conn.server  # (``acl_of``, without its call)
    denied = gate(server.acl if server is not None else acl_of(conn), conn, args,
                  name)  # AUTH and ACL users (auth.py)
    if denied is not None:
        if conn.tx.queue is not None:
            conn.tx.dirty = True  # EXEC will answer EXECABORT, as Redis does
        return Pending.of(denied)
    subs = conn.subs  # (its ``count``, without the property's call: asked of every command)
    if (conn.proto == 2 and (subs.channels or subs.patterns)
            and name not in SUBSCRIBED_MODE_COMMANDS
            and (name in LOCAL or name in TRANSACTION or lookup(name) is not None)):
        return _err(subscribed_mode_error(name))  # Redis's RESP2 subscribed mode
    control = TRANSACTION.get(name)
    if control is not None:
        return control(node, conn, args)
    if (name == b"raft" and conn.tx.queue is None and len(args) > 4
            and args[1].lower() == b"once"):
        return _raft_once(node, args)
    refused = _refusal(node, args, name)
    if refused is not None:
        if conn.tx.queue is not None:
            conn.tx.dirty = True  # EXEC will answer EXECABORT, as for any refused command
        return Pending.of(refused)
    handler = LOCAL.get(name)
    if conn.tx.queue is not None and name not in (b"quit", b"reset"):  # inside MULTI: queue it
        return transaction.enqueue(node, conn.tx, args, handler is not None)
    if handler is not None:
        return handler(node, conn, args)
    if name == b"publish":  # a write whose answer is this node's count of receivers
        return publish(node, conn, args)
    # (Only a SET of two words can be ``set key=value``: a GET skips the call.)
    return node.submit(legacy_form(args) if len(args) == 2 and name == b"set" else args)


def run_member(node: Node, conn: Connection, args: list[bytes], name: bytes
               ) -> ErrorReply | None:
    """``execute`` of a write ``write_runs.may_join`` accepted, on a connection outside
    MULTI: None if it passed every check a command gets there (ACL, subscribed mode,
    ``_refusal``, ``Node.checked``) and may join the connection's run (the client port
    proposes the run, ``Node.submit_run``), else its error, which is its answer."""
    server = conn.server
    denied = gate(server.acl if server is not None else acl_of(conn), conn, args, name)
    if denied is not None:
        return denied
    subs = conn.subs
    if conn.proto == 2 and (subs.channels or subs.patterns):
        return ErrorReply(subscribed_mode_error(name))
    refused = _refusal(node, args, name)
    if refused is not None:
        return refused
    checked = node.checked(SPECS[name], args)
    return None if checked is False else checked  # (True, runs scripts: never, see below)


def _raft_once(node: Node, args: list[bytes]) -> Pending:
    """``RAFT ONCE id seq command...`` outside MULTI, a session's every write: what
    ``_refused`` and then RAFT's handler (session_cmd.py) do, with the wrapped command
    looked up once, not four times (the client port's share of a session's overhead),
    and the entry checked by ``Node.submit_once`` with that spec, not looked up again."""
    inner = args[4:]
    if len(inner) == 2:  # ``set key=value`` runs as the SET it means, in a session too
        inner = legacy_form(inner)  # (attack14: it answered a wrong number of arguments)
    lowered = inner[0].lower()
    spec = SPECS.get(lowered)
    refused = None
    if spec is not None and spec.is_write and spec.arity_ok(len(inner)):
        refused = writes_feed(spec.keys(inner))  # (``_inner_writes_feed``, with its spec)
    if refused is None and lowered in SCRIPTING and not node.settings.enable_scripts:
        refused = ErrorReply(SCRIPTS_DISABLED)
    if refused is not None:
        return Pending.of(refused)
    if spec is None or spec.internal or spec.name == "watch" or not spec.is_write:
        command = once_command(args, spec)  # an error, or the read it carries
        return Pending.of(command) if isinstance(command, ErrorReply) else node.submit(command)
    return node.submit_once([b"once", args[2], args[3], *inner], spec)


# Reads _refused never refuses (not internal, not a write, not a script, not RAFT): GET and
# its kind skip its three lookups, a measurable share of a GET's CPU on the client port.
_PLAIN_READS = frozenset(
    name.encode() for name, spec in COMMANDS.items()
    if not spec.internal and not spec.is_write and name.encode() not in SCRIPTING
    and name != "raft"
)


def internal(name: bytes) -> bool:
    """True for the log's own commands (``once``, ``session_open``, ``expired``...): the
    server builds them from RAFT ONCE, RAFT SESSION, MULTI and the leader's expiry, and
    the ACL gate does not know them, so from a client they are unknown commands (attack3:
    a read-only user ran FLUSHALL as ``once SID 1 FLUSHALL``)."""
    spec = lookup(name)
    return spec is not None and spec.internal


def _writes_feed(args: list[bytes]) -> ErrorReply | None:
    """An error if ``args`` writes one of the change feed's names (raftkv.server.streams),
    directly or wrapped in RAFT ONCE."""
    return _inner_writes_feed(_once_inner(args))


def _inner_writes_feed(args: list[bytes]) -> ErrorReply | None:
    """``_writes_feed`` of a command already taken out of RAFT ONCE (``set key=value`` as
    the SET it runs as: attack7, it made a string key named ``__raftkv:changes``)."""
    args = legacy_form(args)
    return _spec_writes_feed(lookup(args[0]), args)


def _spec_writes_feed(spec: CommandSpec | None, args: list[bytes]) -> ErrorReply | None:
    """``_inner_writes_feed`` of ``args`` (in its legacy form), a call of ``spec``."""
    if spec is None or not spec.is_write or not spec.arity_ok(len(args)):
        return None
    at = _ONE_KEY.get(spec.name)
    if at is not None:  # (SET, INCR...: its one key, without a list and two calls)
        return WRITE_TO_FEED if is_feed_name(args[at]) else None
    return writes_feed(spec.keys(args))


# Writes that name exactly one key, at this position, whatever their arguments: what
# ``CommandSpec.keys`` answers for them is that one argument (scripts count their keys).
_ONE_KEY = {name: spec.first_key for name, spec in COMMANDS.items()
            if spec.is_write and spec.first_key > 0 and spec.last_key == spec.first_key
            and name not in ("eval", "evalsha", "eval_ro", "evalsha_ro")}

# Of those, the ones ``_refused`` can refuse only for that key (not the log's own, not a
# script, not RAFT): a call whose argument there does not start with the feed's name is
# not refused (``_refusal``). ``set key=value``'s key is a prefix of its second word, so
# that word not starting with the name covers it too.
_FEED_FREE_AT = {name.encode(): at for name, at in _ONE_KEY.items()
                 if not COMMANDS[name].internal and name.encode() not in SCRIPTING
                 and name != "raft"}


def cmd_multi(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) != 1:
        return _wrong_args("multi")
    if conn.tx.queue is None:
        conn.tx.acl_generation = acl_of(conn).generation
    return transaction.multi(conn.tx)


def cmd_exec(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) != 1:
        return _wrong_args("exec")
    if not conn.tx.dirty and not queue_still_allowed(acl_of(conn), conn):
        conn.tx.reset()  # discarded, as Redis does
        return Pending.of(ACL_CHANGED)
    return transaction.exec_(node, conn.tx)


def cmd_discard(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return transaction.discard(conn.tx) if len(args) == 1 else _wrong_args("discard")


def cmd_watch(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return transaction.watch(node, conn.tx, args) if len(args) >= 2 else _wrong_args("watch")


def cmd_unwatch(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if conn.tx.queue is not None:  # queued like Redis; answered OK in EXEC's array
        return transaction.enqueue(node, conn.tx, args, True)
    return transaction.unwatch(conn.tx) if len(args) == 1 else _wrong_args("unwatch")


def cmd_time(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    """TIME from this node's wall clock (served locally, as the brief of the command says)."""
    if len(args) != 1:
        return _wrong_args("time")
    micros = time.time_ns() // 1000
    return Pending.of([b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)])


def cmd_ping(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) > 2:
        return _wrong_args("ping")
    if conn.proto == 2 and conn.subs.count:  # a RESP2 subscriber gets an array, as in Redis
        return Pending.of([b"pong", args[1] if len(args) == 2 else b""])
    return Pending.of(args[1] if len(args) == 2 else PONG)


def cmd_echo(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    return Pending.of(args[1]) if len(args) == 2 else _wrong_args("echo")


def cmd_quit(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    conn.closing = True
    return Pending.of(OK)


RESET = SimpleString("RESET")


def cmd_reset(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    """Redis's RESET: leave MULTI, forget WATCHes and subscriptions, back to RESP2, no name,
    and the connection's initial user (so a client that authenticated is no longer)."""
    if len(args) != 1:
        return _wrong_args("reset")
    conn.tx.reset()
    if conn.server is not None:
        conn.server.pubsub.drop(conn)
        conn.user = conn.server.acl.initial_user()
    conn.proto = 2
    conn.name = ""
    return Pending.of(RESET)


def cmd_select(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) != 2:
        return _wrong_args("select")
    if args[1] != b"0":
        return _err("ERR DB index is out of range")
    return Pending.of(OK)


def cmd_hello(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    proto = conn.proto
    rest = args[1:]
    if rest:
        proto = string2ll(rest[0])  # strict, as Redis: int() would take "0_3" or " 3 "
        if proto is None:
            return _err("ERR Protocol version is not an integer or out of range")
        if proto not in (2, 3):
            return _err("NOPROTO unsupported protocol version")
        rest = rest[1:]
    name: bytes | None = None
    pair: tuple[bytes, bytes] | None = None
    while rest:
        opt = rest[0].lower()
        if opt == b"setname" and len(rest) >= 2:
            if len(rest[1]) > MAX_CLIENT_NAME:
                return _err(NAME_TOO_LONG)
            if not _printable(rest[1]):
                return _err(BAD_CLIENT_NAME)
            name = rest[1]
            rest = rest[2:]
        elif opt == b"auth" and len(rest) >= 3:
            pair = (rest[1], rest[2])  # checked below, never accepted unchecked
            rest = rest[3:]
        else:
            return _err(f"ERR Syntax error in HELLO option '{rest[0].decode(errors='replace')}'")
    denied = hello_auth(acl_of(conn), conn, pair)
    if denied is not None:
        return Pending.of(denied)
    if name is not None:
        conn.name = name.decode()
    conn.proto = proto
    return Pending.of({
        "server": "raftkv",
        "version": REDIS_COMPAT_VERSION,
        "raftkv_version": __version__,
        "proto": proto,
        "id": conn.id,
        "mode": "standalone",
        "role": "master" if node.core.leader_id == node.id else "replica",
        "modules": [],
    })


def cmd_client(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) < 2:
        return _wrong_args("client")
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        if len(args[2]) > MAX_CLIENT_NAME:
            return _err(NAME_TOO_LONG)
        if not _printable(args[2]):
            return _err(BAD_CLIENT_NAME)
        conn.name = args[2].decode()
        return Pending.of(OK)
    if sub == b"getname" and len(args) == 2:
        return Pending.of(conn.name.encode() if conn.name else None)
    if sub == b"id" and len(args) == 2:
        return Pending.of(conn.id)
    if sub == b"setinfo" and len(args) == 4:
        attr = args[2].lower()
        if len(args[3]) > MAX_CLIENT_NAME:
            return _err(NAME_TOO_LONG)
        if attr in (b"lib-name", b"lib-ver") and not _printable(args[3]):
            return _err(f"ERR {attr.decode()} cannot contain spaces, newlines or special "
                        "characters.")
        if attr == b"lib-name":
            conn.lib_name = args[3].decode()
        elif attr == b"lib-ver":
            conn.lib_ver = args[3].decode()
        else:
            return _err(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
        return Pending.of(OK)
    if sub == b"info" and len(args) == 2:
        return Pending.of(_client_line(conn).encode() + b"\n")
    if sub == b"list":
        others = conn.server.connections.values() if conn.server is not None else [conn]
        lines = [_client_line(c) for c in others]
        return Pending.of(("\n".join(lines) + "\n").encode())
    sub_text = args[1].decode(errors="replace")
    return _err(f"ERR unknown subcommand '{sub_text}'. Try CLIENT HELP.")


BAD_CLIENT_NAME = "ERR Client names cannot contain spaces, newlines or special characters."
# A connection keeps its name, lib-name and lib-ver for its whole life, outside every
# buffer bound (--client-buffer-total counts query and output buffers): with 8 MiB each,
# 12 connections held 270 MB of one node, so 10,000 could have held 240 GB, and checking an
# 8 MiB name byte by byte held the event loop ~0.5 s (attack8). Redis has no bound; names
# are a few dozen bytes in practice.
MAX_CLIENT_NAME = 4096
NAME_TOO_LONG = f"ERR Client names and library info are at most {MAX_CLIENT_NAME} bytes."


def _printable(text: bytes) -> bool:
    """Redis's rule for names and library info: printable ASCII, no spaces. Anything else
    could forge fields or whole lines in other clients' CLIENT LIST."""
    return not text.translate(None, _PRINTABLE)


_PRINTABLE = bytes(range(33, 127))


def _client_line(conn: Connection) -> str:
    return (f"id={conn.id} addr={conn.addr} name={conn.name} db=0 resp={conn.proto} "
            f"sub={len(conn.subs.channels)} psub={len(conn.subs.patterns)} "
            f"user={conn.user or ''} lib-name={conn.lib_name} lib-ver={conn.lib_ver}")


def _command_names() -> set[bytes]:
    public = {name.encode() for name, spec in COMMANDS.items() if not spec.internal}
    return public | set(LOCAL) | set(TRANSACTION)


def _command_entry(name: bytes) -> list[Any] | None:
    """``COMMAND INFO``'s fields for a state-machine command: name, arity, flags, first
    key, last key, step, ACL categories (no tips, key specs or subcommands)."""
    spec = lookup(name)
    if spec is None or spec.internal:
        return None
    flags = {SimpleString(spec.flag if spec.is_write else "readonly")}
    # The categories the ACL checks (raftkv.server.acl: FLUSHALL is @admin here too).
    categories = {SimpleString(f"@{c}") for c in COMMAND_CATEGORIES.get(spec.name, ())}
    return [spec.name.encode(), spec.arity, flags, spec.first_key, spec.last_key,
            spec.key_step, categories]


def _command_getkeys(call: list[bytes]) -> Pending:
    """``COMMAND GETKEYS cmd arg...``: the keys of that call, with Redis's errors (client
    libraries route by it, so the answer must be the keys, never the command table)."""
    if not call:
        return _wrong_args("command|getkeys")
    name = call[0].lower()
    spec = lookup(name)
    if name == b"watch":  # a transaction command, every argument a key
        keys = call[1:]
        if not keys:
            return _err("ERR Invalid number of arguments specified for command")
        return Pending.of(keys)
    if spec is None or spec.internal:
        if name in LOCAL or name in TRANSACTION:
            return _err("ERR The command has no key arguments")
        return _err("ERR Invalid command specified")
    if not spec.arity_ok(len(call)):
        return _err("ERR Invalid number of arguments specified for command")
    keys = spec.keys(call)
    if not keys:
        return _err("ERR The command has no key arguments")
    return Pending.of(keys)


def cmd_command(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    # redis-cli asks COMMAND DOCS for its hints and copes with an empty answer.
    if len(args) == 1:
        return Pending.of([_command_entry(name.encode()) for name, spec in COMMANDS.items()
                           if not spec.internal])
    sub = args[1].lower()
    if sub == b"count" and len(args) == 2:
        return Pending.of(len(_command_names()))
    if sub == b"list" and len(args) == 2:
        return Pending.of(sorted(_command_names()))
    if sub == b"docs":
        return Pending.of({})
    if sub == b"info":
        return Pending.of([_command_entry(name) for name in args[2:]])
    if sub == b"getkeys":
        return _command_getkeys(args[2:])
    if sub in (b"count", b"list"):
        return _wrong_args(f"command|{sub.decode()}")
    return Pending.of(unknown_subcommand(args[1], "command"))


CONFIG_VALUES = {b"save": b"", b"appendonly": b"yes", b"databases": b"1"}


NOTIFY = b"notify-keyspace-events"


def cmd_config(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) >= 3 and args[1].lower() == b"get":
        found: dict[bytes, bytes] = {}
        for pattern in args[2:]:
            key = pattern.lower()
            if key in CONFIG_VALUES:
                found[key] = CONFIG_VALUES[key]
            elif key == NOTIFY and conn.server is not None:
                found[key] = flags_text(conn.server.pubsub.notify_flags).encode()
        return Pending.of(found)
    if len(args) == 4 and args[1].lower() == b"set" and args[2].lower() == NOTIFY:
        # Per node, as each Redis server has its own: set it where the subscribers are.
        flags = parse_flags(args[3].decode("latin-1"))
        if flags is None:
            return _err(INVALID_FLAGS)
        if conn.server is not None:
            conn.server.pubsub.notify_flags = flags
        return Pending.of(OK)
    if len(args) == 2 and args[1].lower() == b"resetstat":
        if conn.server is not None:  # as Redis: counters and maxima start again
            conn.server.reset_stats()
        return Pending.of(OK)
    if len(args) >= 2 and args[1].lower() in (b"set", b"rewrite"):
        return _err("ERR RaftKV is configured by its command-line flags, not CONFIG")
    return _wrong_args("config")


def cmd_info(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    sections = [a.decode(errors="replace").lower() for a in args[1:]]
    return Pending.of(render_info(node, conn.server, sections).encode())


def cmd_raft(node: Node, conn: Connection, args: list[bytes]) -> Pending:
    # (Imported at the top, not here: a lazy import opens files, and under descriptor
    # exhaustion it failed, issue 12.)
    return raft_command(node, args)


LOCAL: dict[bytes, Callable[[Any, Any, list[bytes]], Pending]] = {
    b"ping": cmd_ping,
    b"echo": cmd_echo,
    b"quit": cmd_quit,
    b"select": cmd_select,
    b"hello": cmd_hello,
    b"client": cmd_client,
    b"command": cmd_command,
    b"config": cmd_config,
    b"info": cmd_info,
    b"raft": cmd_raft,
    b"time": cmd_time,
    b"reset": cmd_reset,
    b"subscribe": cmd_subscribe,
    b"psubscribe": cmd_psubscribe,
    b"unsubscribe": cmd_unsubscribe,
    b"punsubscribe": cmd_punsubscribe,
    b"pubsub": cmd_pubsub,
    **auth_handlers(),  # AUTH, ACL
    **STREAM_HANDLERS,  # XREAD, XRANGE, XREVRANGE, XINFO on the change feed (streams.py)
}

# Transaction control: handled before queuing (they are what MULTI does not queue).
TRANSACTION: dict[bytes, Callable[[Any, Any, list[bytes]], Pending]] = {
    b"multi": cmd_multi,
    b"exec": cmd_exec,
    b"discard": cmd_discard,
    b"watch": cmd_watch,
    b"unwatch": cmd_unwatch,
}


# is_write's answer for every known name but RAFT's (whose answer depends on its arguments);
# an unknown name is None, as _is_write says.
KINDS: dict[bytes, bool | None] = {
    name: _is_write([name])
    for name in (*LOCAL, *TRANSACTION, *(n.encode() for n in COMMANDS))
    if name != b"raft"
}


# ``run_member`` is ``execute``'s path for write_runs' commands only because none of them
# is local, transaction control, PUBLISH or RAFT, or runs scripts (a run's entry records
# no script budget).
if RUN_WRITES & {*LOCAL, *TRANSACTION, b"publish", b"raft"} or any(
        CHECKS[name.decode()].scripts or not KINDS[name] for name in RUN_WRITES):
    raise RuntimeError("write_runs.RUN_WRITES holds a command run_member cannot run")
