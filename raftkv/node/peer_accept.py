"""The peer port's accept gate: a cap on connections that have not finished their handshake.

Why: anyone can connect to the peer port, and a connection that sends nothing is held
until the handshake deadline (``TransportLimits.hello_timeout``, 5 s). With no cap, 300
silent connections took every descriptor of a node limited to 128: clients got EMFILE at
accept, and a peer link that dropped could not be accepted again. The client port has the
same kind of cap (``--max-new-clients``).

The gate counts connections from accept until their handshake (TLS, Hello, Proof) is done,
in total and per source address; one over either cap is closed at once, before a byte is
read (its descriptor is back at once, so a flood costs at most the caps in descriptors).
An authenticated link leaves the gate (``handshaken``): established links are bounded by
the membership, one inbound link per peer. The per-source cap keeps one flooding host
from taking every slot of the total, so peers on other hosts still get in; peers on the
*same* host as a flood share its slots, and get in as the flood's connections time out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from raftkv.node.log_throttle import LogThrottle

log = logging.getLogger("raftkv.transport")

MAX_PENDING = 64  # connections in their handshake, in total
MAX_PENDING_PER_SOURCE = 8  # ... and from one source address


class AcceptGate:
    """Admits an accepted connection only while the handshake caps have room."""

    def __init__(self, max_pending: int = MAX_PENDING,
                 max_per_source: int = MAX_PENDING_PER_SOURCE) -> None:
        if max_pending < 1 or max_per_source < 1:
            raise ValueError("the pending-connection caps must be at least 1")
        self.max_pending = max_pending
        self.max_per_source = max_per_source
        self._by_source: dict[str, int] = {}
        self._pending: dict[int, str] = {}  # id(stream) -> source, while in the gate
        self.refused = 0  # connections closed at accept because a cap was reached
        self._throttle = LogThrottle(log)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def wrap(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """``handler`` for ``trio.serve_listeners``, behind the gate: a connection over a
        cap returns at once (serve_listeners then closes it)."""

        async def gated(stream: Any) -> None:
            source = _source(stream)
            if not self._enter(stream, source):
                return
            try:
                await handler(stream)
            finally:
                self.handshaken(stream)

        return gated

    def handshaken(self, stream: Any) -> None:
        """``stream`` finished its handshake (or ended): its slot is free again."""
        source = self._pending.pop(id(stream), None)
        if source is None:
            return
        left = self._by_source[source] - 1
        if left:
            self._by_source[source] = left
        else:
            del self._by_source[source]

    def _enter(self, stream: Any, source: str) -> bool:
        from_source = self._by_source.get(source, 0)
        if len(self._pending) >= self.max_pending or from_source >= self.max_per_source:
            self.refused += 1
            self._throttle.log(("pending", source), logging.WARNING,
                               "peer connection refused: too many in their handshake",
                               remote=source, pending=len(self._pending),
                               from_source=from_source, refused=self.refused)
            return False
        self._by_source[source] = from_source + 1
        self._pending[id(stream)] = source
        return True


def _source(stream: Any) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, AttributeError, IndexError):
        return "?"
