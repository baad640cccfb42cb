"""``SUBSCRIBE``/``PSUBSCRIBE`` in raftkv-cli: stay subscribed and print each message as it
arrives, as redis-cli does, until Ctrl-C.

Why a connection of its own: a subscribed RESP2 connection runs nothing but
(P)SUBSCRIBE, (P)UNSUBSCRIBE, PING, QUIT and RESET, so the client's shared connection
(leader discovery, retries, sessions) must never enter that mode. Sent through it, one-shot
``SUBSCRIBE ch`` printed the confirmation and exited, and the REPL's connection was left
subscribed, every later command refused (attack21). Any node serves a subscriber (each
delivers every message), so the first endpoint that connects is used (the REPL's current
node first). A lost connection ends the command (status 2) rather than moving to another
node: messages published in between would be missed without a word.

Output: the confirmations and each message as a reply (redis-cli's ``1) "message" ...``
on a terminal, plain lines piped, JSON with ``--json``), flushed as they arrive, with
redis-cli's ``Reading messages... (press Ctrl-C to quit)`` on a terminal. Exit statuses as
the rest of raftkv-cli: 1 on an error reply (ACL, a removed node), 2 if no node answers
within ``--timeout``, 130 on Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from client.api import Client
from client.connection import TRANSPORT_ERRORS, Connection, failure_reason
from client.errors import ConnectionFailed
from client.format import TTY, Output
from client.until_stopped import run_until_stopped
from wire.reply import ErrorReply
from wire.resp import encode_command

SUBSCRIBE_COMMANDS = frozenset({b"subscribe", b"psubscribe"})


def is_subscribe(args: Sequence[bytes]) -> bool:
    return bool(args) and args[0].lower() in SUBSCRIBE_COMMANDS


async def _open_any(endpoints: Sequence[str], client: Client) -> Connection:
    errors: list[str] = []
    for addr in endpoints:
        with trio.move_on_after(client.connect_timeout):
            try:
                return await Connection.open(addr, client.security)
            except OSError as exc:
                errors.append(f"{addr}: {failure_reason(exc)}")
                continue
        errors.append(f"{addr}: connect timed out")
    raise ConnectionFailed("; ".join(errors))


async def follow(client: Client, endpoints: Sequence[str], args: Sequence[bytes],
                 out: Output) -> int:
    """Subscribe, print the confirmations, then every message until cancelled or the
    connection ends; the exit status. The confirmations must come within the client's
    timeout; messages are waited for without end."""
    confirmations = max(1, len(args) - 1)  # one per channel (an error reply: one)
    conn: Connection | None = None
    with trio.move_on_after(client.timeout):
        conn = await _open_any(endpoints, client)
    if conn is None:
        raise ConnectionFailed(f"no node answered within {client.timeout} s")
    try:
        with trio.move_on_after(client.timeout) as confirming:
            await conn.send(encode_command(*args))
            for _ in range(confirmations):
                reply = await conn.receive_reply()
                out.reply(reply)
                if isinstance(reply, ErrorReply):
                    return 1
        if confirming.cancelled_caught:
            out.error(f"{conn.addr} did not confirm the subscription within "
                      f"{client.timeout} s")
            return 2
        if out.mode == TTY:
            out.write("Reading messages... (press Ctrl-C to quit)\n")
        while True:
            out.reply(await conn.receive_reply())
    except TRANSPORT_ERRORS as exc:
        out.error(f"Error: the connection to {conn.addr} was lost ({exc}); "
                  "subscribe again to go on")
        return 2
    finally:
        await conn.aclose()


def run_subscribe(client: Client, args: Sequence[bytes], out: Output,
                  first: str | None = None) -> int:
    """``follow`` in its own ``trio.run`` (Ctrl-C reaches it directly); the exit status.
    ``first``: the endpoint to try before the others (the REPL's current node)."""
    endpoints = list(client.endpoints)
    if first in endpoints:
        endpoints.remove(first)
        endpoints.insert(0, first)
    return run_until_stopped(out, follow, client, endpoints, list(args), out)
