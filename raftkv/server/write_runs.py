"""A pipeline's consecutive plain writes proposed as one log entry (issue 15, ``-P16``).

A leader saturated by pipelined SETs spent most of each one's CPU on work done per log
entry, not per command: the stamp, the entry's encoding, the core's append, the waiter,
the WAL row, the entry in each follower's append, its decoding and apply bookkeeping on
every replica, and on this side a ``Pending`` and a reply slot per command. So when the
leader's reader finds several such writes of one connection in what it has read, it
proposes them together as one EXEC without WATCH (``Node.submit_run``) and answers them
with one slot whose reply is their replies one after the other, each as that command
alone would have got it.

Why that is the same to every client: the commands of one connection's pipeline are
answered in order and each only after it applied, so applying them together in one step,
in order, is a linearization of the same history; another client's command is ordered
before or after the whole run, as it could have been before or after each of them. What
a watcher sees differs in one thing only: the run's changes share one log index (their
revision), as an MSET's or a transaction's do, at consecutive positions.

Only what keeps that true joins a run (``may_join``): one-key writes whose reply is
small (SET without GET, SETNX, SETEX, PSETEX, INCR, DECR, INCRBY, DECRBY); each is
checked as it would be alone (ACL, refusals, ``Node.checked``: arity, size, memory), and
the first one refused ends the run and is answered with its error after it. A run holds at
most ``NodeSettings.write_run`` commands (never more than ``max_keys_per_command``) and
``raftkv.node.gathered.run_bytes`` of arguments, and only a leader builds one (a follower
forwards each write as before): the EXEC is proposed without the checks a client's EXEC gets, which
is sound only because its commands were each checked by the node that proposes it.
"""

from __future__ import annotations

from typing import Any

from raftkv.node.forwarding import REPLY_DROPPED
from raftkv.node.pending import Pending
from wire.reply import Encoded, ErrorReply
from wire.resp import encode_reply

RUN_WRITES = frozenset({b"set", b"setnx", b"setex", b"psetex", b"incr", b"decr", b"incrby",
                        b"decrby"})
MALFORMED_RUN = ErrorReply("ERR internal error: a pipelined run's reply did not match it")


def may_join(args: list[bytes], name: bytes) -> bool:
    """Whether ``args`` (its name lowered: ``name``) is a write a run may hold: one key
    and a small reply. ``set key=value`` (two words, the original RaftKV's form) runs
    alone, as does SET with GET (its reply is the old value, of any size)."""
    if name not in RUN_WRITES:
        return False
    if name != b"set":
        return True
    n = len(args)
    if n == 3:
        return True
    return n > 3 and all(arg.lower() != b"get" for arg in args[3:])


def answer_run(reply: Pending, count: int, proto: int, value: Any) -> None:
    """The callback of a run's proposal: ``reply`` gets the ``count`` commands' replies
    encoded one after the other (``Encoded``), from the EXEC's array; an error that
    answered the whole entry (not leader, a timeout's -UNKNOWN...) answers each command.
    A forwarded run's dropped reply stays ``REPLY_DROPPED`` (the client port disconnects
    its client). Runs inside ``Pending.set``: never raises."""
    if value is REPLY_DROPPED:
        reply.set(value)
        return
    try:
        if type(value) is list and len(value) == count:
            data = b"".join([encode_reply(v, proto) for v in value])
        else:
            error = value if isinstance(value, ErrorReply) else MALFORMED_RUN
            data = encode_reply(error, proto) * count
    except Exception:  # an unencodable reply must not take the callback chain down
        data = encode_reply(MALFORMED_RUN, proto) * count
    reply.set(Encoded(data))
