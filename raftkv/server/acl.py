"""ACL users, Redis-compatible: the rules of ``--acl-file``, command categories, and the
check of a command against a user (issue 13).

A user is ``on``/``off``, a set of SHA-256 password digests (or ``nopass``), key patterns
(``~pattern``, ``allkeys``) and the commands it may run. Command rules (``+@all``,
``-@dangerous``, ``+get``, ``-acl|list``...) are applied in order to the set of command
ids a user may run, as Redis does, so ``+@all -@admin +raft|status`` means what a Redis user
expects. A command id is its lower-case name, or ``name|sub`` for the commands whose
subcommands differ in category (ACL, CLIENT, CONFIG, RAFT).

What RaftKV takes of Redis's ACL file syntax (one ``user NAME rule...`` per line) is the
subset a key-value store needs, with Redis 7's channel rules for Pub/Sub (``&pattern``,
``allchannels``, ``resetchannels``; a user named in a file starts with no channels, as
Redis's ``acl-pubsub-default resetchannels``; the built-in default user has all);
``sanitize-payload`` is accepted and ignored, so a file written by Redis loads; selectors
and read/write key patterns (``%R~``, ``(...)``) are refused with a clear error. Lines
starting with ``#`` are comments (Redis has none).

Passwords are kept only as SHA-256 digests (as Redis keeps them) and compared with
``hmac.compare_digest``; nothing here logs or prints a password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping

import attrs

from raftkv.kv import COMMANDS
from raftkv.kv.glob import stringmatch
from raftkv.server.auth_limit import FailedAuths

# Redis's categories (ACL CAT), those RaftKV has commands in or that Redis users name.
CATEGORIES = (
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
    "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking",
    "dangerous", "connection", "transaction", "scripting",
)

_SLOW_KV = frozenset({
    "del", "unlink", "rename", "renamenx", "copy", "mset", "msetnx", "flushall", "flushdb",
    "setrange", "getrange", "keys", "scan", "randomkey", "object", "eval", "evalsha",
    "eval_ro", "evalsha_ro", "script", "exec", "watch",
})
# Redis marks FLUSHALL/FLUSHDB/KEYS @dangerous; RaftKV also makes FLUSHALL/FLUSHDB @admin
# (issue 13: an anonymous FLUSHALL empties every replica; it is an operator's command).
_EXTRA_KV = {
    "flushall": ("@admin", "@dangerous"),
    "flushdb": ("@admin", "@dangerous"),
    "keys": ("@dangerous",),
}

_ADMIN = ("@admin", "@slow", "@dangerous")
# Commands the client port answers itself (raftkv.server.commands LOCAL/TRANSACTION, and
# the AUTH/ACL commands of raftkv.server.auth).
_LOCAL: dict[str, tuple[str, ...]] = {
    "ping": ("@fast", "@connection"),
    "echo": ("@fast", "@connection"),
    "quit": ("@fast", "@connection"),
    "select": ("@fast", "@connection"),
    "hello": ("@fast", "@connection"),
    "auth": ("@fast", "@connection"),
    "command": ("@slow", "@connection"),
    "info": ("@slow", "@dangerous"),
    "time": ("@fast",),
    "multi": ("@fast", "@transaction"),
    "exec": ("@slow", "@transaction"),
    "discard": ("@fast", "@transaction"),
    "watch": ("@fast", "@transaction"),
    "unwatch": ("@fast", "@transaction"),
    "reset": ("@fast", "@connection"),
    # Pub/Sub (raftkv.server.pubsub); PUBLISH is a state-machine command, also @pubsub
    **dict.fromkeys(("subscribe", "psubscribe", "unsubscribe", "punsubscribe"),
                    ("@pubsub", "@slow")),
    # The change feed's read-only streams (raftkv.server.streams); the other stream
    # commands answer an error, and are categorised as Redis does.
    "xread": ("@read", "@stream", "@slow", "@blocking"),
    "xrange": ("@read", "@stream", "@slow"),
    "xrevrange": ("@read", "@stream", "@slow"),
    "xinfo": ("@read", "@stream", "@slow"),
    **dict.fromkeys(("xadd", "xdel", "xtrim", "xgroup", "xsetid", "xack", "xclaim",
                     "xautoclaim", "xreadgroup"), ("@write", "@stream", "@fast")),
    "xlen": ("@read", "@stream", "@fast"),
    "xpending": ("@read", "@stream", "@slow"),
}
# Commands whose subcommands differ: base categories, and each subcommand's.
_SUBCOMMANDS: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "acl": (("@slow",), {
        "whoami": ("@slow",), "cat": ("@slow",), "list": _ADMIN, "users": _ADMIN,
        "load": _ADMIN, "setuser": _ADMIN, "deluser": _ADMIN, "getuser": _ADMIN,
    }),
    "client": (("@slow", "@connection"), {
        "setname": ("@slow", "@connection"), "getname": ("@slow", "@connection"),
        "id": ("@slow", "@connection"), "setinfo": ("@slow", "@connection"),
        "info": ("@slow", "@connection"), "list": _ADMIN,
    }),
    "pubsub": (("@pubsub", "@slow"), {"channels": ("@pubsub", "@slow"),
                                      "numsub": ("@pubsub", "@slow"),
                                      "numpat": ("@pubsub", "@slow")}),
    "config": (_ADMIN, {"get": _ADMIN, "set": _ADMIN, "resetstat": _ADMIN,
                        "rewrite": _ADMIN}),
    # Membership, leadership, snapshots and backups: an anonymous RAFT REMOVENODE once left
    # a one-voter cluster (issue 13). RAFT STATUS only reads, but tells the topology.
    # Client sessions are for any writer (the client library opens one for its first
    # unsafe write); RAFT ONCE is checked as the command it wraps (raftkv.server.auth).
    "raft": (_ADMIN, {
        **{sub: _ADMIN for sub in ("status", "transfer", "snapshot", "backup", "addnode",
                                   "removenode", "promote")},
        "session": ("@write", "@fast"),  # it writes a log entry
        "once": ("@write", "@fast"),
    }),
}


def _kv_categories() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for name, spec in COMMANDS.items():
        if spec.internal:
            continue
        speed = "@slow" if name in _SLOW_KV else "@fast"
        table[name] = (*spec.acl_categories, speed, *_EXTRA_KV.get(name, ()))
    return table


def _command_table() -> dict[str, frozenset[str]]:
    """Every command id -> its categories (without the ``@``)."""
    table: dict[str, tuple[str, ...]] = {**_kv_categories(), **_LOCAL}
    for name, (base, subs) in _SUBCOMMANDS.items():
        table[name] = base
        for sub, cats in subs.items():
            table[f"{name}|{sub}"] = cats
    return {cid: frozenset(c.lstrip("@") for c in cats) for cid, cats in table.items()}


COMMAND_CATEGORIES: dict[str, frozenset[str]] = _command_table()
ALL_IDS = frozenset(COMMAND_CATEGORIES)
# ``command_id`` of a command without subcommands, by its lowered name: the gate runs on
# every command, and decoding the name cost a quarter of it.
SIMPLE_IDS: dict[bytes, str] = {cid.encode(): cid for cid in COMMAND_CATEGORIES
                                if "|" not in cid and cid not in _SUBCOMMANDS}
# Commands every connection may run, authenticated or not, whatever its rules (Redis's
# no-auth commands): how a client authenticates and leaves.
ALWAYS_ALLOWED = frozenset({b"auth", b"hello", b"quit", b"reset"})


# Lua scripts call commands inside the state machine, where neither key patterns nor
# command rules are checked: only a user who may run every data command on every key may
# run one (Redis checks each redis.call against the user instead).
SCRIPT_IDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "script"})
DATA_IDS = frozenset(name for name, spec in COMMANDS.items() if not spec.internal)


def command_id(args: list[bytes]) -> str:
    """The id a call is checked under: ``name`` or ``name|sub``."""
    name = args[0].lower().decode("utf-8", "replace")
    subs = _SUBCOMMANDS.get(name)
    if subs is not None and len(args) > 1:
        sub = args[1].lower().decode("utf-8", "replace")
        if sub in subs[1]:
            return f"{name}|{sub}"
    return name


def ids_in(category: str) -> list[str]:
    return sorted(cid for cid, cats in COMMAND_CATEGORIES.items() if category in cats)


class ACLError(ValueError):
    """A rule or ACL file line that cannot be applied; the text is Redis-like."""


_HEX64 = re.compile(r"[0-9a-f]{64}")


def digest(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


@attrs.define
class User:
    name: str
    enabled: bool = False
    nopass: bool = False
    digests: list[str] = attrs.Factory(list)
    allkeys: bool = False
    patterns: list[bytes] = attrs.Factory(list)
    allchannels: bool = False
    channels: list[bytes] = attrs.Factory(list)  # Pub/Sub channel patterns (&pattern)
    allowed: set[str] = attrs.Factory(set)
    command_rules: list[str] = attrs.Factory(list)  # as given, for ACL LIST

    def apply(self, rule: str) -> None:
        """One ACL SETUSER-style rule; ACLError names what is wrong with it."""
        low = rule.lower()
        if low in ("on", "off"):
            self.enabled = low == "on"
        elif low == "nopass":
            self.nopass, self.digests = True, []
        elif low == "resetpass":
            self.nopass, self.digests = False, []
        elif rule.startswith(">"):
            self._add_digest(digest(rule[1:].encode()))
        elif rule.startswith("<"):
            self._remove_digest(digest(rule[1:].encode()))
        elif rule.startswith("#"):
            self._add_digest(self._hex(rule[1:]))
        elif rule.startswith("!"):
            self._remove_digest(self._hex(rule[1:]))
        elif low == "allkeys" or rule == "~*":
            self.allkeys, self.patterns = True, []
        elif rule.startswith("~"):
            if not self.allkeys:
                self.patterns.append(rule[1:].encode())
        elif low == "resetkeys":
            self.allkeys, self.patterns = False, []
        elif low == "allchannels" or rule == "&*":
            self.allchannels, self.channels = True, []
        elif rule.startswith("&"):
            if not self.allchannels:
                self.channels.append(rule[1:].encode())
        elif low == "resetchannels":
            self.allchannels, self.channels = False, []
        elif low in ("sanitize-payload", "skip-sanitize-payload"):
            pass  # no RESTORE in RaftKV: accepted so that Redis's files load
        elif low in ("allcommands", "nocommands"):
            self._commands("+@all" if low == "allcommands" else "-@all")
        elif rule[:1] in ("+", "-"):
            self._commands(low)
        elif low == "reset":
            self.enabled = self.nopass = self.allkeys = self.allchannels = False
            self.digests, self.patterns, self.command_rules = [], [], []
            self.channels = []
            self.allowed = set()
        elif rule.startswith("%") or rule.startswith("("):
            raise ACLError(f"Error in applying operation '{rule}': selectors and read/write "
                           "key permissions are not supported by RaftKV")
        else:
            raise ACLError(f"Error in applying operation '{rule}': Syntax error")

    def _add_digest(self, hexdigest: str) -> None:
        self.nopass = False
        if hexdigest not in self.digests:
            self.digests.append(hexdigest)

    def _remove_digest(self, hexdigest: str) -> None:
        if hexdigest in self.digests:
            self.digests.remove(hexdigest)

    @staticmethod
    def _hex(text: str) -> str:
        if not _HEX64.fullmatch(text):
            raise ACLError(f"Error in applying operation '#{text}': The password hash must be "
                           "exactly 64 characters and contain only lowercase hexadecimal "
                           "characters")
        return text

    def _commands(self, rule: str) -> None:
        add, what = rule[0] == "+", rule[1:]
        if what.startswith("@"):
            category = what[1:]
            if category == "all":
                ids: Iterable[str] = ALL_IDS
            elif category in CATEGORIES:
                ids = ids_in(category)
            else:
                raise ACLError(f"Error in applying operation '{rule}': Unknown command or "
                               "category name in ACL")
        elif what in COMMAND_CATEGORIES:
            # A command with subcommands: the rule covers every subcommand too.
            ids = [cid for cid in ALL_IDS if cid == what or cid.startswith(what + "|")]
        else:
            raise ACLError(f"Error in applying operation '{rule}': Unknown command or "
                           "category name in ACL")
        if add:
            self.allowed.update(ids)
        else:
            self.allowed.difference_update(ids)
        self.command_rules.append(rule)

    def check_password(self, password: bytes) -> bool:
        """Constant time in the password's content: every digest is compared."""
        given = digest(password)
        found = False
        for known in self.digests:
            found |= hmac.compare_digest(given, known)
        return self.enabled and (self.nopass or found)

    def may_run(self, cid: str) -> bool:
        return cid in self.allowed

    def may_script(self) -> bool:
        return self.allkeys and self.allowed >= DATA_IDS

    def may_access(self, key: bytes) -> bool:
        return self.allkeys or any(stringmatch(p, key) for p in self.patterns)

    def may_channel(self, channel: bytes, literal: bool) -> bool:
        """May this user use ``channel``: PUBLISH and SUBSCRIBE match it against the user's
        patterns; PSUBSCRIBE's pattern must be one of them literally (as in Redis)."""
        if self.allchannels:
            return True
        if literal:
            return channel in self.channels
        return any(stringmatch(p, channel) for p in self.channels)

    def describe(self) -> str:
        """The ACL LIST line: never a password, only its digest."""
        parts = ["user", self.name, "on" if self.enabled else "off"]
        parts += ["nopass"] if self.nopass else [f"#{d}" for d in self.digests]
        parts += ["~*"] if self.allkeys else [f"~{p.decode(errors='replace')}"
                                               for p in self.patterns]
        parts += ["&*"] if self.allchannels else [
            "resetchannels", *(f"&{c.decode(errors='replace')}" for c in self.channels)]
        parts += self.command_rules or ["-@all"]
        return " ".join(parts)


def parse_user(words: list[str]) -> User:
    user = User(words[0])
    for rule in words[1:]:
        user.apply(rule)
    return user


def default_user(requirepass: str) -> User:
    """Redis's default user: all keys, channels and commands; ``nopass`` unless
    --requirepass."""
    user = parse_user(["default", "on", "nopass", "~*", "&*", "+@all"])
    if requirepass:
        user.apply(">" + requirepass)
    return user


_USERNAME = re.compile(r"[!-~]+")  # printable, no spaces (Redis: no spaces or controls)


def parse_acl_text(text: str, path: str, requirepass: str = "") -> dict[str, User]:
    """The users of an ACL file (plus the default user if it names none): ACLError with
    ``path:LINE: reason`` for the first bad line; nothing is applied then."""
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if words[0] != "user" or len(words) < 2:
            raise ACLError(f"{where}: line should start with user keyword")
        name = words[1]
        if not _USERNAME.fullmatch(name):
            raise ACLError(f"{where}: Usernames can't contain spaces or null characters")
        if name in users:
            raise ACLError(f"{where}: Duplicate user '{name}' found")
        try:
            users[name] = parse_user(words[1:])
        except ACLError as exc:
            raise ACLError(f"{where}: {exc}") from None
    if "default" in users:
        if requirepass:
            raise ACLError(f"{path} defines the default user and --requirepass is given: "
                           "give the default user's password in the file (>password or "
                           "#sha256) or drop --requirepass")
    else:
        users["default"] = default_user(requirepass)
    return users


MAX_ACL_FILE = 4 * 1024 * 1024


def load_acl_file(path: str, requirepass: str = "") -> dict[str, User]:
    """Read and parse ``path``; ACLError for an unreadable, oversized or invalid file."""
    try:
        # Without blocking (ACL LOAD runs on the event loop: a FIFO's open would wait for a
        # writer), and only a regular file (a device would be read to the bound). Links
        # are followed: a Kubernetes Secret is a symlink.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ACLError(f"ACL file {path} is not a regular file")
            data = f.read(MAX_ACL_FILE + 1)
    except OSError as exc:
        raise ACLError(f"cannot read ACL file {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_ACL_FILE:
        raise ACLError(f"ACL file {path} is larger than {MAX_ACL_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ACLError(f"ACL file {path} is not UTF-8 text") from exc
    return parse_acl_text(text, path, requirepass)


@attrs.define
class AccessControl:
    """The users of one node: from --requirepass and --acl-file, replaced by ACL LOAD."""

    users: Mapping[str, User]
    acl_file: str = ""
    requirepass: str = attrs.field(default="", repr=False)
    # Redis's INFO stats counters of refusals (raftkv.server.auth counts them).
    stats: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(
        ("acl_access_denied_auth", "acl_access_denied_cmd", "acl_access_denied_key",
         "acl_access_denied_channel"), 0))

    generation: int = 0  # ACL LOADs done: EXEC checks its queue again past a change
    # Failed AUTHs per source address (raftkv.server.auth_limit).
    failures: FailedAuths = attrs.Factory(lambda: FailedAuths(time.monotonic))

    @classmethod
    def configure(cls, requirepass: str = "", acl_file: str = "") -> AccessControl:
        users = (load_acl_file(acl_file, requirepass) if acl_file
                 else {"default": default_user(requirepass)})
        return cls(users, acl_file, requirepass)

    def reload(self) -> None:
        """ACL LOAD: all or nothing (ACLError leaves the users as they were)."""
        if not self.acl_file:
            raise ACLError("This node is not configured to use an ACL file (--acl-file)")
        self.users = load_acl_file(self.acl_file, self.requirepass)
        self.generation += 1

    def initial_user(self) -> str | None:
        """A new connection is authenticated as ``default`` if it is on and nopass."""
        user = self.users.get("default")
        return "default" if user is not None and user.enabled and user.nopass else None

    @property
    def required(self) -> bool:
        return self.initial_user() is None

    def authenticate(self, name: str, password: bytes) -> bool:
        user = self.users.get(name)
        if user is None:
            User("", digests=[digest(b"")]).check_password(password)  # the same work
            return False
        return user.check_password(password)

    def user(self, name: str | None) -> User | None:
        """The enabled user ``name`` (None if gone or disabled since it authenticated)."""
        user = self.users.get(name) if name is not None else None
        return user if user is not None and user.enabled else None
