"""The state machine's commands as methods, written once for every client flavour.

Each method builds the argument list and names a conversion of the raw reply; ``_call``
decides what happens with them: the async client returns an awaitable, the pipeline queues
the command and returns itself (so calls chain), the sync client runs it and returns the
value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from raftkv.probe import parse_info
from wire.reply import SimpleString

Arg = bytes | str | int | float
Convert = Callable[[Any], Any] | None


OK = SimpleString("OK")
QUEUED = SimpleString("QUEUED")  # a command queued in an open MULTI: not applied (yet)


def ok(reply: Any) -> bool:
    """``+OK`` -> True; anything else (``+QUEUED``: not applied yet) -> False."""
    return reply == OK


def set_result(reply: Any) -> bool:
    """SET without GET: ``+OK`` -> True; nil (NX/XX condition not met) or ``+QUEUED`` (in
    a MULTI, applied only if its EXEC runs) -> False, as redis-py (attack17: a thread
    pool's next job wrote into an abandoned MULTI and was told True)."""
    return reply == OK


def cas_result(reply: Any) -> bool:
    return reply == 1


_BOOLEAN = (ok, set_result, cas_result)  # each reads ``+QUEUED`` as False


def convert_reply(reply: Any, convert: Convert) -> Any:
    """``convert(reply)``, but a ``+QUEUED`` reply comes back as it is (other conversions
    would misread or crash on it), except to the True/False ones, which say False."""
    if convert is None or (reply == QUEUED and convert not in _BOOLEAN):
        return reply
    return convert(reply)


def pong(reply: Any) -> Any:
    return True if isinstance(reply, SimpleString) and reply.text == "PONG" else reply


def scan_result(reply: Any) -> tuple[int, list[bytes]]:
    cursor, keys = reply
    return int(cursor), list(keys)


def pairs_to_dict(reply: Any) -> dict[str, Any]:
    """A RESP2 flattened map (``[k1, v1, k2, v2, ...]``) -> dict with text keys and values."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[::2], reply[1::2], strict=True))
    return {
        (k.decode() if isinstance(k, bytes) else str(k)):
        (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
        for k, v in items
    }


class Commands:
    """Command methods on top of ``_call(args, convert)``."""

    def _call(self, args: tuple[Arg, ...], convert: Convert = None) -> Any:
        raise NotImplementedError

    def execute_command(self, *args: Arg) -> Any:
        """Any command, its raw reply (``SimpleString`` for a status, bytes, int, list...)."""
        return self._call(args)

    # -- connection and server -----------------------------------------------------------

    def ping(self, message: Arg | None = None) -> Any:
        """True for PONG; the message back when one is given."""
        return self._call(("PING",) if message is None else ("PING", message), pong)

    def echo(self, message: Arg) -> Any:
        return self._call(("ECHO", message))

    def info(self, section: str | None = None) -> Any:
        """INFO as a dict of strings (``info("raft")`` for the Raft section)."""
        return self._call(("INFO",) if section is None else ("INFO", section), parse_info)

    def raft_status(self) -> Any:
        """RAFT STATUS of the node the client is talking to, as a dict."""
        return self._call(("RAFT", "STATUS"), pairs_to_dict)

    def raft_transfer(self, node_id: int) -> Any:
        """Ask the leader to hand leadership to ``node_id`` (True when accepted)."""
        return self._call(("RAFT", "TRANSFER", node_id), ok)

    # -- strings ---------------------------------------------------------------------------

    def get(self, key: Arg) -> Any:
        """The value (bytes) or None."""
        return self._call(("GET", key))

    def set(self, key: Arg, value: Arg, *, nx: bool = False, xx: bool = False,
            get: bool = False) -> Any:
        """True if set, False if NX/XX stopped it; with ``get=True`` the previous value."""
        args: tuple[Arg, ...] = ("SET", key, value)
        if nx:
            args += ("NX",)
        if xx:
            args += ("XX",)
        if get:
            return self._call((*args, "GET"))
        return self._call(args, set_result)

    def delete(self, *keys: Arg) -> Any:
        """DEL: how many of ``keys`` existed."""
        return self._call(("DEL", *keys))

    def exists(self, *keys: Arg) -> Any:
        return self._call(("EXISTS", *keys))

    def incr(self, key: Arg) -> Any:
        return self._call(("INCR", key))

    def decr(self, key: Arg) -> Any:
        return self._call(("DECR", key))

    def incrby(self, key: Arg, amount: int) -> Any:
        return self._call(("INCRBY", key, amount))

    def decrby(self, key: Arg, amount: int) -> Any:
        return self._call(("DECRBY", key, amount))

    def append(self, key: Arg, value: Arg) -> Any:
        """The length of the value after appending."""
        return self._call(("APPEND", key, value))

    def strlen(self, key: Arg) -> Any:
        return self._call(("STRLEN", key))

    def mget(self, *keys: Arg) -> Any:
        """A list of values (None where a key is missing), in the order of ``keys``."""
        return self._call(("MGET", *keys))

    def mset(self, mapping: Mapping[Arg, Arg]) -> Any:
        args: list[Arg] = ["MSET"]
        for key, value in mapping.items():
            args += [key, value]
        return self._call(tuple(args), ok)

    def cas(self, key: Arg, expected: Arg, new: Arg) -> Any:
        """Compare-and-swap: True if the value was ``expected`` and is now ``new``."""
        return self._call(("CAS", key, expected, new), cas_result)

    # -- keyspace --------------------------------------------------------------------------

    def keys(self, pattern: Arg = "*") -> Any:
        return self._call(("KEYS", pattern))

    def scan(self, cursor: int = 0, match: Arg | None = None, count: int | None = None) -> Any:
        """``(next_cursor, keys)``; iterate until the cursor is 0 again."""
        args: tuple[Arg, ...] = ("SCAN", cursor)
        if match is not None:
            args += ("MATCH", match)
        if count is not None:
            args += ("COUNT", count)
        return self._call(args, scan_result)

    def dbsize(self) -> Any:
        return self._call(("DBSIZE",))

    def flushall(self) -> Any:
        return self._call(("FLUSHALL",), ok)
