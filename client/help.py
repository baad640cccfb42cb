"""Command summaries for ``help``, ``help COMMAND`` and tab completion in the REPL."""

from __future__ import annotations

import attrs


@attrs.frozen
class CommandHelp:
    name: str
    arguments: str
    summary: str
    group: str


_TABLE = [
    ("GET", "key", "Get the value of a key ((nil) when missing)", "string"),
    ("SET", "key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]",
     "Set a key (also `set key=value`)", "string"),
    ("SETNX", "key value", "Set a key only if missing: 1 if set", "string"),
    ("SETEX", "key seconds value", "Set a key with a TTL in seconds", "string"),
    ("PSETEX", "key milliseconds value", "Set a key with a TTL in milliseconds", "string"),
    ("GETEX", "key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]", "Get a value and change its TTL",
     "string"),
    ("GETDEL", "key", "Get a value and delete the key", "string"),
    ("GETSET", "key value", "Set a key; the old value", "string"),
    ("GETRANGE", "key start end", "A substring of a value", "string"),
    ("SETRANGE", "key offset value", "Overwrite part of a value; the new length", "string"),
    ("INCRBYFLOAT", "key increment", "Add a float to a value", "string"),
    ("MSETNX", "key value [key value ...]", "Set keys only if none exists", "string"),
    ("DEL", "key [key ...]", "Delete keys; the number deleted", "keyspace"),
    ("EXISTS", "key [key ...]", "How many of the keys exist", "keyspace"),
    ("INCR", "key", "Add 1 to an integer value", "string"),
    ("DECR", "key", "Subtract 1 from an integer value", "string"),
    ("INCRBY", "key increment", "Add an amount to an integer value", "string"),
    ("DECRBY", "key decrement", "Subtract an amount from an integer value", "string"),
    ("APPEND", "key value", "Append to a value; the new length", "string"),
    ("STRLEN", "key", "Length of a value", "string"),
    ("MGET", "key [key ...]", "Values of several keys", "string"),
    ("MSET", "key value [key value ...]", "Set several keys at once", "string"),
    ("CAS", "key expected new", "Compare-and-swap: 1 if swapped, 0 if not", "string"),
    ("KEYS", "pattern", "Keys matching a glob pattern", "keyspace"),
    ("SCAN", "cursor [MATCH pattern] [COUNT count] [TYPE type]", "Iterate over keys",
     "keyspace"),
    ("DBSIZE", "", "Number of keys", "keyspace"),
    ("FLUSHALL", "", "Delete every key", "keyspace"),
    ("FLUSHDB", "", "Delete every key", "keyspace"),
    ("UNLINK", "key [key ...]", "Delete keys (same as DEL here)", "keyspace"),
    ("TYPE", "key", "string, or none if missing", "keyspace"),
    ("RENAME", "key newkey", "Rename a key (keeps its TTL)", "keyspace"),
    ("RENAMENX", "key newkey", "Rename only if newkey is missing", "keyspace"),
    ("COPY", "source destination [DB 0] [REPLACE]", "Copy a key and its TTL", "keyspace"),
    ("TOUCH", "key [key ...]", "How many of the keys exist", "keyspace"),
    ("RANDOMKEY", "", "Some key (deterministic for a given state)", "keyspace"),
    ("OBJECT", "ENCODING key", "int, embstr or raw", "keyspace"),
    ("EXPIRE", "key seconds [NX|XX|GT|LT]", "Set a TTL in seconds", "expiry"),
    ("PEXPIRE", "key milliseconds [NX|XX|GT|LT]", "Set a TTL in milliseconds", "expiry"),
    ("EXPIREAT", "key unix-seconds [NX|XX|GT|LT]", "Set an absolute deadline", "expiry"),
    ("PEXPIREAT", "key unix-ms [NX|XX|GT|LT]", "Set an absolute deadline in ms", "expiry"),
    ("TTL", "key", "Seconds left (-1 no TTL, -2 missing)", "expiry"),
    ("PTTL", "key", "Milliseconds left (-1 no TTL, -2 missing)", "expiry"),
    ("EXPIRETIME", "key", "The deadline in unix seconds", "expiry"),
    ("PEXPIRETIME", "key", "The deadline in unix milliseconds", "expiry"),
    ("PERSIST", "key", "Remove the TTL", "expiry"),
    ("MULTI", "", "Start a transaction (commands queue)", "transactions"),
    ("EXEC", "", "Run the queued commands as one log entry", "transactions"),
    ("DISCARD", "", "Drop the queued commands", "transactions"),
    ("WATCH", "key [key ...]", "EXEC fails (nil) if these keys change", "transactions"),
    ("UNWATCH", "", "Forget the watched keys", "transactions"),
    ("EVAL", "script numkeys [key ...] [arg ...]", "Run a Lua script on every replica",
     "scripting"),
    ("EVALSHA", "sha1 numkeys [key ...] [arg ...]", "Run a loaded script", "scripting"),
    ("EVAL_RO", "script numkeys [key ...] [arg ...]", "Run a read-only script as a read",
     "scripting"),
    ("EVALSHA_RO", "sha1 numkeys [key ...] [arg ...]", "Run a loaded read-only script",
     "scripting"),
    ("SCRIPT", "LOAD script | EXISTS sha1 ... | FLUSH", "Manage loaded scripts", "scripting"),
    ("PUBLISH", "channel message", "Send a message to subscribers on every node; how many "
     "on this node got it", "pubsub"),
    ("SUBSCRIBE", "channel [channel ...]", "Print the channels' messages as they arrive, "
     "until Ctrl-C", "pubsub"),
    ("PSUBSCRIBE", "pattern [pattern ...]", "Print messages of channels matching the glob "
     "patterns, until Ctrl-C", "pubsub"),
    ("PUBSUB", "CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT",
     "This node's subscriptions", "pubsub"),
    ("TIME", "", "This node's clock: seconds and microseconds", "server"),
    ("PING", "[message]", "PONG, or the message back", "connection"),
    ("ECHO", "message", "The message back", "connection"),
    ("INFO", "[section ...]", "Server information (`INFO raft` for consensus state)", "server"),
    ("RAFT", "STATUS | TRANSFER id | SNAPSHOT | ADDNODE id peer_addr [LEARNER] | PROMOTE id "
     "| REMOVENODE id", "Raft state; hand over leadership; snapshot and compact now; "
     "add a learner, promote it, remove a member", "cluster"),
    ("STATUS", "", "Table of every node: role, term, indexes, lag, up/down", "cluster"),
    ("HELP", "[command]", "This help, or one command's", "cli"),
    ("QUIT", "", "Leave the REPL (also EXIT or Ctrl-D)", "cli"),
    ("CLEAR", "", "Clear the screen", "cli"),
]

COMMANDS: dict[str, CommandHelp] = {
    name: CommandHelp(name, args, summary, group) for name, args, summary, group in _TABLE
}
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "RAFT": ("STATUS", "TRANSFER", "SNAPSHOT", "ADDNODE", "PROMOTE", "REMOVENODE"),
    "SCRIPT": ("LOAD", "EXISTS", "FLUSH"),
    "OBJECT": ("ENCODING",),
    "PUBSUB": ("CHANNELS", "NUMSUB", "NUMPAT"),
}


def usage(name: str) -> str | None:
    """``help COMMAND`` text, or None for an unknown command."""
    entry = COMMANDS.get(name.upper())
    if entry is None:
        return None
    line = f"{entry.name} {entry.arguments}".rstrip()
    return f"  {line}\n  summary: {entry.summary}\n  group: {entry.group}"


def overview() -> str:
    syntax = {c.name: f"{c.name} {c.arguments}".rstrip() for c in COMMANDS.values()}
    width = max(len(text) for text in syntax.values() if len(text) <= 40)
    lines = [
        "raftkv-cli: talk to a RaftKV cluster (Redis forms, and `set key=value`).",
        "Type `help COMMAND` for one command; Tab completes command names.",
        "",
    ]
    for c in COMMANDS.values():
        if len(syntax[c.name]) > width:  # a long syntax gets its own line
            lines += [f"  {syntax[c.name]}", f"  {'':<{width}}  {c.summary}"]
        else:
            lines.append(f"  {syntax[c.name]:<{width}}  {c.summary}")
    return "\n".join(lines)


def complete(line: str, text: str) -> list[str]:
    """Completions of the word ``text`` that ends ``line`` (what readline has typed so far):
    command names for the first word (and after HELP), subcommands after RAFT.
    Matching ignores case; the completion follows the case the user typed.
    """
    words = line[: len(line) - len(text)].split()
    if not words:
        pool: tuple[str, ...] = tuple(COMMANDS)
    elif len(words) == 1 and words[0].upper() == "HELP":
        pool = tuple(COMMANDS)
    elif len(words) == 1 and words[0].upper() in SUBCOMMANDS:
        pool = SUBCOMMANDS[words[0].upper()]
    else:
        return []
    upper = text.upper()
    lower = text.islower()
    return [(name.lower() if lower else name) for name in pool if name.startswith(upper)]
