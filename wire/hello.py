"""The peer handshake: the first frame each side sends on every peer connection.

The dialer sends ``Hello``; the listener checks version and cluster id and answers with its
own ``Hello``, or with ``Refused`` just before closing. With a peer secret both Hellos
carry a random nonce and each side then sends a ``Proof`` (raftkv.node.peer_auth): the
listener right after its Hello, the dialer once it has checked the listener's. After that
the dialer sends its messages (``Ping`` when idle) and the listener answers only ``Ack``:
how many bytes of the connection it has received so far, Hello included. So the dialer
knows its bytes arrive, not just that the peer is alive: a path that carries the peer's
packets to us but ours nowhere (a peer that moved to a new address while the old
connection lingers) is noticed.
"""

from __future__ import annotations

import attrs

from wire.record import record

# Bumped on any incompatible change to the peer protocol; peers refuse a different version.
# 2: the listener acknowledges frames (Ack) instead of pinging back.
# 3: Hello carries a nonce; Proof (peer authentication by a shared secret).
PROTOCOL_VERSION = 3


@record(tag=1)
@attrs.frozen
class Hello:
    version: int
    cluster_id: str
    node_id: int
    peer_addr: str
    client_addr: str
    nonce: bytes = b""  # 32 random bytes with a peer secret; empty without one


@record(tag=2)
@attrs.frozen
class Ping:
    """Transport keepalive; carries nothing."""


@record(tag=3)
@attrs.frozen
class Refused:
    """Why the handshake was refused (for the other side's log), sent before closing."""

    reason: str


@record(tag=4)
@attrs.frozen
class Ack:
    """The listener's keepalive: bytes received on this connection so far (Hello included)."""

    received: int


@record(tag=5)
@attrs.frozen
class Proof:
    """HMAC-SHA256 proving the sender knows the peer secret (raftkv.node.peer_auth)."""

    mac: bytes
