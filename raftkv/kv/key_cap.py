"""How many keys one command may name (``--max-keys-per-command``), like etcd's
``--max-txn-ops``: checked before a command is proposed or read, never when it applies.

One entry applies in one step of the event loop, and it is atomic: slicing it would need
every read path (GET, MGET, SCAN, the feed, snapshots, INFO) held behind a barrier. So the
entry is kept small instead. Measured (``tests/bench/bench_apply_per_key.py``, CPU of one
apply on a 100,000-key state with the change feed on, 2 shared cores): MSET 0.6-1 us a key,
UNLINK of missing keys 0.4, MGET and EXISTS 0.2-0.3 (then the reply is written), DEL of
existing keys and MSETNX 2-4, a MULTI/EXEC of SETs 5-7 us a command. A 100,000-key MSET held
the loop ~60-85 ms, a DEL of as many ~0.4 s, an EXEC of 100,000 SETs ~0.6 s, on every
replica. At the default (1,024) the largest of these holds it ~1-7 ms.

The weight of a command is the number of its key arguments (at least 1); a transaction's is
the sum of its commands' (each at least 1: a command without keys still runs); ``RAFT
ONCE``'s is its wrapped command's; a script's the keys it declares (what it writes beside
them is bounded by its instruction budget, raftkv.kv.scripts). The check happens on the node
a client talks to and again on the leader for a forwarded command, so it is a per-node flag:
set it alike on every node. Entries already in a log apply whatever it is.
"""

from __future__ import annotations

from wire.reply import ErrorReply

from .commands import Decoded, decode_exec, lookup

DEFAULT_MAX_KEYS_PER_COMMAND = 1024
_DEPTH = 3  # RAFT ONCE of an EXEC is as deep as entries nest; deeper ones weigh 1


def weight(args: list[bytes], depth: int = 0, decoded: Decoded | None = None) -> int:
    """The keys ``args`` (a command that passed ``validate``) makes an apply or a read walk.
    ``decoded``: ``exec_of(args)`` (commands.py), if the caller has it."""
    spec = lookup(args[0]) if args else None
    if spec is None or depth > _DEPTH:
        return 1
    if spec.name == "exec":
        if decoded is None and len(args) == 2:
            decoded = decode_exec(args[1])
        if decoded is None or isinstance(decoded, ErrorReply):
            return 1  # (apply answers it an error without walking anything)
        return sum(weight(command, depth + 1) for command in decoded[1]) or 1
    if spec.name == "once":
        return weight(args[3:], depth + 1, decoded) if len(args) > 3 else 1
    if spec.internal:  # the leader's own EXPIRED batches (500 keys) pass whatever the flag
        return 1
    return max(1, len(spec.keys(args)))


def refusal(args: list[bytes], limit: int, decoded: Decoded | None = None
            ) -> ErrorReply | None:
    """The error for ``args`` if it names more than ``limit`` keys, else None. Cheap for
    the common case: a command of at most ``limit`` arguments after its name names at most
    that many keys, and an EXEC payload shorter than 2 x ``limit`` bytes carries fewer
    (every command or key in it takes 2 bytes at least)."""
    argc = len(args)
    if argc <= limit + 1 and not (argc in (2, 5) and len(args[-1]) >= 2 * limit):
        return None  # (2, 5: ``EXEC payload``, ``once id seq EXEC payload``)
    keys = weight(args, decoded=decoded)
    if keys <= limit:
        return None
    return too_many(keys, limit, transaction=_is_exec(args))


def too_many(keys: int, limit: int, *, transaction: bool = False) -> ErrorReply:
    """Redis-style text: what was asked, the bound and the flag."""
    what = "transaction" if transaction else "command"
    return ErrorReply(f"ERR {what} of {keys} keys exceeds max-keys-per-command {limit}")


def _is_exec(args: list[bytes]) -> bool:
    name = args[0].lower()
    return name == b"exec" or (name == b"once" and len(args) > 3 and args[3].lower() == b"exec")
