"""Write runs gathered across client connections into one log entry (issue 15).

The client port hands a leader runs of plain one-key writes, each command checked as it
would be alone (raftkv.server.write_runs): one command of a connection that does not
pipeline, or several of one that does. Each log entry costs every replica more than a
SET in it does (the stamp, the encoding, the core's append, the WAL row, the entry in each
append, its decoding and apply bookkeeping), so the leader does not propose each run at
once: it gathers the runs that arrive before the ready loop's next look at the core and
proposes them there as one EXEC without WATCH, and answers each run's waiter with its
share of the replies. A run proposed at once would only wait in the log for that same
look: its append leaves with the next Ready either way (``CoreDriver.proposed``).

Order: a connection's runs are gathered in its order, and any other write (or one of
another kind of the same connection) proposes the gathered runs first
(``Node._dispatch``), so each connection's writes reach the log in its order. Reads need
nothing: a connection's read waits for its writes' replies (the client port's
ProgramOrder), and another client can only have seen a write acknowledged once applied.

A run that cannot be proposed as leader (a transfer under way, commands waiting for a
leader, not the leader) goes a command at a time the way of any write: parked, then
proposed or forwarded each alone, never as an EXEC, which the next leader would check as
a client's (its key cap, its request size) and might refuse whole (attack24).

Bounds: one entry holds at most ``max_commands`` commands (``--max-keys-per-command``:
each names one key) and ``max_bytes`` bytes of arguments; a run that would pass either
proposes what was gathered first.
"""

from __future__ import annotations

from typing import Any

from raftkv.kv.commands import encode_exec
from raftkv.node.pending import Pending
from wire.reply import ErrorReply

# The arguments of one entry of gathered writes: well inside every entry bound
# (``run_bytes``) and a short apply.
MAX_RUN_BYTES = 64 * 1024

MISMATCH = ErrorReply("ERR internal error: an entry's replies did not match its commands")

# (commands, the run's waiter, when a parked run gives up, its request deadline)
Item = tuple[list[list[bytes]], Pending, float, float]


def run_bytes(max_request_bytes: int) -> int:
    """The arguments one entry of writes may hold on a node with this
    ``--max-request-bytes``."""
    return min(MAX_RUN_BYTES, max_request_bytes // 2)


def entry_args(commands: list[list[bytes]]) -> list[bytes]:
    """The entry of ``commands``: one command as itself, several as an EXEC without
    WATCH, whose reply is the array of theirs."""
    if len(commands) == 1:
        return commands[0]
    return [b"EXEC", encode_exec([], commands)]


class Gathered:
    """The runs gathered since the ready loop last looked at the core."""

    __slots__ = ("bytes", "commands", "items", "max_bytes", "max_commands")

    def __init__(self, max_commands: int, max_bytes: int) -> None:
        self.max_commands = max_commands
        self.max_bytes = max_bytes
        self.items: list[Item] = []
        self.commands = 0
        self.bytes = 0

    def fits(self, commands: int, size: int) -> bool:
        """Whether a run of ``commands`` commands and ``size`` bytes joins the entry."""
        return (self.commands + commands <= self.max_commands
                and self.bytes + size <= self.max_bytes)

    def add(self, item: Item, size: int) -> None:
        self.items.append(item)
        self.commands += len(item[0])
        self.bytes += size

    def take(self) -> list[Item]:
        items, self.items = self.items, []
        self.commands = self.bytes = 0
        return items

    def fail(self, reply: ErrorReply) -> None:
        """Answer every run gathered with ``reply`` and drop them: none was proposed, so
        none can apply (the node stops, or its loop was held up past their deadline)."""
        for item in self.take():
            item[1].set(reply)


def joined(parts: list[Pending], into: Pending | None = None) -> Pending:
    """A Pending (``into``, or a new one) answered with the list of ``parts``' values
    once every part is answered: a run whose commands went each its own way."""
    whole = Pending() if into is None else into
    left = len(parts)

    def one_answered(_value: Any) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            whole.set([part.value for part in parts])

    for part in parts:
        part.add_callback(one_answered)
    return whole


def share(items: list[Item], value: Any) -> None:
    """The callback of an entry of several runs: each run's waiter gets its commands'
    replies (a lone command its own reply, a run the array of its own), or, if the
    entry was answered as a whole (an error: not leader, a timeout's -UNKNOWN...), that.
    Runs inside ``Pending.set``: never raises."""
    total = sum(len(item[0]) for item in items)
    if type(value) is not list or len(value) != total:
        if type(value) is list:  # (not an entry's reply of these: never a wrong share)
            value = MISMATCH
        for item in items:
            item[1].set(value)
        return
    at = 0
    for commands, pending, _, _ in items:
        n = len(commands)
        pending.set(value[at] if n == 1 else value[at:at + n])
        at += n
