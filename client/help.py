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
    ("SET", "key value [NX|XX] [GET]", "Set a key (also `set key=value`)", "string"),
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
    ("SCAN", "cursor [MATCH pattern] [COUNT count]", "Iterate over keys", "keyspace"),
    ("DBSIZE", "", "Number of keys", "keyspace"),
    ("FLUSHALL", "", "Delete every key", "keyspace"),
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
