"""One bound on every client's buffers together (Redis's ``maxmemory-clients``).

Each connection's query buffer (input read and not yet parsed, plus commands parsed and
not yet answered, plus its MULTI queue and WATCHed keys: transaction.py) and output buffer
(replies ready and not yet sent) has its own limit
(raftkv.server.limits); those alone let 10,000 connections hold 10,000 times a limit.
This keeps their sum under ``--client-buffer-total``: when a connection's buffers grow
past it, the connection holding the most is disconnected (with a log line), and the next
largest after it, until the sum is back under. As in Redis, the biggest consumer pays,
whichever connection happened to cross the line.

The port reports every change (``set_query``, ``add_output``); the sum is kept as it
goes, so the common case costs an addition. Finding the largest walks the connections,
only when the bound is crossed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raftkv.server.connection import Connection


class ClientBuffers:
    """The running sum of all clients' buffer bytes, and who is disconnected past it."""

    def __init__(self, limit: int, disconnect: Callable[[Connection, int, int], None]
                 ) -> None:
        self.limit = limit
        self.total = 0
        self.disconnects = 0
        # disconnect(conn, its bytes, the total): cancel the connection and log why.
        self._disconnect = disconnect
        # Connections still counted: id -> [connection, query bytes, output bytes].
        self._held: dict[int, list[Any]] = {}

    def open(self, conn: Connection) -> None:
        self._held[conn.id] = [conn, 0, 0]

    def close(self, conn: Connection) -> None:
        """The connection is gone (or disconnected): its buffers no longer count."""
        held = self._held.pop(conn.id, None)
        if held is not None:
            self.total -= held[1] + held[2]

    def set_query(self, conn: Connection, size: int) -> None:
        held = self._held.get(conn.id)
        if held is None:
            return
        total = self.total = self.total + size - held[1]
        held[1] = size
        if size and total > self.limit:  # (``_enforce``'s own test: a call saved, twice a read)
            self._enforce()

    def add_output(self, conn: Connection, delta: int) -> None:
        held = self._held.get(conn.id)
        if held is None:
            return
        held[2] += delta
        self.total += delta
        if delta > 0 and self.total > self.limit:
            self._enforce()

    def bytes_of(self, conn: Connection) -> int:
        held = self._held.get(conn.id)
        return 0 if held is None else held[1] + held[2]

    def _enforce(self) -> None:
        while self.total > self.limit and self._held:
            _id, (conn, query, output) = max(self._held.items(),
                                             key=lambda item: item[1][1] + item[1][2])
            self.close(conn)
            self.disconnects += 1
            self._disconnect(conn, query + output, self.total)

