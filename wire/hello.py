"""The peer handshake: the first frame each side sends on every peer connection.

The dialer sends ``Hello``; the listener checks version and cluster id and answers with its
own ``Hello``, or with ``Refused`` just before closing. ``Ping`` keeps an idle connection
observably alive.
"""

from __future__ import annotations

import attrs

from wire.record import record

# Bumped on any incompatible change to the peer protocol; peers refuse a different version.
PROTOCOL_VERSION = 1


@record(tag=1)
@attrs.frozen
class Hello:
    version: int
    cluster_id: str
    node_id: int
    peer_addr: str
    client_addr: str


@record(tag=2)
@attrs.frozen
class Ping:
    """Transport keepalive; carries nothing."""


@record(tag=3)
@attrs.frozen
class Refused:
    """Why the handshake was refused (for the other side's log), sent before closing."""

    reason: str
