"""Client authentication and permission checks on the client port (issue 13).

``gate`` runs before every command on the node the client is connected to, so a follower
refuses a denied command itself instead of forwarding it. ``AUTH`` and ``HELLO ... AUTH``
check a username/password pair against the node's users (raftkv.server.acl); ``ACL``
answers WHOAMI, LIST, USERS, CAT and LOAD. The texts are Redis's, so redis-py raises its
``AuthenticationError`` and ``NoPermissionError``.

A connection may fail ``MAX_AUTH_FAILURES`` times; the next failure closes it, so guessing
costs a reconnection (and a slot of ``--max-new-clients``) per few attempts, and an
address past ``auth_limit.BURST`` failures gets ``auth_limit.RATE`` tries a second (an IPv6
/64 ten times both). Failures are logged at most once per 10 s per remote host (an IPv6
/64: one machine may take a new address per connection, attack17) and ``LOG_LINES`` per
10 s in all, with the user name and never the password.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from raftkv.kv import legacy_form, lookup
from raftkv.log import event
from raftkv.node.log_throttle import LogThrottle
from raftkv.node.pending import Pending
from raftkv.server.acl import (
    ALWAYS_ALLOWED,
    CATEGORIES,
    COMMAND_CATEGORIES,
    SCRIPT_IDS,
    SIMPLE_IDS,
    AccessControl,
    ACLError,
    User,
    command_id,
    ids_in,
)
from raftkv.server.auth_limit import auth_source, machine_of
from raftkv.server.connection import Connection
from wire.reply import OK, ErrorReply

log = logging.getLogger("raftkv.auth")
LOG_LINES = 30  # auth lines per 10 s from all sources (a /48 holds 65,536 /64s)
_throttle = LogThrottle(log, 10.0, max_lines=LOG_LINES)

MAX_AUTH_FAILURES = 10
NOAUTH = ErrorReply("NOAUTH Authentication required.")
WRONGPASS = ErrorReply("WRONGPASS invalid username-password pair or user is disabled.")
HELLO_NOAUTH = ErrorReply(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time")
NO_DEFAULT_PASSWORD = ErrorReply(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?")
KEY_DENIED = ErrorReply("NOPERM No permissions to access a key")
CHANNEL_DENIED = ErrorReply("NOPERM No permissions to access a channel")
ACL_CHANGED = ErrorReply(
    "NOPERM ACLs rules changed between the moment the transaction was accumulated and the "
    "EXEC call. One or more ACL related checks are no longer valid.")
SCRIPT_DENIED = ErrorReply(
    "NOPERM scripts are only for users with allkeys and every data command (RaftKV does "
    "not check a script's redis.call against the user)")


def gate(acl: AccessControl, conn: Connection, args: list[bytes],
         name: bytes | None = None) -> ErrorReply | None:
    """None if ``conn`` may run ``args``; else the error to answer (NOAUTH or NOPERM).
    ``name``: ``args[0].lower()``, if the caller has it."""
    if name is None:
        name = args[0].lower()
    if name in ALWAYS_ALLOWED:
        return None
    user = acl.user(conn.user)
    if user is None:
        conn.user = None  # removed or disabled since it authenticated (ACL LOAD)
        return NOAUTH
    if name == b"raft" and len(args) > 4 and args[1].lower() == b"once":
        # RAFT ONCE id seq COMMAND...: a session's retry-safe COMMAND, checked as COMMAND
        # (its rules and its keys), so a session cannot carry what the user may not run.
        # (Tested on the bytes: command_id of the wrapper, then of COMMAND, cost twice.)
        args = args[4:]
        name = args[0].lower()
    cid = SIMPLE_IDS.get(name)
    if cid is None:
        cid = command_id(args)
        if cid not in COMMAND_CATEGORIES:
            return None  # an unknown command: it answers Redis's unknown-command error
    if cid not in user.allowed:  # (``may_run``, without its call: asked of every command)
        acl.stats["acl_access_denied_cmd"] += 1
        return ErrorReply(f"NOPERM User {user.name} has no permissions to run the "
                          f"'{cid}' command")
    if cid in SCRIPT_IDS and not user.may_script():
        acl.stats["acl_access_denied_cmd"] += 1
        return SCRIPT_DENIED
    if not user.allchannels and not _channels_allowed(user, name, args):
        acl.stats["acl_access_denied_channel"] += 1
        return CHANNEL_DENIED
    if user.allkeys:
        return None
    # Check the keys of what will run: ``set key=value`` runs as ``SET key value`` (attack7:
    # as typed it failed SET's arity here, so no key was checked, and any user with SET
    # overwrote any key). (Not needed above: the channel rules are PUBLISH's and
    # SUBSCRIBE's, never SET's.)
    args = legacy_form(args)
    spec = lookup(name)
    if spec is not None and not spec.internal and spec.arity_ok(len(args)):
        for key in spec.keys(args):
            if not user.may_access(key):
                acl.stats["acl_access_denied_key"] += 1
                return KEY_DENIED
    return None


def _channels_allowed(user: User, name: bytes, args: list[bytes]) -> bool:
    """The channel rules for PUBLISH, SUBSCRIBE and PSUBSCRIBE (Redis's checks)."""
    if name == b"publish":
        return len(args) != 3 or user.may_channel(args[1], literal=False)
    if name in (b"subscribe", b"psubscribe"):
        literal = name == b"psubscribe"
        return all(user.may_channel(channel, literal) for channel in args[1:])
    return True


def authenticate(acl: AccessControl, conn: Connection, username: bytes,
                 password: bytes) -> ErrorReply | None:
    """Check the pair; on success ``conn`` runs as that user. Else WRONGPASS (and the
    connection closes after too many failures)."""
    name = username.decode("utf-8", "replace")
    failures, source = acl.failures, auth_source(conn.addr)
    host = machine_of(source)  # what the log lines are throttled by
    if not failures.allowed(source):  # guessing too fast: not even checked
        acl.stats["acl_access_denied_auth"] += 1
        _throttle.log(("guessing", host), logging.WARNING,
                      "refusing AUTH: too many failures from this source", addr=conn.addr)
        conn.closing = True
        return ErrorReply(f"ERR too many failed authentications from this address; retry in "
                          f"{max(1, math.ceil(failures.retry_after(source)))} s")
    if acl.authenticate(name, password):
        conn.user = name
        return None
    failures.failed(source)
    conn.auth_failures += 1
    acl.stats["acl_access_denied_auth"] += 1
    _throttle.log(("auth", host), logging.WARNING, "client failed authentication",
                  addr=conn.addr, user=name, failures=conn.auth_failures)
    if conn.auth_failures >= MAX_AUTH_FAILURES:
        # Throttled like the failures: a guesser closes one connection per 10 tries.
        _throttle.log(("close", host), logging.INFO,
                      "closing client after failed authentications",
                      addr=conn.addr, failures=conn.auth_failures)
        conn.closing = True
    return WRONGPASS


# Before AUTH a client may send only small commands (Redis: 10 arguments of 16 KiB): an
# anonymous connection cannot make the node buffer a max-request-bytes command.
UNAUTHENTICATED_LIMITS = {"max_multibulk_len": 10, "max_bulk_len": 16 * 1024,
                          "max_request_len": 256 * 1024}


def limit_unauthenticated(parser: Any, conn: Connection) -> dict[str, Any] | None:
    """Tighten ``parser`` (a wire.resp.CommandParser) while ``conn`` is not authenticated;
    the limits it had, to give back with ``restore_limits`` once it is; None if nothing
    was changed."""
    if conn.user is not None:
        return None
    saved = {name: getattr(parser, name) for name in UNAUTHENTICATED_LIMITS}
    for name, value in UNAUTHENTICATED_LIMITS.items():
        current = getattr(parser, name)
        setattr(parser, name, value if current is None else min(current, value))
    return saved


def restore_limits(parser: Any, conn: Connection,
                   saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The full limits back once ``conn`` has authenticated; what is still saved."""
    if saved is None or conn.user is None:
        return saved
    for name, value in saved.items():
        setattr(parser, name, value)
    return None


def cmd_auth(acl: AccessControl, conn: Connection, args: list[bytes]) -> Pending:
    if len(args) == 2:
        default = acl.users.get("default")
        if default is not None and default.enabled and default.nopass:
            return Pending.of(NO_DEFAULT_PASSWORD)
        error = authenticate(acl, conn, b"default", args[1])
    elif len(args) == 3:
        error = authenticate(acl, conn, args[1], args[2])
    elif len(args) < 2:
        return Pending.of(ErrorReply("ERR wrong number of arguments for 'auth' command"))
    else:
        return Pending.of(ErrorReply("ERR syntax error"))
    return Pending.of(error or OK)


def cmd_acl(acl: AccessControl, conn: Connection, args: list[bytes]) -> Pending:
    sub = args[1].lower() if len(args) > 1 else b""
    if sub == b"whoami" and len(args) == 2:
        return Pending.of(conn.user.encode() if conn.user else None)
    if sub == b"users" and len(args) == 2:
        return Pending.of(sorted(name.encode() for name in acl.users))
    if sub == b"list" and len(args) == 2:
        return Pending.of([acl.users[n].describe().encode() for n in sorted(acl.users)])
    if sub == b"cat" and len(args) == 2:
        return Pending.of([c.encode() for c in CATEGORIES])
    if sub == b"cat" and len(args) == 3:
        category = args[2].lower().decode("utf-8", "replace")
        if category not in CATEGORIES:
            return Pending.of(ErrorReply(f"ERR Unknown category '{category}'"))
        return Pending.of([cid.encode() for cid in ids_in(category)])
    if sub == b"load" and len(args) == 2:
        try:
            acl.reload()
        except ACLError as exc:
            return Pending.of(ErrorReply(f"ERR {exc}"))
        event(log, logging.INFO, "ACL file reloaded", path=acl.acl_file, users=len(acl.users))
        _close_lost_subscribers(acl, conn)
        return Pending.of(OK)
    if sub in (b"setuser", b"deluser", b"getuser"):
        return Pending.of(ErrorReply(
            f"ERR ACL {sub.decode().upper()} is not supported: users come from --acl-file "
            "(edit it on every node, then ACL LOAD on each)"))
    text = args[1].decode("utf-8", "replace") if len(args) > 1 else ""
    return Pending.of(ErrorReply(f"ERR unknown subcommand or wrong number of arguments for "
                                 f"'{text}'. Try ACL WHOAMI|LIST|USERS|CAT|LOAD."))


def _close_lost_subscribers(acl: AccessControl, conn: Connection) -> None:
    """After ACL LOAD, as Redis after an ACL change: close the connections subscribed to a
    channel or pattern their user may no longer use (or whose user is gone or off), which
    would otherwise keep receiving messages without running another command."""
    if conn.server is None:
        return
    for other in list(conn.server.connections.values()):
        subs = other.subs
        if not subs.count or other.scope is None:
            continue
        user = acl.user(other.user)
        if (user is None
                or not all(user.may_channel(c, literal=False) for c in subs.channels)
                or not all(user.may_channel(p, literal=True) for p in subs.patterns)):
            event(log, logging.INFO, "closing a subscriber: its user lost a channel",
                  conn=other.id, user=other.user)
            other.scope.cancel()


def hello_auth(acl: AccessControl, conn: Connection,
               pair: tuple[bytes, bytes] | None) -> ErrorReply | None:
    """HELLO's AUTH option, checked (never accepted unchecked); without it, HELLO needs a
    connection that is already authenticated."""
    if pair is not None:
        return authenticate(acl, conn, *pair)
    if acl.user(conn.user) is None:
        return HELLO_NOAUTH
    return None


def handlers() -> dict[bytes, Any]:
    """AUTH and ACL for the client port's command table."""
    return {b"auth": lambda node, conn, args: cmd_auth(acl_of(conn), conn, args),
            b"acl": lambda node, conn, args: cmd_acl(acl_of(conn), conn, args)}


_OPEN = AccessControl.configure()  # no users configured: what a port without --requirepass has


def acl_of(conn: Connection) -> AccessControl:
    """The users of the port ``conn`` came in on (a connection made outside a port, in
    tests, gets the open default)."""
    return conn.server.acl if conn.server is not None else _OPEN


def queue_still_allowed(acl: AccessControl, conn: Connection) -> bool:
    """At EXEC: may ``conn``'s user still run every queued command? Checked again only if
    an ACL LOAD came since MULTI (Redis checks at EXEC too: attack7, a user narrowed
    between MULTI and EXEC wrote the keys it had lost)."""
    tx = conn.tx
    if tx.queue is None or tx.acl_generation == acl.generation:
        return True
    stats = dict(acl.stats)  # (a re-check is not a refusal of a command sent)
    allowed = all(gate(acl, conn, item) is None for item in tx.queue
                  if isinstance(item, list))
    acl.stats.update(stats)
    return allowed
