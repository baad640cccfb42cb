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
When every slot is taken, a newcomer from a source holding fewer than the largest holder
takes the slot of that holder's oldest connection (its handshake is cancelled): eight
flooding sources at their cap held all 64 slots, and a member whose link dropped could
not get back in while they kept them (attack4).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

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
        # per source: id(stream) -> the scope that cancels its handshake, oldest first
        self._by_source: dict[str, dict[int, trio.CancelScope]] = {}
        self._pending: dict[int, str] = {}  # id(stream) -> source, while in the gate
        self.refused = 0  # connections closed at accept because a cap was reached
        self.evicted = 0  # handshakes cancelled to admit a source holding fewer slots
        self._throttle = LogThrottle(log)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def wrap(self, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """``handler`` for ``trio.serve_listeners``, behind the gate: a connection over a
        cap returns at once (serve_listeners then closes it)."""

        async def gated(stream: Any) -> None:
            source = _source(stream)
            scope = self._enter(stream, source)
            if scope is None:
                return
            try:
                with scope:
                    await handler(stream)
            finally:
                self.handshaken(stream)

        return gated

    def handshaken(self, stream: Any) -> None:
        """``stream`` finished its handshake (or ended): its slot is free again."""
        self._leave(id(stream))

    def _leave(self, key: int) -> trio.CancelScope | None:
        source = self._pending.pop(key, None)
        if source is None:
            return None
        pending = self._by_source[source]
        scope = pending.pop(key)
        if not pending:
            del self._by_source[source]
        return scope

    def _enter(self, stream: Any, source: str) -> trio.CancelScope | None:
        """The scope to run ``stream``'s handshake in, or None if it is refused."""
        from_source = len(self._by_source.get(source, ()))
        if from_source >= self.max_per_source or (
                len(self._pending) >= self.max_pending and not self._evict_for(from_source)):
            self.refused += 1
            self._throttle.log(("pending", source), logging.WARNING,
                               "peer connection refused: too many in their handshake",
                               remote=source, pending=len(self._pending),
                               from_source=from_source, refused=self.refused)
            return None
        scope = trio.CancelScope()
        self._by_source.setdefault(source, {})[id(stream)] = scope
        self._pending[id(stream)] = source
        return scope

    def _evict_for(self, holding: int) -> bool:
        """Every slot is taken and a newcomer's source holds ``holding``: cancel the oldest
        handshake of the source holding the most, if that is more than the newcomer's would
        hold once admitted (fair shares). False if no source holds more."""
        largest = max(self._by_source.items(), key=lambda item: len(item[1]), default=None)
        if largest is None or len(largest[1]) <= holding + 1:
            return False
        source = largest[0]
        scope = self._leave(next(iter(largest[1])))
        assert scope is not None
        scope.cancel()
        self.evicted += 1
        self._throttle.log(("evicted", source), logging.WARNING,
                           "peer connection in its handshake closed for a source holding "
                           "fewer slots", remote=source, evicted=self.evicted)
        return True


def _source(stream: Any) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, AttributeError, IndexError):
        return "?"
