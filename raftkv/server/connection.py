"""One client connection's state, and what a command may ask of the port it came in on.

Its own module so the command table (raftkv.server.commands) and the client port
(raftkv.server.client_port, which runs the commands) both import it and not each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from raftkv.server.acl import AccessControl
from raftkv.server.blocked_readers import BlockedReaders
from raftkv.server.pubsub import PubSub, Subscriptions
from raftkv.server.transaction import Transaction


class ClientRegistry(Protocol):
    """The client port as the connection-level commands see it."""

    connections: dict[int, Connection]
    acl: AccessControl  # its users (raftkv.server.auth checks every command against them)
    pubsub: PubSub  # this node's subscriptions (raftkv.server.pubsub)
    blocked: BlockedReaders  # XREAD ... BLOCK readers of the change feed

    def info(self) -> dict[str, Any]: ...

    def clients_info(self) -> dict[str, Any]: ...

    def reset_stats(self) -> None: ...


@attrs.define
class Connection:
    """Per-connection state that commands may change (HELLO, CLIENT SETNAME, QUIT)."""

    id: int
    addr: str
    proto: int = 2
    name: str = ""
    lib_name: str = ""
    lib_ver: str = ""
    user: str | None = None  # the ACL user it runs as; None: not authenticated (auth.py)
    auth_failures: int = 0
    closing: bool = False
    tx: Transaction = attrs.Factory(Transaction)  # MULTI/WATCH state (transaction.py)
    subs: Subscriptions = attrs.Factory(Subscriptions)  # SUBSCRIBE state (pubsub.py)
    registered: bool = False  # has sent a complete command
    source: str = ""  # the remote address without its port (per-source limits)
    out_bytes: int = 0  # replies ready and not yet sent (the output buffer)
    owed: int = 0  # replies not yet written, ready or not
    pushes: int = 0  # of which Pub/Sub messages
    # The replies owed in write runs' slots past each slot's first: the pipeline window
    # counts replies, and a run's slot holds several (raftkv.server.write_runs).
    run_extra: int = 0
    scope: trio.CancelScope | None = None
    # Set by the writer when the output buffer is at most half full again, for a reader
    # waiting for room (``drained``); made only when one waits: a new Event per reply
    # written was a measurable share of a pipelined SET on the leader (issue 15).
    out_drained: trio.Event | None = None
    # The client port it came in on (CLIENT LIST, INFO clients, CONFIG RESETSTAT).
    server: ClientRegistry | None = None
    # Called once when the client's input ends (it closed, QUIT, an error, the node
    # stopping): a blocked XREAD stops waiting for a client that is gone.
    on_end: list[Callable[[], None]] = attrs.Factory(list)
    # Its last XREAD's parsed request (raftkv.server.streams.LastXRead): a watcher sends
    # the same XREAD but for its ids after every reply.
    last_xread: Any = None

    def drained(self) -> trio.Event:
        """The event the writer sets once the output buffer is at most half full again."""
        if self.out_drained is None:
            self.out_drained = trio.Event()
        return self.out_drained

    def input_ended(self) -> None:
        callbacks, self.on_end = self.on_end, []
        for callback in callbacks:
            callback()
